"""Config loading and validation (slimssl.engine.config)."""

import pytest
import yaml

from slimssl.engine.config import (
    Config,
    ConfigError,
    config_to_dict,
    load_config,
    save_config,
)


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


def test_defaults_and_yaml(tmp_path):
    cfg = load_config(None, [])
    assert cfg.model.widths == [1.0, 0.75, 0.5, 0.25]
    assert cfg.method.name == "mocov2" and cfg.recipe.name == "slimclr"
    p = _write(tmp_path, "optim:\n  name: lars\n  lr: 1\nmodel:\n  depths: [[2, 2], [3, 4]]\n")
    cfg = load_config(p, [])
    assert cfg.optim.name == "lars"
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)  # int accepted for float
    assert cfg.model.depths == [[2, 2], [3, 4]]
    # YAML 1.1 reads 1e-4 as a string; float fields accept it, int fields do not
    cfg = load_config(_write(tmp_path, "optim:\n  weight_decay: 1e-4\n"), ["optim.min_lr=5E-6"])
    assert cfg.optim.weight_decay == 1e-4 and cfg.optim.min_lr == 5e-6
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(None, ["train.epochs=1e2"])


def test_overrides(tmp_path):
    p = _write(tmp_path, "train:\n  epochs: 5\n")
    cfg = load_config(p, ["train.epochs=7", "model.widths=[1, 0.5]", "optim.lr_change_epoch=2",
                          "optim.lr_change_to=3.2", "data.path=null", "out_dir=/tmp/x"])
    assert cfg.train.epochs == 7
    assert cfg.model.widths == [1.0, 0.5]
    assert cfg.optim.lr_change_to == 3.2
    assert cfg.data.path is None and cfg.out_dir == "/tmp/x"


def test_unknown_key_names_dotted_key_and_suggests(tmp_path):
    p = _write(tmp_path, "recipe:\n  slowstart_epochs: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p, [])
    msg = str(e.value)
    assert "recipe.slowstart_epochs" in msg
    assert "recipe.slow_start_epochs" in msg  # suggestion
    assert "distill_temperature" in msg  # lists the valid keys
    with pytest.raises(ConfigError, match="optimm"):
        load_config(None, ["optimm.lr=1"])


def test_wrong_type_names_key_type_value():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.epochs=ten"])
    msg = str(e.value)
    assert "train.epochs" in msg and "int" in msg and "'ten'" in msg
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(None, ["train.epochs=1.5"])  # float not accepted for int
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(None, ["train.amp=true"])  # bool is not str
    with pytest.raises(ConfigError, match="model.widths"):
        load_config(None, ["model.widths=[1, a]"])
    with pytest.raises(ConfigError, match="data.strict"):
        load_config(None, ["data.strict=1"])  # int is not bool


def test_choices_validated():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["recipe.distill=kl"])
    assert "recipe.distill" in str(e.value) and "'mse'" in str(e.value)
    with pytest.raises(ConfigError, match="optim.name"):
        load_config(None, ["optim.name=adam"])
    assert load_config(None, ["method.momentum_schedule=cosine"]).method.momentum_schedule == "cosine"


def test_cross_field_checks():
    with pytest.raises(ConfigError, match="model.widths"):
        load_config(None, ["model.widths=[1.5]"])
    with pytest.raises(ConfigError, match="lr_change"):
        load_config(None, ["optim.lr_change_epoch=3"])
    with pytest.raises(ConfigError, match="kd_label_weight.*'slimclr'"):
        load_config(None, ["recipe.kd_label_weight=1.0"])  # the label weight of no recipe here


def test_roundtrip_and_save(tmp_path):
    cfg = load_config(None, ["recipe.weights=proportional", "model.width_range=[0.25, 1]"])
    d = config_to_dict(cfg)
    assert Config.from_dict(d) == cfg
    out = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert load_config(str(out), []) == cfg
    assert yaml.safe_load(out.read_text())["recipe"]["weights"] == "proportional"


def test_bad_yaml_and_sections(tmp_path):
    with pytest.raises(ConfigError, match="mapping"):
        load_config(_write(tmp_path, "- 1\n- 2\n"), [])
    with pytest.raises(ConfigError, match="optim"):
        load_config(_write(tmp_path, "optim: 3\n"), [])
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        load_config(None, ["optim.lr"])
    assert load_config(_write(tmp_path, ""), []) == Config()


def test_batch_that_does_not_split_into_bn_groups_fails_at_load_time():
    with pytest.raises(ConfigError, match="method.bn_splits.*100.*8 equal groups"):
        load_config(None, ["data.batch_size=100", "method.bn_splits=8"])
    assert load_config(None, ["data.batch_size=96", "method.bn_splits=8"]).method.bn_splits == 8


def test_distill_temperature_follows_the_method(tmp_path):
    """SlimCLR Sec. 4.1: tau_2 = 5.0 for SlimCLR-MoCov2, 1.0 for SlimCLR-MoCov3; an explicit value
    wins; the saved (resolved) config records the value the run used."""
    assert load_config(None, []).recipe.distill_temperature == 5.0  # default job: mocov2
    cfg = load_config(None, ["method.name=mocov3"])
    assert cfg.recipe.distill_temperature == 1.0
    assert load_config(None, ["method.name=simclr"]).recipe.distill_temperature == 1.0
    assert load_config(None, ["method.name=mocov3", "recipe.distill_temperature=3"]) \
        .recipe.distill_temperature == 3.0
    saved = yaml.safe_load(save_config(cfg, tmp_path / "config.yaml").read_text())
    assert saved["recipe"]["distill_temperature"] == 1.0
    assert load_config(str(tmp_path / "config.yaml"), []).recipe.distill_temperature == 1.0
    with pytest.raises(ConfigError, match="recipe.distill_temperature"):
        load_config(None, ["recipe.distill_temperature=0"])
