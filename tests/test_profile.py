"""Params/MACs of exported members vs SlimCLR Table 1 (and US3L slides Table 6)."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from slimssl.export import count_macs, count_params, format_profile_table, profile_family
from slimssl.models import create
from slimssl.nn import SubnetSpec

# SlimCLR Table 1 (params in M, exact to 2 decimals) and MACs in G (within 1.5%).
RESNET50_TABLE = {1.0: (25.56, 4.09), 0.75: (14.77, 2.32), 0.5: (6.92, 1.05), 0.25: (1.99, 0.278)}


def test_resnet50_family_matches_slimclr_table1():
    model = create("resnet50", widths=list(RESNET50_TABLE), num_classes=1000)
    rows = profile_family(model, input_size=224)
    assert [r["width"] for r in rows] == list(RESNET50_TABLE)
    for row in rows:
        params_m, macs_g = RESNET50_TABLE[row["width"]]
        assert round(row["params"] / 1e6, 2) == params_m, row
        assert abs(row["macs"] / 1e9 - macs_g) / macs_g <= 0.015, row
        assert row["depth"] is None and row["label"] == SubnetSpec(row["width"]).label
    table = format_profile_table(rows)
    assert "MACs" in table.splitlines()[0] and "25.56" in table and "1.99" in table


def test_counts_on_torchvision_resnet18():
    tv = torchvision.models.resnet18()
    assert count_params(tv) == 11_689_512
    assert abs(count_macs(tv, 224) / 1e9 - 1.82) / 1.82 < 0.01  # the usual 1.82G


def test_count_macs_formulae():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 8, 3, padding=1, bias=False)
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
            self.fc = nn.Linear(8, 5)

        def forward(self, x):
            return self.fc(self.dw(self.conv(x)).mean((2, 3)))

    expected = 8 * 6 * 6 * 4 * 9 + 8 * 6 * 6 * 1 * 9 + 8 * 5
    assert count_macs(Net(), (4, 6, 6)) == expected
    assert count_macs(Net(), (3, 4, 6, 6)) == expected  # per sample


def test_depth_family_profile_contains_resnet18():
    model = create("resnet34", depth_choices=[(3, 4, 6, 3), (2, 2, 2, 2)], num_classes=1000)
    rows = profile_family(model, input_size=64)
    assert [r["depth"] for r in rows] == [[3, 4, 6, 3], [2, 2, 2, 2]]
    assert rows[0]["params"] == count_params(torchvision.models.resnet34())
    assert rows[1]["params"] == count_params(torchvision.models.resnet18())
    assert rows[1]["macs"] == count_macs(torchvision.models.resnet18(), 64)


def test_universal_family_profiles_without_recalibration():
    model = create("resnet18", norm="universal", widths=(1.0, 0.25), stem="cifar")
    rows = profile_family(model, [0.6, 0.25], input_size=32)
    assert rows[0]["params"] > rows[1]["params"] > 0
    assert float(model.layer1[0].bn1.stats_width) == 1.0  # the stats tag is restored
    with pytest.raises(RuntimeError, match="recalibrate"):
        model.eval()
        with model.subnet(0.6):
            model(torch.randn(1, 3, 8, 8))


def _tiny_vit_macs_by_hand(tokens: int, dim: int, depth: int, mlp: int, patch: int,
                           classes: int) -> tuple[int, int]:
    """(layers, attention products) of a class-token ViT, written out: the patch conv
    (``tokens - 1`` patches x 3 p^2 x dim); per block qkv (3 dim^2), proj (dim^2), fc1 and fc2
    (2 dim mlp) on every token; the head on the class token; and per block q k^T plus attn v,
    ``2 x tokens^2 x dim`` over all heads together."""
    layers = (tokens - 1) * 3 * patch * patch * dim \
        + depth * tokens * (3 * dim * dim + dim * dim + 2 * dim * mlp) + dim * classes
    return layers, depth * 2 * tokens * tokens * dim


def test_vit_macs_count_the_attention_products():
    import slimssl.export.vit  # noqa: F401  (registers the ViT exporter)
    from slimssl.export.extract import extract_subnet

    model = create("vit_tiny", widths=(1.0, 0.67), stem="cifar", patch_size=8, depth=2,
                   num_classes=10)
    for width, dim in ((1.0, 192), (0.67, 128)):
        plain = extract_subnet(model, width)
        layers, attention = _tiny_vit_macs_by_hand(17, dim, 2, 4 * dim, 8, 10)
        assert count_macs(plain, 32) == layers + attention
        assert attention == 2 * 2 * 17 * 17 * dim  # e.g. 221,952 at dim 192
    # another resolution: 6x6 patches (the position embedding is resampled, not counted)
    layers, attention = _tiny_vit_macs_by_hand(37, 192, 2, 768, 8, 10)
    assert count_macs(extract_subnet(model, 1.0), 48) == layers + attention
    # torchvision's ViT attends through nn.MultiheadAttention (functional projections): same
    ref = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=128, mlp_dim=512,
        num_classes=10)
    assert count_macs(ref, 32) == sum(_tiny_vit_macs_by_hand(17, 128, 2, 512, 8, 10))


def test_explicit_products_are_counted_once():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 4)

        def forward(self, x):  # x: (N, 1, 5, 6)
            h = self.fc(x.squeeze(1))                   # 5 x 6 x 4 per sample
            gram = h @ h.transpose(1, 2)                # 5 x 5 x 4
            return torch.bmm(gram, h) + torch.matmul(gram, h)  # 2 x (5 x 4 x 5)

    assert count_macs(Net(), (3, 1, 5, 6)) == 5 * 6 * 4 + 5 * 5 * 4 + 2 * 5 * 4 * 5
