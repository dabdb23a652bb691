"""SlimResNet (He et al. 2016, slimmable as in Yu et al. 2019): structure, switching, heads."""

from __future__ import annotations

import random

import pytest
import torch

from slimssl.export import count_params, extract_subnet
from slimssl.models import SlimMLP, SlimResNet, create, list_models
from slimssl.nn import SlimmableModel, SubnetSpec, recalibrate_bn

WIDTHS = (1.0, 0.75, 0.5, 0.25)
FAMILY_18_34 = [(2, 2, 2, 2), (3, 4, 6, 3), (2, 4, 2, 3), (3, 2, 6, 2)]


def _populate_stats(model: SlimmableModel, specs, size: int = 8, steps: int = 1) -> None:
    """A few train-mode passes per member so switchable BN statistics are not the defaults."""
    model.train()
    with torch.no_grad():
        for spec in specs:
            with model.subnet(spec):
                for _ in range(steps):
                    model(torch.randn(4, 3, size, size) * 1.3 + 0.2)
    model.eval()


def _assert_twin(model: SlimResNet, spec: SubnetSpec, x: torch.Tensor) -> None:
    plain = extract_subnet(model, spec)
    with model.subnet(spec):
        y = model(x)
        assert plain.num_features == model.num_features == model.feature_dim(spec)
    assert (y - plain(x)).abs().max() <= 1e-5, spec
    if spec != model.full_spec:  # physically small: only the member's slices were copied
        assert count_params(plain) < count_params(model)
    owned = {p.data_ptr() for p in model.parameters()}
    assert not any(p.data_ptr() in owned for p in plain.parameters()), "export aliases the family"


def test_registry_lists_resnets():
    assert {"resnet18", "resnet34", "resnet50", "resnet101"} <= set(list_models())
    with pytest.raises(ValueError, match="resnet50"):
        create("resnet05")


def test_names_and_depths_follow_torchvision():
    m = create("resnet101")
    assert m.stage_depths == (3, 4, 23, 3) and m.num_classes == 0
    names = dict(m.named_modules())
    for name in ("conv1", "bn1", "layer1.0.conv3", "layer1.0.downsample.0",
                 "layer1.0.downsample.1", "layer4.2.bn3"):
        assert name in names
    assert "layer1.0.downsample.0" not in dict(create("resnet18").named_modules())
    assert m.feature_dim(1.0) == 2048 and m.feature_dim(0.25) == 512


def test_cifar_stem_and_head_api():
    m = create("resnet18", widths=(1.0, 0.5), stem="cifar", num_classes=10)
    m.eval()
    x = torch.randn(2, 3, 16, 16)
    with m.subnet(0.5):
        fmap = m.forward_features(x)
        assert fmap.shape == (2, 256, 2, 2) and m.num_features == 256
        assert m.forward_head(fmap, pre_logits=True).shape == (2, 256)
        logits = m.forward_head(fmap)
        assert logits.shape == (2, 10)
    torch.testing.assert_close(m(x, 0.5), logits)
    assert m.active_spec.width == 1.0 and m(x).shape == (2, 10)


def test_stem_widths_use_divisor_one():
    m = create("resnet50", widths=WIDTHS)
    with m.subnet(0.25):
        assert m.conv1.active_out == 16 and m.layer4[0].conv3.active_out == 512


def test_depth_elastic_resnet34_family_includes_resnet18():
    torch.manual_seed(0)
    m = create("resnet34", stem="cifar", depth_choices=FAMILY_18_34)
    assert m.smallest_spec == SubnetSpec(1.0, (2, 2, 2, 2))
    calls = []
    hook = m.layer3[2].register_forward_hook(lambda *a: calls.append(1))
    m.eval()
    x = torch.randn(1, 3, 16, 16)
    with m.subnet(SubnetSpec(1.0, (2, 2, 2, 2))):
        y_small = m(x)
    assert not calls
    y_full = m(x)
    assert calls and not torch.allclose(y_small, y_full)
    hook.remove()
    with pytest.raises(ValueError, match=r"\(3, 4, 6, 3\)"):
        m.validate_spec(SubnetSpec(1.0, (2, 5, 2, 2)))
    assert len(m.family()) == len(FAMILY_18_34)


