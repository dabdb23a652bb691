"""The optional Weights & Biases sink of :class:`slimssl.engine.logging.MetricsLogger`."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from slimssl.engine.config import Config, ConfigError, load_config
from slimssl.engine.logging import MetricsLogger, read_metrics


class _FakeRun:
    def __init__(self, calls: list, **init):
        self.calls, self.init = calls, init
        calls.append(("init", init))

    def log(self, data, step):
        self.calls.append(("log", dict(data), step))

    def finish(self):
        self.calls.append(("finish",))


@pytest.fixture
def fake_wandb(monkeypatch):
    calls: list = []
    module = types.SimpleNamespace(init=lambda **kw: _FakeRun(calls, **kw))
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def test_wandb_gets_what_the_files_get(tmp_path, fake_wandb):
    run = tmp_path / "myrun"
    settings = dict(project="proj", entity="team", name=None, config={"optim": {"lr": 0.1}})
    with MetricsLogger(run, tensorboard=False, wandb=settings) as log:
        log.log({"loss": 1.5, "loss/w1.00": 0.75, "note": "text", "flag": True,
                 "nan": float("nan")}, step=20, epoch=0.5)
        log.log({"knn/top1/w1.00": 40.0}, step=40, epoch=1, kind="knn")
    init = fake_wandb[0][1]
    assert init == {"project": "proj", "entity": "team", "name": "myrun",
                    "config": {"optim": {"lr": 0.1}}, "dir": str(run),
                    "id": init["id"], "resume": "allow"}
    assert len(init["id"]) == 12
    # numbers only (no strings, booleans or NaN), named <kind>/<metric> as in TensorBoard
    assert fake_wandb[1:] == [("log", {"train/epoch": 0.5, "train/loss": 1.5,
                                       "train/loss/w1.00": 0.75}, 20),
                              ("log", {"knn/epoch": 1, "knn/knn/top1/w1.00": 40.0}, 40),
                              ("finish",)]
    assert [r["step"] for r in read_metrics(run)] == [20, 40]  # the files are unchanged
    # a resumed run continues the same W&B run
    with MetricsLogger(run, tensorboard=False, wandb=settings):
        pass
    assert fake_wandb[-2][1]["id"] == init["id"]
    assert (run / "wandb_run_id.txt").read_text() == init["id"] + "\n"


def test_wandb_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    with pytest.raises(ConfigError, match=r"pip install 'slimssl\[wandb\]'"):
        MetricsLogger(tmp_path / "run", tensorboard=False, wandb={"project": "p"})


def test_log_config_keys():
    cfg = load_config(None, ["log.wandb=true", "log.wandb_project=p", "log.wandb_entity=e",
                             "log.wandb_name=n"])
    assert (cfg.log.wandb, cfg.log.wandb_project, cfg.log.wandb_entity, cfg.log.wandb_name) == (
        True, "p", "e", "n")
    assert Config().log.wandb is False
    with pytest.raises(ConfigError, match="did you mean 'log.wandb_project'"):
        load_config(None, ["log.wandb_projet=p"])


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
def test_wandb_offline_run(tmp_path, monkeypatch):
    """The real package in offline mode (no account, no network)."""
    import wandb

    for var, value in [("WANDB_MODE", "offline"), ("WANDB_SILENT", "true"),
                       ("WANDB_DIR", str(tmp_path)), ("WANDB_CACHE_DIR", str(tmp_path / "cache")),
                       ("WANDB_CONFIG_DIR", str(tmp_path / "config"))]:
        monkeypatch.setenv(var, value)
    run = tmp_path / "run"
    with MetricsLogger(run, tensorboard=False,
                       wandb=dict(project="slimssl-test", config={"train": {"epochs": 2}})) as log:
        log.log({"loss": 2.0}, step=1, epoch=0.5)
        log.log({"loss": 1.0}, step=2, epoch=1.0)
        # W&B commits a step's row when the next step arrives: the summary holds step 1's values
        assert (wandb.run.project, wandb.run.name) == ("slimssl-test", "run")
        assert dict(wandb.run.config) == {"train": {"epochs": 2}}
        summary = dict(wandb.run.summary)
        assert (summary["_step"], summary["train/loss"], summary["train/epoch"]) == (1, 2.0, 0.5)
        run_id = wandb.run.id
    assert wandb.run is None  # finished on close
    assert (run / "wandb_run_id.txt").read_text() == run_id + "\n"
    assert len(list((run / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))) == 1
