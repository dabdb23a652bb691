"""Every shipped config validates and builds its backbone, method and recipe."""

from pathlib import Path

import pytest

from slimssl.engine.build import build_backbone, build_method, build_recipe
from slimssl.engine.config import ConfigError, load_config
from slimssl.export.extract import extract_subnet

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


# Parameters of the exported full-width member (no classifier), from torchvision's models:
# resnet50 25,557,032 - fc 2,049,000; resnet18 11,689,512 - fc 513,000, CIFAR stem 3x3 (1,728)
# instead of 7x7 (9,408); mobilenet_v3_large 5,483,032 - last Linear(1280, 1000) 1,281,000 (the
# 960 -> 1280 layer belongs to the backbone). Other stem widths by hand: every channel x w/64,
# so a conv between two scaled layers x (w/64)^2, the RGB stem conv and each BatchNorm x w/64:
# ResNet-18 (CIFAR stem) convs 11,159,232 of which the stem 1,728, BN 9,600 -> at w = 32:
# (11,159,232 - 1,728) / 4 + 1,728 / 2 + 9,600 / 2 = 2,795,040; ResNet-34 (torchvision
# 21,797,672 - fc 513,000) convs 21,267,648 of which the stem 9,408, BN 17,024 -> at w = 96:
# (21,267,648 - 9,408) x 2.25 + 9,408 x 1.5 + 17,024 x 1.5 = 47,870,688.
FULL_MEMBER_PARAMS = {
    ("resnet50", "imagenet", None): 23_508_032,
    ("resnet18", "cifar", None): 11_168_832,
    ("resnet18", "cifar", 32): 2_795_040,
    ("resnet34", "imagenet", 96): 47_870_688,
    ("mobilenet_v3_large", "imagenet", None): 4_202_032,
}


def test_configs_are_shipped():
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_builds(path):
    cfg = load_config(str(path), [])
    backbone = build_backbone(cfg)
    method = build_method(cfg, backbone)
    recipe = build_recipe(cfg, backbone)
    specs = recipe.sample(float(cfg.train.epochs))  # after any warm-up: the whole family trains
    assert specs[0].width == max(s.width for s in specs)
    base = cfg.model.base_width  # None or 64: torchvision's stem width (the ResNet default)
    key = (cfg.model.arch, cfg.model.stem, None if base in (None, 64) else base)
    assert key in FULL_MEMBER_PARAMS, f"{path.name}: add the hand count of {key} to the table"
    full = extract_subnet(backbone, backbone.full_spec)
    assert sum(p.numel() for p in full.parameters()) == FULL_MEMBER_PARAMS[key]
    assert method.online.backbone is backbone


def test_unknown_key_in_a_config_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe:\n  slowstart_epochs: 10\n")
    with pytest.raises(ConfigError, match="slowstart_epochs.*slow_start_epochs"):
        load_config(str(bad), [])
