"""Slimmable MobileNetV2/V3-Large/V3-Small: export equivalence, torchvision references, sizes, gradients."""

from __future__ import annotations

import random

import pytest
import torch
import torchvision
from torch import nn

import slimssl.export.mobilenet  # noqa: F401  (registers the plain twins and extractors)
from slimssl.export.extract import extract_subnet
from slimssl.export.io import load_subnet, save_subnet
from slimssl.export.torchscript import script_subnet
from slimssl.models.mobilenet import (SlimMobileNetV2, mobilenet_v2, mobilenet_v3_large,
                                      mobilenet_v3_small)
from slimssl.models.registry import list_models
from slimssl.nn import SlimBatchNorm2d, SlimConv2d, SlimLinear, SubnetSpec, recalibrate_bn
from slimssl.nn.transplant import load_single_network

WIDTHS = (1.0, 0.75, 0.5, 0.25)
FACTORIES = {"v2": mobilenet_v2, "v3": mobilenet_v3_large, "v3s": mobilenet_v3_small}
TORCHVISION = {"v2": torchvision.models.mobilenet_v2, "v3": torchvision.models.mobilenet_v3_large,
               "v3s": torchvision.models.mobilenet_v3_small}


def _x(seed: int = 0, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _randomise_bn(model: nn.Module, seed: int) -> None:
    """Non-trivial statistics and affine everywhere, so a wrong copy cannot go unnoticed."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d) or (isinstance(m, SlimBatchNorm2d)
                                             and m.mode == "universal"):
            c = m.weight.shape[0]
            m.weight.copy_(1 + 0.2 * torch.randn(c, generator=g))
            m.bias.copy_(0.1 * torch.randn(c, generator=g))
            m.running_mean.copy_(0.1 * torch.randn(c, generator=g))
            m.running_var.copy_(0.5 + torch.rand(c, generator=g))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max difference relative to the outputs' scale (freshly initialised MobileNets give
    outputs of 1e-13 .. 1e-2, where an absolute tolerance would hide a wrong model)."""
    return _max_diff(a, b) / b.abs().max().item()


@pytest.mark.parametrize("arch", ["v2", "v3", "v3s"])
def test_switchable_members_match_their_exports(arch: str) -> None:
    model = FACTORIES[arch](widths=WIDTHS, stem="cifar", num_classes=10)
    _randomise_bn(model, 1)
    model.eval()
    rng = random.Random(arch)
    x = _x()
    for width in rng.sample(WIDTHS, len(WIDTHS)):
        plain = extract_subnet(model, width)
        with torch.no_grad():
            assert _rel_diff(model(x, width), plain(x)) <= 1e-5
        assert plain.num_features == model.feature_dim(width)
        # every exported conv is a multiple of 8 wide (docs/design.md sec. 2), no slimmable layer
        # left
        for m in plain.modules():
            assert not isinstance(m, (SlimConv2d, SlimLinear, SlimBatchNorm2d))
            if isinstance(m, nn.Conv2d) and m.groups == 1 and m.in_channels != 3:
                assert m.in_channels % 8 == 0 and m.out_channels % 8 == 0


@pytest.mark.parametrize("arch", ["v2", "v3", "v3s"])
def test_universal_random_widths_after_recalibration(arch: str) -> None:
    model = FACTORIES[arch](norm="universal", width_range=(0.25, 1.0), stem="cifar",
                            num_classes=10)
    _randomise_bn(model, 2)
    rng = random.Random(7)
    x = _x(3)
    for _ in range(2):
        width = round(rng.uniform(0.25, 1.0), 3)
        recalibrate_bn(model, width, [_x(10), _x(11)], num_images=4)
        model.eval()
        plain = extract_subnet(model, width)
        with torch.no_grad():
            assert _rel_diff(model(x, width), plain(x)) <= 1e-5


def test_narrow_block_keeps_the_full_width_shortcut_decision() -> None:
    """V2's first block is 32 -> 16 (no shortcut); at width 0.25 both round up to 8 channels,
    and the export must still have no shortcut (it used to add one: torchvision's rule on the
    exported counts)."""
    model = mobilenet_v2(widths=(1.0, 0.25), stem="cifar", num_classes=10)
    plain = extract_subnet(model, 0.25)
    assert plain.arch_config["blocks"][0] == [8, 8, 8, 1, 0, 0]
    assert not plain.features[1].use_res_connect
    old = dict(plain.arch_config, blocks=[b[:5] for b in plain.arch_config["blocks"]])
    assert type(plain).from_config(old).features[1].use_res_connect  # configs without the flag
    with pytest.raises(ValueError, match="residual"):
        type(plain).from_config(dict(old, blocks=[[8, 8, 16, 1, 0, 1]]))


@pytest.mark.parametrize("arch", ["v2", "v3", "v3s"])
def test_full_width_export_is_torchvision_model(arch: str) -> None:
    model = FACTORIES[arch](widths=(1.0, 0.5), num_classes=10)
    _randomise_bn(model, 3)
    plain = extract_subnet(model, 1.0)
    ref = TORCHVISION[arch](num_classes=10).eval()
    ref.load_state_dict(plain.state_dict(), strict=True)
    x = _x(4)
    with torch.no_grad():
        assert _max_diff(ref(x), plain(x)) <= 1e-5


def test_v3_small_full_width_member_loads_torchvision_weights() -> None:
    """torchvision's mobilenet_v3_small weights (random, with non-trivial BN statistics) go
    into the slimmable family's full-width member and give torchvision's outputs: through the
    plain export (strict), a universal model (strict but for its own ``stats_width`` tags) and
    a switchable family filled from it (every width's private BN gets the leading channels)."""
    torch.manual_seed(0)
    ref = torchvision.models.mobilenet_v3_small(num_classes=10)
    _randomise_bn(ref, 12)
    ref.eval()
    x = _x(13, n=3)
    with torch.no_grad():
        expected = ref(x)
        plain = extract_subnet(mobilenet_v3_small(widths=(1.0, 0.5), num_classes=10), 1.0)
        plain.load_state_dict(ref.state_dict(), strict=True)
        assert _max_diff(plain.eval()(x), expected) <= 1e-5
        single = mobilenet_v3_small(norm="universal", width_range=(0.25, 1.0), num_classes=10)
        result = single.load_state_dict(ref.state_dict(), strict=False)
        assert result.unexpected_keys == []
        assert {k.rsplit(".", 1)[1] for k in result.missing_keys} == {"stats_width"}
        assert _max_diff(single.eval()(x), expected) <= 1e-5
        family = mobilenet_v3_small(widths=(1.0, 0.5), num_classes=10)
        load_single_network(family, single)
        assert _max_diff(family.eval()(x, 1.0), expected) <= 1e-5


def test_v3_small_blocks_are_howard_table_2() -> None:
    """Howard et al. 2019 Table 2 (MobileNetV3-Small): strides, kernels, SE and activations of
    the 11 bottlenecks, 576-channel last conv and 1024-wide hidden classifier layer."""
    plain = extract_subnet(mobilenet_v3_small(num_classes=1000), 1.0)
    blocks = plain.arch_config["blocks"]  # [inp, kernel, expanded, out, squeeze, act, stride, x]
    assert [b[1] for b in blocks] == [3, 3, 3] + [5] * 8
    assert [b[2] for b in blocks] == [16, 72, 88, 96, 240, 240, 120, 144, 288, 576, 576]
    assert [b[3] for b in blocks] == [16, 24, 24, 40, 40, 40, 48, 48, 96, 96, 96]
    assert [b[4] > 0 for b in blocks] == [True, False, False] + [True] * 8
    assert [b[5] for b in blocks] == ["RE"] * 3 + ["HS"] * 8
    assert [b[6] for b in blocks] == [2, 2, 1, 2, 1, 1, 1, 1, 2, 1, 1]
    assert plain.arch_config["last_conv_channels"] == 576
    assert plain.arch_config["last_channels"] == 1024


def test_param_counts_match_torchvision() -> None:
    v2 = extract_subnet(mobilenet_v2(num_classes=1000), 1.0)
    assert sum(p.numel() for p in v2.parameters()) == 3_504_872
    v3 = extract_subnet(mobilenet_v3_large(num_classes=1000), 1.0)
    ref = torchvision.models.mobilenet_v3_large(num_classes=1000)
    assert sum(p.numel() for p in v3.parameters()) == sum(p.numel() for p in ref.parameters())
    v3s = extract_subnet(mobilenet_v3_small(num_classes=1000), 1.0)
    assert sum(p.numel() for p in v3s.parameters()) == 2_542_856  # torchvision's count


def test_feature_dims_and_head_sizes() -> None:
    v2 = mobilenet_v2(widths=WIDTHS, stem="cifar").eval()
    v3 = mobilenet_v3_large(widths=WIDTHS, stem="cifar").eval()
    x = _x()
    with torch.no_grad():
        for w in WIDTHS:
            # V2 keeps its 1280-wide last conv at every width <= 1 (torchvision's rule)
            assert v2(x, w).shape == (2, 1280) == (2, v2.feature_dim(w))
            with v3.subnet(w):
                feats = v3.forward_features(x)
                assert v3.forward_head(feats, pre_logits=True).shape == (2, v3.feature_dim())
        assert v3.feature_dim(0.5) == 640 and v3.feature_dim(0.25) == 320
        assert mobilenet_v3_small(widths=WIDTHS).feature_dim(0.5) == 512
        # cifar stem: stride 16 overall -> 2x2 maps on 32x32 inputs
        assert v2.forward_features(x).shape[-2:] == (2, 2)
    assert mobilenet_v2().eval().forward_features(x).shape[-2:] == (1, 1)


def test_save_load_round_trip(tmp_path) -> None:
    model = mobilenet_v3_large(widths=(1.0, 0.5), stem="cifar", num_classes=10)
    _randomise_bn(model, 5)
    plain = extract_subnet(model, 0.5)
    loaded = load_subnet(save_subnet(plain, tmp_path / "v3_w050"))
    assert type(loaded) is type(plain) and loaded.arch_config == plain.arch_config
    x = _x(6)
    with torch.no_grad():
        assert torch.equal(loaded(x), plain(x))


def test_torchscript_export() -> None:
    model = mobilenet_v2(widths=(1.0, 0.5), stem="cifar", num_classes=10)
    _randomise_bn(model, 8)
    plain = extract_subnet(model, 0.5)
    scripted = script_subnet(plain)
    x = _x(9)
    with torch.no_grad():
        assert _max_diff(scripted(x), plain(x)) <= 1e-5


@pytest.mark.parametrize("norm", ["switchable", "universal"])
def test_gradient_touches_only_the_active_slice(norm: str) -> None:
    model = mobilenet_v3_large(widths=(1.0, 0.5), norm=norm, stem="cifar", num_classes=10)
    model.train()
    with model.subnet(0.5):
        model(_x()).square().mean().backward()
        for m in model.modules():
            if isinstance(m, SlimConv2d):
                in_c = 1 if m.depthwise else m.active_in
                mask = torch.zeros_like(m.weight, dtype=torch.bool)
                mask[: m.active_out, :in_c] = True
                assert m.weight.grad[~mask].abs().max() == 0
                assert m.weight.grad[mask].abs().sum() > 0
            elif isinstance(m, SlimLinear):
                assert m.weight.grad[m.active_out:].abs().sum() == 0
                assert m.weight.grad[:, m.active_in:].abs().sum() == 0
            elif isinstance(m, SlimBatchNorm2d):
                if norm == "switchable":  # the width-1.0 private BN is untouched
                    assert m.bn[0].weight.grad is None and m.bn[1].weight.grad is not None
                else:
                    assert m.weight.grad[m.active_channels:].abs().sum() == 0


def test_universal_sub_width_leaves_unsliced_bn_stats_alone() -> None:
    """V2's last BN (1280, not sliced) sees all channels at every width; only the full width may
    update its running statistics in training (the rest is recalibrated before evaluation)."""
    model = mobilenet_v2(norm="universal", width_range=(0.25, 1.0), stem="cifar").train()
    last_bn = model.features[-1][1]
    assert not last_bn.slim
    before = last_bn.running_mean.clone()
    with torch.no_grad():
        model(_x(), 0.5)
        assert torch.equal(last_bn.running_mean, before)
        model(_x(), 1.0)
        assert not torch.equal(last_bn.running_mean, before)


def test_bad_width_names_the_allowed_ones() -> None:
    model = mobilenet_v2(widths=(1.0, 0.5))
    with pytest.raises(ValueError, match=r"\[1\.0, 0\.5\]"):
        model(_x(), 0.75)
    universal = mobilenet_v2(norm="universal", width_range=(0.5, 1.0))
    with pytest.raises(ValueError, match=r"\[0\.5, 1\]"):
        universal.validate_spec(SubnetSpec(0.3))
    with pytest.raises(ValueError, match="stem"):
        mobilenet_v2(stem="tiny")


def test_registered() -> None:
    assert {"mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small"} <= set(list_models())
    assert isinstance(mobilenet_v2(), SlimMobileNetV2)
