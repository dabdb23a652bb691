"""Slimmable ViT: width narrows dim and heads, exports match, torchvision reference."""

from __future__ import annotations

import random

import pytest
import torch
import torchvision

import slimssl.export.vit  # noqa: F401  (registers the plain twin and extractor)
from slimssl.export.extract import extract_subnet
from slimssl.export.io import load_subnet, save_subnet
from slimssl.export.torchscript import export_program
from slimssl.models.registry import list_models
from slimssl.models.vit import vit_small, vit_tiny
from slimssl.nn import SlimLayerNorm, SlimLinear, SubnetSpec


def _x(seed: int = 0) -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def _randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(0.05 * torch.randn(p.shape, generator=g))


def _diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_switchable_members_match_their_exports() -> None:
    widths = (1.0, 0.67, 0.34)  # ViT-Tiny: 3, 2, 1 heads
    model = vit_tiny(widths=widths, stem="cifar", patch_size=8, depth=2, num_classes=10)
    _randomise(model, 0)
    model.eval()
    x = _x()
    for width, heads in zip(widths, (3, 2, 1)):
        plain = extract_subnet(model, width)
        assert plain.arch_config["num_heads"] == heads
        assert plain.arch_config["embed_dim"] == 64 * heads
        with torch.no_grad():
            assert _diff(model(x, width), plain(x)) <= 1e-5
        assert plain.num_features == model.feature_dim(width) == 64 * heads


def test_universal_random_widths_and_depths_match() -> None:
    model = vit_small(norm="universal", width_range=(0.25, 1.0), stem="cifar", patch_size=8,
                      depth=3, depth_elastic=True).eval()
    _randomise(model, 1)
    rng = random.Random(3)
    x = _x(1)
    for _ in range(3):
        spec = SubnetSpec(round(rng.uniform(0.25, 1.0), 3), (rng.randint(1, 3),))
        plain = extract_subnet(model, spec)
        assert plain.arch_config["depth"] == spec.depth[0]
        with torch.no_grad():
            assert _diff(model(x, spec), plain(x)) <= 1e-5


def _vit_params(dim: int, depth: int, patch: int, tokens: int, classes: int) -> int:
    block = 2 * 2 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) \
        + (dim * 4 * dim + 4 * dim) + (4 * dim * dim + dim)
    return (3 * patch * patch * dim + dim) + dim + tokens * dim + depth * block + 2 * dim \
        + dim * classes + classes


def test_half_width_vit_small_is_really_half() -> None:
    model = vit_small(widths=(1.0, 0.5), stem="cifar", patch_size=8, depth=2, num_classes=10)
    plain = extract_subnet(model, 0.5)
    cfg = plain.arch_config
    assert (cfg["embed_dim"], cfg["num_heads"], cfg["mlp_hidden"]) == (192, 3, 768)
    blk = plain.blocks[0]
    assert blk.attn.qkv.weight.shape == (576, 192) and blk.attn.proj.weight.shape == (192, 192)
    assert blk.mlp.fc1.weight.shape == (768, 192) and blk.mlp.fc2.weight.shape == (192, 768)
    assert plain.pos_embed.shape == (1, 17, 192) and plain.cls_token.shape == (1, 1, 192)
    assert plain.patch_embed.proj.weight.shape == (192, 3, 8, 8)
    n = sum(p.numel() for p in plain.parameters())
    assert n == _vit_params(192, 2, 8, 17, 10)
    full = sum(p.numel() for p in extract_subnet(model, 1.0).parameters())
    assert full == _vit_params(384, 2, 8, 17, 10)
    assert model.heads_at(0.5) == 3 and model.feature_dim(0.5) == 192


def test_export_equals_torchvision_vision_transformer() -> None:
    """Independent reference: torchvision's ViT with the exported weights gives the same logits."""
    model = vit_tiny(widths=(1.0, 0.67), stem="cifar", patch_size=8, depth=2, num_classes=10)
    _randomise(model, 2)
    plain = extract_subnet(model, 0.67)
    ref = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=128, mlp_dim=512,
        num_classes=10).eval()
    assert sum(p.numel() for p in ref.parameters()) == sum(p.numel() for p in plain.parameters())
    sd = plain.state_dict()
    mapped = {"class_token": sd["cls_token"], "conv_proj.weight": sd["patch_embed.proj.weight"],
              "conv_proj.bias": sd["patch_embed.proj.bias"],
              "encoder.pos_embedding": sd["pos_embed"], "encoder.ln.weight": sd["norm.weight"],
              "encoder.ln.bias": sd["norm.bias"], "heads.head.weight": sd["head.weight"],
              "heads.head.bias": sd["head.bias"]}
    names = {"ln_1": "norm1", "ln_2": "norm2", "self_attention.in_proj": "attn.qkv",
             "self_attention.out_proj": "attn.proj", "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2"}
    for i in range(2):
        for theirs, ours in names.items():
            for kind in ("weight", "bias"):
                sep = "_" if theirs == "self_attention.in_proj" else "."
                mapped[f"encoder.layers.encoder_layer_{i}.{theirs}{sep}{kind}"] = \
                    sd[f"blocks.{i}.{ours}.{kind}"]
    ref.load_state_dict(mapped, strict=True)
    x = _x(2)
    with torch.no_grad():
        assert _diff(ref(x), plain(x)) <= 1e-5


def test_save_load_and_torch_export(tmp_path) -> None:
    model = vit_tiny(widths=(1.0, 0.67), stem="cifar", patch_size=8, depth=1)
    _randomise(model, 4)
    plain = extract_subnet(model, 0.67)
    loaded = load_subnet(save_subnet(plain, tmp_path / "vit"))
    x = _x(4)
    with torch.no_grad():
        assert torch.equal(loaded(x), plain(x))
        program = export_program(plain, x, dynamic_batch=True)
        assert _diff(program.module()(x), plain(x)) <= 1e-5
        x3 = torch.cat([x, x[:1]])
        assert _diff(program.module()(x3), plain(x3)) <= 1e-5


def test_gradient_touches_only_the_active_slice() -> None:
    model = vit_small(widths=(1.0, 0.5), stem="cifar", patch_size=8, depth=1, num_classes=10)
    d = 192
    with model.subnet(0.5):
        model(_x()).square().mean().backward()
        assert model.cls_token.grad[..., d:].abs().sum() == 0
        assert model.cls_token.grad[..., :d].abs().sum() > 0
        assert model.pos_embed.grad[..., d:].abs().sum() == 0
        assert model.patch_embed.proj.weight.grad[d:].abs().sum() == 0
        for m in model.modules():
            if isinstance(m, SlimLinear):
                assert m.weight.grad[m.active_out:].abs().sum() == 0
                assert m.weight.grad[:, m.active_in:].abs().sum() == 0
                assert m.weight.grad[: m.active_out, : m.active_in].abs().sum() > 0
            elif isinstance(m, SlimLayerNorm):
                assert m.active_channels == d
                assert m.weight.grad[d:].abs().sum() == 0


def test_bad_width_and_norm_errors() -> None:
    model = vit_tiny(widths=(1.0, 0.67), stem="cifar", depth=1)
    with pytest.raises(ValueError, match=r"\[1\.0, 0\.67\]"):
        model(_x(), 0.5)
    with pytest.raises(ValueError, match="norm mode"):
        vit_tiny(norm="batch", stem="cifar", depth=1)
    with pytest.raises(ValueError, match="not depth-elastic"):
        model.validate_spec(SubnetSpec(1.0, (1,)))


def test_registered() -> None:
    assert {"vit_tiny", "vit_small"} <= set(list_models())
