"""Registries of backbones, methods and recipes (one implementation), each class owning its
defaults, and the resolved config: no ``null`` for a value decided when the run is built."""

import pytest
import yaml

from slimssl.engine.build import build_backbone, build_method, build_recipe
from slimssl.engine.config import Config, ConfigError, save_config
from slimssl.methods import METHODS
from slimssl.methods.mocov2 import MoCoV2
from slimssl.methods.mocov3 import MoCoV3
from slimssl.recipes import RECIPES
from slimssl.recipes.dspnet import DSPNet
from slimssl.recipes.slimclr import SlimCLR
from slimssl.registry import Registry

TINY = {"model": {"arch": "resnet10_narrow", "widths": [1.0, 0.5]},
        "method": {"proj_dim": 8, "queue_size": 16}, "train": {"epochs": 6}}


def _cfg(**sections):
    d = {k: dict(v) for k, v in TINY.items()}
    for k, v in sections.items():
        d.setdefault(k, {}).update(v)
    return Config.from_dict(d)


def test_registry_lookup_and_errors():
    reg = Registry("widget")
    reg.register("a")(int)
    assert reg.get("A") is int and "a" in reg and reg.names() == ["a"]
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("a")(float)
    with pytest.raises(ValueError, match=r"unknown widget 'b'.*known: a"):
        reg.get("b")
    assert METHODS.get("mocov2") is MoCoV2 and RECIPES.get("dspnet") is DSPNet
    assert RECIPES.get("individual") is SlimCLR and RECIPES.get("slimclr") is SlimCLR
    assert set(METHODS.names()) == {"byol", "mocov2", "mocov3", "simclr", "simclr_momentum",
                                    "simsiam", "supervised"}
    assert set(RECIPES.names()) == {"dspnet", "individual", "slimclr", "snet", "supervised",
                                    "us3l", "usnet"}


def test_method_defaults_come_from_the_class_and_are_written_back():
    cfg = _cfg(method={"name": "mocov3"})
    backbone = build_backbone(cfg)
    assert cfg.method.proj_hidden is None and cfg.method.pred_hidden is None
    method = build_method(cfg, backbone)
    assert isinstance(method, MoCoV3)
    # MoCoV3's own defaults (MoCo v3: 4096-wide hidden layers), not values in the engine
    assert (cfg.method.proj_hidden, cfg.method.pred_hidden) == (4096, 4096)
    assert (cfg.method.proj_dim, cfg.method.temperature) == (8, 1.0)  # set / MoCo v3's tau
    # a method's own defaults, not MoCo v2's: SimCLR 256-d, tau 0.5 (Chen et al. 2020)
    sim = Config.from_dict({"model": TINY["model"], "method": {"name": "simclr"}})
    build_method(sim, build_backbone(sim))
    assert (sim.method.proj_dim, sim.method.temperature) == (256, 0.5)
    # MoCo v2: the projector's hidden layer is as wide as the backbone's features
    cfg2 = _cfg()
    backbone2 = build_backbone(cfg2)
    build_method(cfg2, backbone2)
    assert cfg2.method.proj_hidden == backbone2.full_features


def test_recipe_defaults_and_update_mode_come_from_the_class():
    cfg = _cfg()
    assert cfg.recipe.slow_start_epochs is None
    recipe = build_recipe(cfg, build_backbone(cfg))
    assert cfg.recipe.slow_start_epochs == 3.0 and recipe.slow_start_epochs == 3.0  # epochs / 2
    assert recipe.update_mode == "sum" == cfg.recipe.update_mode
    d = _cfg(recipe={"name": "dspnet"}, method={"name": "byol"})
    assert build_recipe(d, build_backbone(d)).update_mode == "accumulate" == DSPNet.update_mode
    o = _cfg(recipe={"name": "dspnet", "update_mode": "sum"}, method={"name": "byol"})
    assert build_recipe(o, build_backbone(o)).update_mode == "sum"


def test_recipe_errors_name_the_key():
    cfg = _cfg(recipe={"name": "individual"})
    with pytest.raises(ConfigError, match="exactly one width in model.widths"):
        build_recipe(cfg, build_backbone(cfg))
    cfg = _cfg(recipe={"name": "us3l"})
    with pytest.raises(ConfigError, match="needs model.norm='universal'"):
        build_recipe(cfg, build_backbone(cfg))


def test_saved_config_shows_the_values_used(tmp_path):
    cfg = _cfg(method={"name": "byol"}, recipe={"name": "slimclr"})
    backbone = build_backbone(cfg)
    build_method(cfg, backbone)
    build_recipe(cfg, backbone)
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["method"]["proj_hidden"] == 4096 and saved["method"]["pred_hidden"] == 4096
    assert saved["recipe"]["slow_start_epochs"] == 3.0
    assert saved["recipe"]["update_mode"] == "sum"
    assert saved["recipe"]["distill_temperature"] is not None


def test_backbone_defaults_are_written_back():
    cfg = _cfg()
    build_backbone(cfg)
    assert cfg.model.base_width == 32  # resnet10_narrow's own stem width
    uni = _cfg(model={"norm": "universal", "widths": [1.0, 0.25]})
    build_backbone(uni)
    assert uni.model.width_range == [0.25, 1.0]


def test_a_registered_method_is_a_valid_config_name():
    with pytest.raises(ConfigError, match="method.name.*not one of"):
        Config.from_dict({"method": {"name": "my_method"}})
    METHODS.register("my_method")(MoCoV2)  # a user's own method: no list to edit anywhere
    try:
        assert Config.from_dict({"method": {"name": "my_method"}}).method.name == "my_method"
    finally:
        METHODS._entries.pop("my_method")