def test_zero_init_residual():
    m = create("resnet18", widths=(1.0, 0.5), zero_init_residual=True)
    assert all(bn.weight.abs().sum() == 0 for bn in m.layer2[1].bn2.bn)
    u = create("resnet50", norm="universal", widths=(1.0, 0.25), zero_init_residual=True)
    assert u.layer1[0].bn3.weight.abs().sum() == 0 and u.layer1[0].bn2.weight.abs().sum() > 0


def test_resnet18_cifar_switchable_random_members_match_exports():
    """Property: seeded random (width, depth) members == their exported twins (eval, 1e-5)."""
    torch.manual_seed(1)
    rng = random.Random(1)
    m = create("resnet34", widths=WIDTHS, stem="cifar", num_classes=10,
               depth_choices=FAMILY_18_34)
    specs = [SubnetSpec(rng.choice(WIDTHS), rng.choice(FAMILY_18_34)) for _ in range(4)]
    _populate_stats(m, [SubnetSpec(w, FAMILY_18_34[0]) for w in WIDTHS] + specs)
    x = torch.randn(2, 3, 8, 8)
    for spec in specs + [m.full_spec, m.smallest_spec]:
        _assert_twin(m, spec, x)


def test_resnet18_universal_random_widths_after_recalibration():
    torch.manual_seed(2)
    rng = random.Random(2)
    m = create("resnet18", norm="universal", widths=(1.0, 0.25), width_range=(0.25, 1.0),
               stem="cifar")
    _populate_stats(m, [1.0])
    batches = [torch.randn(4, 3, 8, 8) for _ in range(2)]
    x = torch.randn(2, 3, 8, 8)
    for width in [rng.uniform(0.25, 1.0) for _ in range(3)] + [0.25]:
        spec = SubnetSpec(round(width, 3))
        recalibrate_bn(m, spec, batches)
        _assert_twin(m, spec, x)


def test_resnet50_tiny_input_matches_export():
    torch.manual_seed(3)
    m = create("resnet50", widths=(1.0, 0.5, 0.25), num_classes=7)
    _populate_stats(m, [0.5, 0.25], size=32)
    x = torch.randn(2, 3, 32, 32)
    for w in (0.5, 0.25):
        _assert_twin(m, SubnetSpec(w), x)


def test_mlp_presets_and_switching_with_enclosing_model():
    torch.manual_seed(4)

    class Encoder(SlimmableModel):
        def __init__(self):
            super().__init__(WIDTHS)
            self.backbone = create("resnet18", widths=WIDTHS, stem="cifar")
            self.projector = SlimMLP(512, 512, 32, num_layers=3, bn_last=True,
                                     bn_last_affine=False, widths=WIDTHS)
            self.predictor = SlimMLP(32, 64, 32, slim_in=False, widths=WIDTHS)

        def forward(self, x):
            return self.predictor(self.projector(self.backbone(x)))

    enc = Encoder()
    x = torch.randn(4, 3, 8, 8)
    for w in WIDTHS:
        with enc.subnet(w):
            assert enc.projector.active_spec.width == w
            assert enc.projector.input_dim() == enc.backbone.num_features
            assert enc(x).shape == (4, 32)
    assert enc.predictor.layers[0].active_in == 32 and enc.predictor.layers[0].bias is None
    mocov2 = SlimMLP(64, 64, 16, bn_hidden=False, widths=WIDTHS)
    assert [type(m).__name__ for m in mocov2.layers] == ["SlimLinear", "ReLU", "SlimLinear"]
    with mocov2.subnet(0.5):
        assert mocov2.layers[0].bias is not None
        h = torch.randn(3, 32)
        torch.testing.assert_close(mocov2.export()(h), mocov2(h), atol=1e-6, rtol=0)
        proj = enc.projector
        with enc.subnet(0.5):
            _populate_stats_head(proj)
            plain = proj.export().eval()
            z = torch.randn(5, 256)
            torch.testing.assert_close(plain(z), proj(z), atol=1e-5, rtol=0)


def _populate_stats_head(head: SlimMLP) -> None:
    head.train()
    with torch.no_grad():
        head(torch.randn(8, head.input_dim()) + 0.5)
    head.eval()
