"""``slimssl reproduce``: the verdict rule on hand-made numbers, the claim matrix (shared runs,
stable names), and the harness on a seconds-long scale (resume-skip, a killed run continues,
claims.md written)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import yaml

from slimssl.cli import main
from slimssl.cli import reproduce as cli_reproduce
from slimssl.eval import claims as C
from tinyrun import write_image_folder


# ------------------------------------------------------------------------------ verdict rule

def test_binomial_and_arm_se_by_hand():
    assert C.binomial_se(50.0, 10_000) == pytest.approx(0.5)
    # two seeds 40, 42 on 1,000 queries: s^2 = 2 < b^2 = 100^2 * .41 * .59 / 1000 = 2.419
    assert C.arm_se([40.0, 42.0], 1000) == pytest.approx(math.sqrt(2.419 / 2), rel=1e-4)
    # two seeds 30, 40 on 10,000 queries: s^2 = 50 > b^2 = 0.2344 -> sqrt(50 / 2) = 5
    assert C.arm_se([30.0, 40.0], 10_000) == pytest.approx(5.0)
    # one seed: the binomial SE alone
    assert C.arm_se([50.0], 10_000) == pytest.approx(0.5)


def test_compare_rule_by_hand():
    ours, base = [45.0, 47.0], [40.0, 41.0]
    # d = 46 - 40.5 = 5.5; SE = sqrt(2/2 + 0.5/2) = sqrt(1.25) (seed variances exceed binomial)
    r = C.compare(ours, base, 10_000, paper_sign=1, gated_gain=10.0)
    assert r["d"] == pytest.approx(5.5)
    assert r["se"] == pytest.approx(math.sqrt(1.25))
    assert r["verdict"] == "agrees"
    assert C.compare(ours, base, 10_000, paper_sign=-1, gated_gain=10.0)["verdict"] == "disagrees"
    assert C.compare(ours, base, 10_000, paper_sign=0, gated_gain=10.0)["verdict"] == "disagrees"
    # the baseline learned 7.9 points over random init: < 8, whatever d says
    r = C.compare(ours, base, 10_000, paper_sign=1, gated_gain=7.9)
    assert r["verdict"] == "inconclusive" and "7.9" in r["reason"]
    # |d| = 1.0 <= 2 SE = 2.24: undecided, unless the paper itself says "no difference"
    close = [41.0, 42.0]
    assert C.compare(close, base, 10_000, 1, 10.0)["verdict"] == "inconclusive"
    assert C.compare(close, base, 10_000, 0, 10.0)["verdict"] == "agrees"
    assert C.compare(ours, base, 10_000, None, 10.0)["verdict"] == "no paper figure"
    assert C.compare([], base, 10_000, 1, 10.0)["verdict"] == "missing"
    # one seed each, 10,000 queries: SE = sqrt(.5^2 + .5^2) = 0.707; d = 2 > 1.414 decides
    r = C.compare([52.0], [50.0], 10_000, 1, 9.0)
    assert r["se"] == pytest.approx(math.sqrt(0.2496 + 0.25), rel=1e-3)
    assert r["verdict"] == "agrees"


def test_claim_verdict():
    assert C.claim_verdict(["agrees", "agrees"]) == "agrees"
    assert C.claim_verdict(["agrees", "inconclusive"]) == "inconclusive"
    assert C.claim_verdict(["inconclusive", "disagrees"]) == "disagrees"
    assert C.claim_verdict([]) == "inconclusive"


def test_paper_figures_from_the_texts():
    t1 = C.PAPER["slimclr-table1"]
    # SlimCLR Table 1 (200 ep): SlimCLR 62.5 / 55.1 vs individual 58.9 / 47.9 at 0.5 / 0.25
    assert (t1[0.5]["ours"], t1[0.5]["base"], t1[0.25]["ours"], t1[0.25]["base"]) == (
        62.5, 58.9, 55.1, 47.9)
    assert t1[0.5]["sign"] == t1[0.25]["sign"] == 1 and t1[1.0]["sign"] == 0  # +0.2: a tie
    assert C.PAPER["us3l-table1/naive"][0.75]["ours"] is None  # no 0.75x column: not invented
    assert C.PAPER["dspnet-fig5"]["largest"]["sign"] == -1


# ------------------------------------------------------------------------------ the matrix

def test_matrix_shares_identical_runs_and_names_are_stable():
    scale = C.SCALES["cpu"]
    claims, runs = C.build_matrix(["all"], scale, seeds=2)
    labels = {label for label, _ in runs}
    # slimclr: 2 families + 4 individuals; us3l: 2 families + 3 individuals with its own base
    # loss (+ 3 shared MoCo v2 individuals); dspnet: 1 family + 4 individual shapes
    assert len(labels) == 6 + 5 + 5 and len(runs) == 2 * 16
    own = runs[("individual_simclr_w0.50", 0)]
    assert own.config == "us3l_simclr_cifar10" and {
        "recipe.name=individual", "recipe.group_reg=0", "optim.weight_decay=1e-4",
        "model.base_width=16", "model.widths=[1.0]"} <= set(own.overrides)
    verdict_rows = {r.member for r in claims["us3l-table1"].rows if r.headline}
    assert "w0.50 vs individual SimCLR-momentum" in verdict_rows
    assert not any("MoCo v2" in m for m in verdict_rows)
    assert claims["us3l-table1"].runs["individual_mocov2_w0.50"] == \
        claims["slimclr-table1"].runs["individual_mocov2_w0.50"]
    _, again = C.build_matrix(["us3l-table1"], scale, seeds=1)
    assert again[("individual_mocov2_w0.50", 0)].name == runs[("individual_mocov2_w0.50", 0)].name
    assert runs[("slimclr_mocov2", 0)].name != runs[("slimclr_mocov2", 1)].name
    _, smoke = C.build_matrix(["slimclr-table1"], C.SCALES["smoke"], 1)
    assert smoke[("slimclr_mocov2", 0)].name != runs[("slimclr_mocov2", 0)].name
    # an individual network of width w = the same arch at w x the stem width, width 1
    ov = runs[("individual_mocov2_w0.25", 0)].overrides
    assert "model.base_width=8" in ov and "model.widths=[1.0]" in ov
    with pytest.raises(ValueError, match="unknown claim"):
        C.build_matrix(["slimclr-table2"], scale, 1)


def test_cpu20_is_the_cpu_matrix_at_20_px():
    """The <= 3 h candidate trains exactly the ``cpu`` runs, with only the image size changed
    (so its runs live in their own directories and never reuse a 32 px run)."""
    _, cpu = C.build_matrix(["all"], C.SCALES["cpu"], seeds=2)
    _, px20 = C.build_matrix(["all"], C.SCALES["cpu20"], seeds=2)
    assert cpu.keys() == px20.keys()
    for key, spec in cpu.items():
        other = px20[key]
        assert other.config == spec.config
        assert set(spec.overrides) ^ set(other.overrides) == {"data.image_size=32",
                                                             "data.image_size=20"}
        assert other.name != spec.name


def test_base_loss_settings_of_a_scale_reach_both_arms_of_their_claim_only_and_us3l_its_own():
    scale = dataclasses.replace(C.SCALES["cpu"], simclr_overrides=("method.temperature=0.3",))
    _, runs = C.build_matrix(["all"], scale, seeds=1)
    with_t = {label for (label, _), s in runs.items() if "method.temperature=0.3" in s.overrides}
    assert with_t == {"us3l_simclr", "individual_simclr_w1.00", "individual_simclr_w0.50",
                      "individual_simclr_w0.25"}
    # applied after the scale's common settings, so a per-loss batch size or lr wins
    spec = runs[("us3l_simclr", 0)]
    assert spec.overrides.index("method.temperature=0.3") > spec.overrides.index(
        "data.batch_size=128")
    # the US3L run's own settings (its distillation) reach it alone, after the base loss's
    scale = dataclasses.replace(scale, us3l_overrides=("method.distill_loss=infonce",))
    _, runs = C.build_matrix(["all"], scale, seeds=1)
    assert {label for (label, _), s in runs.items()
            if "method.distill_loss=infonce" in s.overrides} == {"us3l_simclr"}
    ov = runs[("us3l_simclr", 0)].overrides
    assert ov.index("method.distill_loss=infonce") > ov.index("method.temperature=0.3")
    # the other runs are the very same runs (same directories) as without these settings
    _, plain = C.build_matrix(["all"], dataclasses.replace(scale, simclr_overrides=(),
                                                           us3l_overrides=()), seeds=1)
    for key in ("slimclr_mocov2", "naive_usnet_simsiam", "individual_mocov2_w0.50",
                "dspnet_byol"):
        assert runs[(key, 0)].name == plain[(key, 0)].name
    # BYOL's settings reach both arms of dspnet-fig5 and nothing else
    scale = dataclasses.replace(scale, byol_overrides=("method.momentum=0.7",))
    _, runs = C.build_matrix(["all"], scale, seeds=1)
    assert {label for (label, _), s in runs.items() if "method.momentum=0.7" in s.overrides} == {
        "dspnet_byol", "individual_byol_w1.00_d2222", "individual_byol_w1.00_d1111",
        "individual_byol_w0.75_d1111", "individual_byol_w0.50_d1111"}
    ov = runs[("dspnet_byol", 0)].overrides
    assert ov.index("method.momentum=0.7") > ov.index("data.batch_size=128")


def test_judge_and_markdown_on_hand_made_results(tmp_path):
    claims, _ = C.build_matrix(["slimclr-table1"], C.SCALES["cpu"], 2)

    def row(subnet, knn, rnd, lin=None):
        return {"subnet": subnet, C.KNN: knn, C.RANDOM: rnd, C.LINEAR: lin, "macs_g": 0.01}

    results = {}
    for s, (a, b) in enumerate([(45.0, 40.0), (47.0, 41.0)]):
        results[("slimclr_mocov2", s)] = [row("w1.00", 50, 30), row("w0.75", 49, 29),
                                          row("w0.50", a, 28), row("w0.25", a - 5, 25)]
        results[("individual_mocov2_w0.50", s)] = [row("w1.00", b, 28)]
        results[("individual_mocov2_w0.25", s)] = [row("w1.00", b - 10, 25)]
    judged = C.judge(claims, results, seeds=2, queries=10_000)
    rows = {r["member"].split()[0]: r for r in judged["slimclr-table1"]["rows"]
            if r["member"].endswith("individual")}
    assert rows["w0.50"]["verdict"][C.KNN]["verdict"] == "agrees"  # d 5.5 > 2 x 1.12
    # individual w0.25 ends 30.5 - 25 = 5.5 points above random init: < 8 -> inconclusive
    assert rows["w0.25"]["base"]["gain"]["mean"] == pytest.approx(5.5)
    assert rows["w0.25"]["verdict"][C.KNN]["verdict"] == "inconclusive"
    assert rows["w1.00"]["verdict"][C.KNN]["verdict"] == "missing"
    assert judged["slimclr-table1"]["verdict"] == "inconclusive"
    meta = {"scale": "cpu", "command": "slimssl reproduce x", "machine": "m", "seeds": 2,
            "queries": 10_000, "wall_s": 1.0}
    paths = C.write_report(tmp_path, judged, meta)
    md = paths["md"].read_text()
    assert "| w0.50 vs individual * | 62.5 | 58.9 | +3.6 (text: +3.5) | 46.0 ± 1.4 [28.0] | 40.5 ± 0.7 " \
           "[28.0] | +18.0 / +12.5 | +5.5 ± 1.1 | agrees |\n" in md
    assert "verdict (linear)" not in md  # no probe at this scale: no linear columns
    assert json.loads(paths["json"].read_text())["claims"]["slimclr-table1"]["verdict"] == \
        "inconclusive"
    results[("slimclr_mocov2", 0)][2][C.LINEAR] = 50.0
    results[("individual_mocov2_w0.50", 0)][0][C.LINEAR] = 45.0
    md = C.markdown(C.judge(claims, results, seeds=2, queries=10_000), meta)
    # one probe seed each: SE = binomial only, sqrt(0.5^2 + 0.4975^2) = 0.705
    assert "| 50.0 | 45.0 | +5.0 ± 0.7 | agrees |" in md
    assert paths["png"].stat().st_size > 0


# ------------------------------------------------------------------------------ the harness

def test_link_subset_is_class_balanced_and_seeded(tmp_path, monkeypatch):
    src = write_image_folder(tmp_path / "src", per_class=10, classes=2, test_per_class=5)
    a = cli_reproduce.link_subset(src, tmp_path / "a", 4, 2)
    b = cli_reproduce.link_subset(src, tmp_path / "b", 4, 2)
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("c0", "c1"):
            names = sorted(p.name for p in (a / split / cls).iterdir())
            assert len(names) == n
            assert names == sorted(p.name for p in (b / split / cls).iterdir())
    # linked again (a resumed or a concurrent reproduce on the same --out): the same links
    assert cli_reproduce.link_subset(src, tmp_path / "a", 4, 2) == a
    with monkeypatch.context() as m:  # another process made each link after our check
        m.setattr(cli_reproduce.Path, "exists", lambda self: False)
        assert cli_reproduce.link_subset(src, tmp_path / "a", 4, 2) == a
    # a link left dangling (the source moved): a clear error, not a silent bad subset
    stale = next((a / "train" / "c0").iterdir())
    stale.unlink()
    stale.symlink_to(tmp_path / "moved" / stale.name)
    with pytest.raises(FileExistsError, match="stale; remove that folder"):
        cli_reproduce.link_subset(src, tmp_path / "a", 4, 2)
    with pytest.raises(ValueError, match="needs --data"):
        cli_reproduce.prepare_data(None, C.SCALES["cpu"], tmp_path)
    with pytest.raises(ValueError, match="ImageFolder"):
        cli_reproduce.prepare_data(str(src / "train"), C.SCALES["cpu"], tmp_path)


TINY = dataclasses.replace(
    C.SCALES["smoke"], name="smoke", base_width=4, image_size=8, train_per_class=16,
    test_per_class=4, epochs=2, batch=16, queue=64, linear_epochs=0, recalib_images=16,
    extra=("data.num_workers=0", "train.device=cpu"))


def test_harness_resume_skip_and_killed_run(tmp_path, monkeypatch, capsys):
    """One run of the matrix end to end (pretrain + kNN + random init; the linear stage is
    `slimssl linear`, tested in test_cli_eval.py, left out for time); the same command again
    runs nothing; a run killed after its first epoch continues from there."""
    monkeypatch.setitem(C.SCALES, "smoke", TINY)
    data = write_image_folder(tmp_path / "data", per_class=20, classes=2, test_per_class=6)
    out = tmp_path / "out"
    argv = ["reproduce", "slimclr-table1", "--scale", "smoke", "--data", str(data), "--out",
            str(out), "--only", "individual_mocov2_w0.25"]
    assert main(argv) == 0
    (name,) = [p.name for p in (out / "runs").iterdir() if p.is_dir()]
    run = out / "runs" / name
    rows = json.loads((run / "results.json").read_text())["rows"]
    assert C.complete(rows, linear=False) and not C.complete(rows, linear=True)
    md = (out / "claims.md").read_text()
    assert "## slimclr-table1: INCONCLUSIVE" in md and "runs not finished" in md
    log = out / "logs" / f"{name}.log"
    size = log.stat().st_size
    capsys.readouterr()

    assert main(argv) == 0  # complete: nothing runs
    assert "skipped (complete)" in capsys.readouterr().out
    assert log.stat().st_size == size
    # the other runs of the claim have not run: the report says so and names them
    total = len(C.build_matrix(["slimclr-table1"], TINY, TINY.seeds)[1])
    assert f"**Partial report**: 1 of {total} runs complete" in md
    (out / "claims.md").unlink()
    assert main(["reproduce", "slimclr-table1", "--scale", "smoke", "--data", str(data),
                 "--out", str(out), "--report"]) == 0  # trains nothing, writes the report
    printed = capsys.readouterr().out
    assert f"partial report: 1 of {total} runs complete" in printed and ": ran" not in printed
    assert log.stat().st_size == size and (out / "claims.md").exists()
    assert not [p for p in (out / "runs").iterdir() if p.is_dir() and p.name != name]

    # "kill" it after epoch 1: drop its results and the last checkpoint
    (run / "results.json").unlink()
    ckpts = sorted((run / "checkpoints").glob("ckpt_epoch*.pt"))
    assert [c.name[:14] for c in ckpts] == ["ckpt_epoch0001", "ckpt_epoch0002"]
    ckpts[-1].unlink()
    assert main(argv) == 0
    text = log.read_text()[size:]
    assert "resumed from" in text and "epoch 1" in text
    assert C.complete(json.loads((run / "results.json").read_text())["rows"], linear=False)
    timing = json.loads((out / "logs" / f"{name}.json").read_text())["seconds"]
    assert set(timing) == {"pretrain"}

    # a run made with another config than this release resolves (a changed packaged default)
    # is neither skipped as complete nor resumed: it is refused, and a report flags it
    saved = yaml.safe_load((run / "config.yaml").read_text())
    lr = saved["optim"]["lr"]
    saved["optim"]["lr"] = lr * 2
    (run / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    size = log.stat().st_size
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"optim.lr {lr * 2!r} -> {lr!r}" in err and "another config" in err
    assert log.stat().st_size == size  # nothing ran
    assert main(["reproduce", "slimclr-table1", "--scale", "smoke", "--data", str(data),
                 "--out", str(out), "--report"]) == 0
    md = (out / "claims.md").read_text()
    assert "another config than this release resolves" in md and f"{name}: optim.lr" in md


def test_wall_time_is_saved_while_a_stage_runs(tmp_path):
    """A stage killed with its session keeps its wall-time record: ``_run`` calls ``tick``
    periodically while the command runs, and returns the command's exit status."""
    import sys

    ticks = []
    cmd = [sys.executable, "-c", "import time, sys; time.sleep(0.6); sys.exit(3)"]
    rc = cli_reproduce._run(cmd, tmp_path / "log", threads=1, tick=lambda: ticks.append(1),
                            every=0.1)
    assert rc == 3
    assert len(ticks) >= 3  # ~6 ticks of 0.1 s in a command that sleeps 0.6 s
    assert "time.sleep(0.6)" in (tmp_path / "log").read_text()  # the command line is logged


def test_paper_scale_is_documented_not_run(tmp_path):
    assert main(["reproduce", "all", "--scale", "paper", "--out", str(tmp_path)]) == 2
    assert "ImageNet" in C.scale_table()
