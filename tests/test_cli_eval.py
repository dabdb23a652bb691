"""``slimssl linear`` / ``slimssl finetune`` on a tiny pre-trained run: results merge into the
run's table by sub-network label, every row from its own member, and the plot is redrawn."""

import argparse
import json
from dataclasses import replace

import pytest
import torch

from slimssl.cli import main
from slimssl.cli.linear import _recipe
from slimssl.data import load_dataset, load_split
from slimssl.data.subset import per_class_count
from slimssl.engine.build import load_pretrained
from slimssl.eval.linear_eval import SEMISUP_LINEAR, linear_eval
from slimssl.eval.report import read_results, write_results
from slimssl.eval.semisup import FinetuneRecipe, finetune_family, semisup_linear

PRETRAIN = ["pretrain", "--data", "synthetic", "--epochs", "1", "--no-eval", "--progress", "off",
            "--set", "model.arch=resnet10_narrow", "--set", "model.widths=[1.0,0.5]",
            "--set", "data.image_size=8", "--set", "data.batch_size=32",
            "--set", "method.queue_size=64"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()  # module fixtures run before conftest's one-thread fixture
    torch.set_num_threads(1)
    try:
        assert main([*PRETRAIN, "--out-dir", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    # an existing kNN table (as `slimssl knn` writes) plus a row of another member
    write_results(out, [
        {"subnet": "w1.00", "width": 1.0, "knn_top1_k200": 11.0, "params_m": 1.0, "macs_g": 0.004},
        {"subnet": "w0.50", "width": 0.5, "knn_top1_k200": 12.0, "params_m": 0.3, "macs_g": 0.001},
        {"subnet": "w0.10", "width": 0.1, "knn_top1_k200": 13.0},
    ])
    return out


def _library_run(run_dir):
    """The run's backbone and splits loaded through the library, not the CLI: the reference
    the CLI's numbers are checked against."""
    cfg, method = load_pretrained(str(run_dir))
    backbone = method.online.backbone.eval()
    return (backbone, load_split(cfg.data, "train", cfg.train.seed),
            load_split(cfg.data, "test", cfg.train.seed))


def _whole_images(accuracy: float, num_test: int) -> bool:
    """An accuracy (%) is a whole number of the ``num_test`` test images."""
    count = accuracy * num_test / 100
    return abs(count - round(count)) < 1e-6


def test_linear_merges_switchable_and_slimmable_columns(run_dir, capsys):
    # a SlimCLR-MoCov2 run: SlimCLR's MoCo v2 protocol with probe distillation by default
    assert main(["linear", str(run_dir), "--epochs", "2"]) == 0
    rows = {r["subnet"]: r for r in read_results(run_dir)}
    assert [rows[s]["knn_top1_k200"] for s in ("w1.00", "w0.50", "w0.10")] == [11.0, 12.0, 13.0]
    # every member's row holds that member's probes: the library's linear_eval on the same
    # backbone, recipe (MoCo v2's, 2 epochs), distillation and seed, features extracted afresh
    backbone, train, test = _library_run(run_dir)
    recipe = _recipe(argparse.Namespace(epochs=2, lr=None, batch_size=None, bn=None), "mocov2")
    want = linear_eval(backbone, backbone.family(), train, test, 10, recipe, "fast",
                       ("switchable", "slimmable"), distill=True, seed=0)
    for spec in backbone.family():
        for kind in ("switchable", "slimmable"):
            for k in ("top1", "top5"):
                got = rows[spec.label][f"linear_{kind}_{k}"]
                assert got == want[kind][spec][k], (spec.label, kind, k)
                assert _whole_images(got, len(test))
        assert rows[spec.label]["linear_switchable_protocol"] == \
            "mocov2 fast 2ep lr60 bs1024 distill"
    assert rows["w1.00"]["feature_dim"] == 2 * rows["w0.50"]["feature_dim"]
    assert "linear_switchable_top1" not in rows["w0.10"]
    md = (run_dir / "results.md").read_text()
    assert "Lin-sw top-1" in md and "Lin-sl top-1" in md
    assert "linear_slimmable_top1" in (run_dir / "results.csv").read_text().splitlines()[0]
    assert (run_dir / "accuracy_vs_macs.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "Lin-sw top-1" in out and "protocol from the run: SlimCLR Sec. 4.1" in out


def test_linear_protocol_follows_the_run():
    """SlimCLR Sec. 4.1 (MoCo v2 / v3 probes, distillation T = 1 for SlimCLR runs), DSPNet
    App. 0.A.2 for DSPNet runs and as the fallback; a shortened step schedule keeps its shape."""
    import argparse

    from slimssl.cli.linear import _recipe, run_defaults

    assert run_defaults("slimclr", "mocov2")[:2] == ("mocov2", True)
    assert run_defaults("slimclr", "mocov3")[:2] == ("mocov3", True)
    assert run_defaults("individual", "mocov3")[:2] == ("mocov3", False)
    assert run_defaults("usnet", "mocov2")[:2] == ("mocov2", False)
    assert run_defaults("dspnet", "byol")[:2] == ("dspnet", False)
    assert run_defaults("us3l", "simclr_momentum")[:2] == ("dspnet", False)
    args = argparse.Namespace(epochs=10, lr=None, batch_size=None, bn=None)
    short = _recipe(args, "mocov2")
    assert (short.epochs, short.milestones, short.lr) == (10, (6.0, 8.0), 60.0)
    assert short.lr_at(59, 100) == 60.0 and short.lr_at(60, 100) == pytest.approx(6.0)
    assert short.lr_at(80, 100) == pytest.approx(0.6)


def test_finetune_and_linear_only_add_their_own_columns(run_dir):
    assert main(["finetune", str(run_dir), "--fraction", "0.1", "--epochs", "1"]) == 0
    assert main(["finetune", str(run_dir), "--fraction", "0.1", "--linear-only",
                 "--epochs", "2"]) == 0
    subset = json.loads((run_dir / "subsets" / "labelled_10pct_seed0.json").read_text())
    labels = load_dataset("synthetic", "train", 8).labels
    counts = torch.bincount(labels[subset["indices"]], minlength=10).tolist()
    assert counts == [per_class_count(int(n), 0.1) for n in torch.bincount(labels)]
    assert subset["num_train"] == len(labels)
    rows = {r["subnet"]: r for r in read_results(run_dir)}
    # the library's fine-tuning and probes of every member on the saved labelled subset
    backbone, train, test = _library_run(run_dir)
    labelled = train.subset(torch.tensor(subset["indices"]))
    tuned = finetune_family(backbone, backbone.family(), labelled, test, 10,
                            replace(FinetuneRecipe(), epochs=1), seed=0)
    backbone, _, _ = _library_run(run_dir)
    probed = semisup_linear(backbone, backbone.family(), labelled, test, 10,
                            replace(SEMISUP_LINEAR, epochs=2), "fast", seed=0)
    for spec in backbone.family():
        row = rows[spec.label]
        assert row["semisup_finetune_10pct_top1"] == tuned[spec]["top1"]
        assert row["semisup_linear_10pct_top1"] == probed[spec]["top1"]
        assert _whole_images(row["semisup_finetune_10pct_top1"], len(test))
        assert _whole_images(row["semisup_linear_10pct_top1"], len(test))
    # the table's other columns stay (the fixture's kNN numbers; w0.10 is no member of the run)
    assert [rows[s]["knn_top1_k200"] for s in ("w1.00", "w0.50", "w0.10")] == [11.0, 12.0, 13.0]
    assert not any(k.startswith("semisup_") for k in rows["w0.10"])
    md = (run_dir / "results.md").read_text()
    assert "Semi-sup FT 10% top-1" in md and "Semi-sup lin 10% top-1" in md


def test_bad_arguments_are_rejected(run_dir, capsys):
    with pytest.raises(SystemExit):
        main(["linear", str(run_dir), "--probe", "switchable,bogus"])
    with pytest.raises(SystemExit):
        main(["finetune", str(run_dir), "--fraction", "1.5"])
    assert "--fraction must be in (0, 1]" in capsys.readouterr().err
