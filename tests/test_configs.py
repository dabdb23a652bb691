"""Every shipped config validates and builds its backbone, method and recipe."""

from pathlib import Path

import pytest

from slimssl.engine.build import build_backbone, build_method, build_recipe
from slimssl.engine.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


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
    assert sum(p.numel() for p in method.online.parameters()) > 0


def test_unknown_key_in_a_config_file_is_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe:\n  slowstart_epochs: 10\n")
    with pytest.raises(ConfigError, match="slowstart_epochs.*slow_start_epochs"):
        load_config(str(bad), [])
