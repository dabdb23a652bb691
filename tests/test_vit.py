"""Slimmable ViT: width narrows dim and heads, exports match, torchvision reference."""

from __future__ import annotations

import random

import pytest
import torch
import torchvision

import slimssl.export.vit  # noqa: F401  (registers the plain twin and extractor)
from slimssl.export.extract import extract_subnet
from slimssl.export.io import load_subnet, save_subnet
from slimssl.export.torchscript import export_program, script_subnet
from slimssl.models.registry import list_models
from slimssl.models.vit import resample_pos_embed, vit_small, vit_tiny
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


# --- position-embedding interpolation for other input sizes ------------------------------------

def _keys(t: float, a: float = -0.5) -> float:
    """Keys' cubic convolution kernel (Keys 1981, Eq. 15); a = -0.5 is PIL's / antialiased."""
    t = abs(t)
    if t < 1:
        return ((a + 2) * t - (a + 3)) * t * t + 1
    if t < 2:
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return 0.0


def _hand_resample_1d(values: list[float], out_len: int) -> list[float]:
    """Antialiased bicubic resize of one line, written from the definition (PIL's resize):
    output i is centred at source coordinate ``c = (i + 0.5) * n / m`` (pixel centres at
    ``j + 0.5``); the kernel is stretched by ``s = max(1, n / m)`` (so downscaling averages),
    ``w_j = keys((j + 0.5 - c) / s)`` over the source pixels with ``|j + 0.5 - c| < 2 s``, and the
    weights are normalised to sum to one (pixels outside the grid are simply left out)."""
    n, m = len(values), out_len
    scale = max(1.0, n / m)
    out = []
    for i in range(m):
        c = (i + 0.5) * n / m
        weights = {j: _keys((j + 0.5 - c) / scale) for j in range(n)
                   if abs(j + 0.5 - c) < 2 * scale}
        total = sum(weights.values())
        out.append(sum(w * values[j] for j, w in weights.items()) / total)
    return out


def _hand_resample_grid(grid: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """(H, W) -> (rows, cols), separably: every column, then every row."""
    h, w = grid.shape
    cols_done = [_hand_resample_1d(grid[:, j].tolist(), rows) for j in range(w)]
    by_row = [[cols_done[j][i] for j in range(w)] for i in range(rows)]
    return torch.tensor([_hand_resample_1d(r, cols) for r in by_row])


def test_resample_pos_embed_against_hand_values() -> None:
    ramp = torch.arange(4.0).repeat(4, 1)  # value = column index on a 4x4 grid
    g = torch.Generator().manual_seed(0)
    rand = torch.randn(5, 5, generator=g)
    cls = torch.tensor([[[7.0, -3.0]]])
    pos = torch.cat([cls, torch.stack([ramp.flatten(), 10 * ramp.t().flatten()], -1)[None]], 1)
    up = resample_pos_embed(pos, (4, 4), (8, 8))
    assert up.shape == (1, 65, 2) and torch.equal(up[:, :1], cls)  # class token kept as it is
    grid = up[0, 1:, 0].reshape(8, 8)
    # interior: the kernel reproduces a linear ramp at source coordinate j / 2 - 1/4
    assert torch.allclose(grid[:, 3:5], torch.tensor([1.25, 1.75]).expand(8, 2), atol=1e-6)
    # border by hand: c = 0.25, pixels 0 and 1 at distances 0.25 and 1.25 (pixel -1 is outside):
    # w0 = 1 - 2.125 * 0.25^2 = 0.8671875, w1 = -0.0703125 -> (0 * w0 + 1 * w1) / (w0 + w1)
    assert grid[0, 0].item() == pytest.approx(-0.0703125 / 0.796875, abs=1e-6)
    assert torch.allclose(up[0, 1:, 1].reshape(8, 8), 10 * grid.t(), atol=1e-5)  # per channel
    # a random grid, up along rows and down along columns, against the written-out definition
    pos = torch.cat([cls[..., :1], rand.flatten()[None, :, None]], 1)
    out = resample_pos_embed(pos, (5, 5), (7, 3))[0, 1:, 0].reshape(7, 3)
    assert torch.allclose(out, _hand_resample_grid(rand, 7, 3), atol=1e-5)
    # the configured size is the identity (the very tensor, no resampling round-off)
    assert resample_pos_embed(pos, (5, 5), (5, 5)) is pos
    with pytest.raises(ValueError, match="grid tokens"):
        resample_pos_embed(pos, (4, 4), (8, 8))


def test_resample_pos_embed_matches_timm() -> None:
    timm_layers = pytest.importorskip("timm.layers")
    pos = torch.randn(1, 1 + 6 * 6, 16, generator=torch.Generator().manual_seed(1))
    for new in ((9, 9), (4, 4), (6, 3)):
        ref = timm_layers.resample_abs_pos_embed(pos, new, (6, 6), num_prefix_tokens=1)
        assert _diff(resample_pos_embed(pos, (6, 6), new), ref) <= 1e-6


def test_other_input_sizes_interpolate_in_model_and_export() -> None:
    model = vit_tiny(widths=(1.0, 0.67), stem="cifar", patch_size=8, depth=2, num_classes=10)
    _randomise(model, 5)
    model.eval()
    x48 = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(6))
    wide = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(7))
    # the model at 48 px = the same weights configured for 48 px with the resampled embedding
    big = vit_tiny(widths=(1.0, 0.67), stem="cifar", img_size=48, patch_size=8, depth=2,
                   num_classes=10).eval()
    state = dict(model.state_dict(), pos_embed=resample_pos_embed(model.pos_embed, (4, 4), (6, 6)))
    big.load_state_dict(state)
    with torch.no_grad():
        for width in (1.0, 0.67):
            assert _diff(model(x48, width), big(x48, width)) <= 1e-6
            plain = extract_subnet(model, width)
            assert _diff(model(x48, width), plain(x48)) <= 1e-5
            assert _diff(model(wide, width), plain(wide)) <= 1e-5  # 5x7 grid, not square
            assert _diff(script_subnet(plain)(wide), plain(wide)) <= 1e-5
    with pytest.raises(RuntimeError, match="multiples of 8"):
        model(torch.zeros(1, 3, 30, 32))
    with pytest.raises(RuntimeError, match="multiples of 8"):
        extract_subnet(model, 1.0)(torch.zeros(1, 3, 32, 36))


def test_other_input_sizes_match_timm_dynamic_img_size() -> None:
    """Independent reference: timm's ViT (``dynamic_img_size=True``) with the exported weights."""
    timm = pytest.importorskip("timm")
    model = vit_tiny(widths=(1.0, 0.67), stem="cifar", patch_size=8, depth=2, num_classes=10)
    _randomise(model, 8)
    plain = extract_subnet(model, 0.67)
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=128, depth=2, num_heads=2, num_classes=10,
        dynamic_img_size=True).eval()
    ref.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(2, 3, 40, 56, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert _diff(ref(x), plain(x)) <= 1e-5
