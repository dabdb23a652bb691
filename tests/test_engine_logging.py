"""Metrics logging and progress display (slimssl.engine.logging, slimssl.engine.progress)."""

import csv
import io

import torch

from slimssl.engine.logging import MetricsLogger, read_metrics
from slimssl.engine.progress import Progress, format_eta


def _csv(run):
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_metrics_jsonl_and_csv(tmp_path):
    run = tmp_path / "run"
    with MetricsLogger(run, tensorboard=False) as log:
        log.log({"loss": torch.tensor(1.5), "lr": 0.1}, step=1, epoch=0.1)
        log.log({"loss": 1.25, "lr": 0.2}, step=2, epoch=0.2)
        log.log({"knn_top1/w1.0": 40.0}, step=2, epoch=1, kind="eval")  # new column
    recs = read_metrics(run)
    assert [r["kind"] for r in recs] == ["train", "train", "eval"]
    assert recs[0] == {"kind": "train", "step": 1, "epoch": 0.1, "loss": 1.5, "lr": 0.1}
    assert read_metrics(run, kind="eval")[0]["knn_top1/w1.0"] == 40.0
    rows = _csv(run)
    assert list(rows[0]) == ["kind", "step", "epoch", "loss", "lr", "knn_top1/w1.0"]
    assert [r["loss"] for r in rows] == ["1.5", "1.25", ""]
    assert rows[2]["knn_top1/w1.0"] == "40.0"

    # resume: reopen, drop records after step 1, append
    with MetricsLogger(run, tensorboard=False) as log:
        log.drop_after(1)
        log.log({"loss": 1.0}, step=2, epoch=0.2)
    assert [(r["step"], r["loss"]) for r in read_metrics(run)] == [(1, 1.5), (2, 1.0)]
    assert len(_csv(run)) == 2


def test_disabled_logger_writes_nothing(tmp_path):
    log = MetricsLogger(tmp_path / "r", enabled=False)
    log.log({"loss": 1.0}, step=1)
    log.close()
    assert not (tmp_path / "r").exists()


def test_tensorboard_optional(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=True) as log:
        log.log({"loss": 2.0}, step=1)
    assert read_metrics(tmp_path)[0]["loss"] == 2.0


def test_progress_lines_mode():
    out = io.StringIO()  # not a TTY -> lines every print_every steps
    p = Progress(total=5, desc="ep0", print_every=2, stream=out)
    assert p.mode == "lines"
    for _ in range(5):
        p.update(images=64, loss=torch.tensor(0.5), lr=0.1)
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # steps 2, 4 and the last one
    assert lines[-1].startswith("ep0 5/5 loss=0.5 lr=0.1 img/s=") and "eta=0:00:00" in lines[-1]
    assert p.images_per_s is not None and p.images_per_s > 0


def test_progress_bar_and_off():
    out = io.StringIO()
    p = Progress(total=3, mode="bar", stream=out)
    p.update(images=8, loss=1.0)
    p.close()
    assert "loss=1" in out.getvalue()
    out2 = io.StringIO()
    q = Progress(total=3, mode="off", stream=out2)
    q.update(loss=1.0)
    q.close()
    assert out2.getvalue() == ""
    assert format_eta(3725) == "1:02:05" and format_eta(float("nan")) == "?"
