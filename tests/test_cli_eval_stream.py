"""The evaluation commands on a streamed JPEG folder (``--data-mode stream``): the same kNN table
as in memory, cached features refused for other weights, resumable probes, semi-supervised
protocols."""

from __future__ import annotations

import json

import pytest

from slimssl.cli import main
from slimssl.eval.report import read_results
from test_eval_stream import write_jpeg_folder
from tinyrun import train_tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream_cli")
    data = write_jpeg_folder(root / "jpeg", per_class=24, test_per_class=6)
    return train_tiny_run(data, root / "run")


def _knn(run_dir) -> dict:
    return {r["subnet"]: {k: v for k, v in r.items() if k.startswith("knn_top1")}
            for r in read_results(run_dir)}


def test_knn_streamed_equals_memory_and_refuses_stale_features(run_dir, capsys):
    assert main(["knn", str(run_dir), "--data-mode", "memory"]) == 0
    memory = _knn(run_dir)
    assert main(["knn", str(run_dir), "--data-mode", "stream", "--refresh-features"]) == 0
    assert _knn(run_dir) == memory
    shard = run_dir / "features" / "train" / "w1.00" / "shard_00000.safetensors"
    assert shard.is_file()
    meta = run_dir / "features" / "train" / "w1.00" / "meta.json"
    stale = json.loads(meta.read_text())
    stale["weights"] = "0" * 64  # as if the features came from an earlier checkpoint
    meta.write_text(json.dumps(stale))
    capsys.readouterr()
    assert main(["knn", str(run_dir), "--data-mode", "stream"]) == 2
    err = capsys.readouterr().err
    assert "weights changed" in err and "--refresh-features" in err
    assert main(["knn", str(run_dir), "--data-mode", "stream", "--refresh-features"]) == 0


def test_linear_streamed_resumes_from_its_epoch_checkpoint(run_dir, capsys):
    args = ["linear", str(run_dir), "--data-mode", "stream", "--mode", "augment",
            "--epochs", "2", "--batch-size", "16", "--resume", "auto"]
    assert main(args) == 0
    first = {r["subnet"]: r["linear_switchable_top1"] for r in read_results(run_dir)}
    ckpts = list((run_dir / "probe_checkpoints").glob("linear-*/ckpt_epoch0002_*.pt"))
    assert len(ckpts) == 1
    capsys.readouterr()
    assert main(args) == 0  # finished: resumes after epoch 2 and trains nothing more
    assert "resumed after epoch 2/2" in capsys.readouterr().out
    assert {r["subnet"]: r["linear_switchable_top1"] for r in read_results(run_dir)} == first


def test_semisupervised_protocols_stream(run_dir):
    assert main(["finetune", str(run_dir), "--data-mode", "stream", "--fraction", "0.25",
                 "--linear-only", "--epochs", "2"]) == 0
    assert main(["finetune", str(run_dir), "--data-mode", "stream", "--fraction", "0.25",
                 "--epochs", "1"]) == 0
    subset = json.loads((run_dir / "subsets" / "labelled_25pct_seed0.json").read_text())
    assert subset["count"] == 18  # 6 of each class's 24 images, chosen from the file list
    assert (run_dir / "features" / "train_25pct_seed0" / "w0.50").is_dir()
    rows = {r["subnet"]: r for r in read_results(run_dir)}
    for member in ("w1.00", "w0.50"):
        assert "semisup_linear_25pct_top1" in rows[member]
        assert "semisup_finetune_25pct_top1" in rows[member]
