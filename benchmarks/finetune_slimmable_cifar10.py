"""DSPNet appendix 0.B (Fig. A1) at CPU scale on CIFAR-10: supervised slimmable fine-tuning of
the whole family from (a) a SlimCLR-MoCov2 pre-training run against (b) random initialisation,
same budget, same seed, same labelled images; per-width top-1 on the held-out split.

Sized for a 2-core CPU: ``resnet10_narrow`` (CIFAR stem, switchable BN, widths
[1, .75, .5, .25]) at 32 px; a class-balanced subset of the train split (the first
``--per-class`` images of each class, linked into ``--work/data/train``) is both the unlabelled
pre-training set and the 100% labelled fine-tuning set; every test image is scored.

Stages (in order; ``finetune`` runs one initialisation and one distillation setting, so runs
can go side by side)::

    python benchmarks/finetune_slimmable_cifar10.py --stage pretrain
    python benchmarks/finetune_slimmable_cifar10.py --stage pretrain_single  # optional
    python benchmarks/finetune_slimmable_cifar10.py --stage finetune --init pretrained  # x each
    python benchmarks/finetune_slimmable_cifar10.py --stage finetune --init scratch     # setting
    python benchmarks/finetune_slimmable_cifar10.py --stage finetune --init single      # optional
    slimssl knn /tmp/ft10_bench/ssl    # optional: the pre-trained family's kNN, for context
    python benchmarks/finetune_slimmable_cifar10.py --stage report

``--setting`` (default ``kd_labels``, the CLI default) picks the students' loss: ``kd_labels``
(inplace distillation + their own label CE), ``kd_pure`` (US-Nets' pure inplace distillation,
which was unstable at this scale) or ``nokd`` (every member learns from the labels only).

``report`` writes ``benchmarks/results/finetune_slimmable_cifar10.{json,png}`` (``--name``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
#: initialisations: the SlimCLR family, random, and a single MoCo v2 network (same data, epochs
#: and settings, ``configs/individual_mocov2_cifar10.yaml``) loaded into every width; the
#: last is optional (``--stage pretrain_single``), as DSPNet Fig. A1's third line
INITS = ("pretrained", "scratch", "single")
#: distillation setting -> (finetune flags, results-column suffix, legend)
SETTINGS = {
    "kd_labels": (["--inplace-distill", "--kd-label-weight", "1"], "",
                  "inplace KD + labels (default)"),
    "kd_pure": (["--inplace-distill", "--kd-label-weight", "0"], "_kdlw0", "pure inplace KD"),
    "nokd": (["--no-inplace-distill"], "_nokd", "labels only"),
}


def link_subset(source: Path, dest: Path, per_class_train: int) -> None:
    """ImageFolder of symlinks: the first ``per_class_train`` train images of every class (the
    files keep CIFAR-10's original order) and the whole test split."""
    for split, limit in (("train", per_class_train), ("test", None)):
        for class_dir in sorted((source / split).iterdir()):
            out = dest / split / class_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(class_dir.iterdir())[:limit]:
                if not (out / f.name).exists():
                    (out / f.name).symlink_to(f.resolve())


def pretrain_args(args: argparse.Namespace, single: bool = False) -> list[str]:
    config = "individual_mocov2_cifar10.yaml" if single else "slimclr_mocov2_cifar10.yaml"
    return ["pretrain", "--config", str(ROOT / "configs" / config),
            "--data", str(Path(args.work) / "data"), "--epochs", str(args.pretrain_epochs),
            "--out-dir", str(Path(args.work) / ("single_ssl" if single else "ssl")), "--no-eval",
            "--progress", "lines",
            "--set", "model.arch=resnet10_narrow", "--set", "data.batch_size=128",
            "--set", "data.num_workers=0", "--set", "method.queue_size=2048",
            "--set", "method.bn_splits=4", "--set", "optim.warmup_epochs=2",
            "--set", "eval.knn_every_epochs=0", "--set", "train.tensorboard=false",
            "--set", f"train.seed={args.pretrain_seed}"]


def run_name(init: str, setting: str) -> str:
    return f"ft_{init}_{setting}"


def finetune_args(args: argparse.Namespace, init: str, setting: str) -> list[str]:
    return ["finetune", str(Path(args.work) / "ssl"), "--slimmable", "--fraction", "1.0",
            "--init", f"single:{Path(args.work) / 'single_ssl'}" if init == "single" else init,
            "--epochs", str(args.finetune_epochs), "--lr", str(args.lr),
            "--seed", str(args.seed), "--progress", "lines", *SETTINGS[setting][0],
            "--out-dir", str(Path(args.work) / run_name(init, setting))]


def timed(name: str, argv: list[str], work: Path) -> None:
    from slimssl.cli import main as cli

    start = time.perf_counter()
    code = cli(argv)
    seconds = time.perf_counter() - start
    times = work / "seconds.json"
    record = json.loads(times.read_text()) if times.exists() else {}
    record[name] = round(seconds, 1)
    times.write_text(json.dumps(record, indent=1))
    if code:
        raise SystemExit(code)


def train_curve(run_dir: Path) -> list[dict]:
    """Per-member label cross-entropy at every logged step (from the run's metrics.jsonl)."""
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    return [{"step": r["step"], **{k: round(v, 3) for k, v in r.items() if k.startswith("loss/")}}
            for r in rows if r.get("kind") == "train"]


def comparison(rows: list[dict], setting: str, inits: list[str]) -> dict:
    """Per-member top-1 of the initialisations under one distillation setting; only the
    ``inits`` run in this ``--work`` are read (a copied results table may hold others)."""
    from slimssl.cli.finetune_slimmable import column_prefix

    table = []
    for r in rows:
        entry = {"subnet": r["subnet"], "macs_g": r.get("macs_g"), "params_m": r.get("params_m")}
        for init in INITS:
            column = column_prefix(init, SETTINGS[setting][1]) + "_100pct"
            entry[f"{init}_top1"] = r.get(f"{column}_top1") if init in inits else None
            entry[f"{init}_top5"] = r.get(f"{column}_top5") if init in inits else None
        for other in INITS[1:]:
            a, b = entry["pretrained_top1"], entry[f"{other}_top1"]
            entry[f"gain_over_{other}"] = None if a is None or b is None else round(a - b, 2)
        table.append(entry)
    verdict = {}
    for other in INITS[1:]:
        gains = [e[f"gain_over_{other}"] for e in table]
        verdict[f"pretrained_beats_{other}_at_every_width"] = (
            None if None in gains else all(g > 0 for g in gains))
    return {"students_loss": SETTINGS[setting][2], "rows": table, **verdict}


def report(args: argparse.Namespace) -> None:
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    work = Path(args.work)
    rows = json.loads((work / "ssl" / "results.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    done = [k for k in SETTINGS if (work / run_name("pretrained", k)).is_dir()]
    runs = [(i, k) for k in done for i in INITS if (work / run_name(i, k)).is_dir()]
    single = (work / "single_ssl").is_dir()
    out = {
        "issue": 10,
        "claim": "DSPNet appendix 0.B, Fig. A1: supervised slimmable training initialised from "
                 "the SSL-pretrained slimmable network beats random initialisation at every "
                 "width (most for the small widths)",
        "machine": {"platform": platform.platform(), "cpu_count": 2, "device": "cpu",
                    "torch": torch.__version__, "threads_per_process": 1},
        "data": f"CIFAR-10 ({args.data}): first {args.per_class} train images per class "
                f"({10 * args.per_class}) for pre-training and as the 100% labelled set; all "
                "10,000 test images for scoring",
        "model": "resnet10_narrow, CIFAR stem, switchable BN, widths [1.0, 0.75, 0.5, 0.25], 32 px",
        "pretraining": f"configs/slimclr_mocov2_cifar10.yaml (SlimCLR-MoCov2: slow start at half, "
                       f"CE distillation tau 5, weights [2.5,1,1,1]), {args.pretrain_epochs} "
                       "epochs, batch 128, queue 2048, 2 warm-up epochs",
        "finetuning": f"slimssl finetune --slimmable: {args.finetune_epochs} epochs, batch 256, "
                      f"SGD lr {args.lr} per 256 cosine, 1 warm-up epoch, wd 1e-4, 'supervised' "
                      "views (random resized crop 0.08-1 + flip), all 4 members every step; "
                      f"identical for every init; fine-tuning seed {args.seed}",
        "single_network": "configs/individual_mocov2_cifar10.yaml: one MoCo v2 resnet10_narrow "
                          "at width 1.0, the same data, epochs and settings as the pre-training, "
                          "loaded into every width (init 'single')",
        "commands": ["python benchmarks/finetune_slimmable_cifar10.py " + " ".join(a) for a in (
            ["--stage", "pretrain"], *([["--stage", "pretrain_single"]] if single else []),
            *(["--stage", "finetune", "--init", i, "--setting", k] for i, k in runs),
            ["--stage", "report"])],
        "cli_equivalents": ["slimssl " + " ".join(pretrain_args(args, s)) for s in (
            False, *([True] if single else []))] + [
            "slimssl " + " ".join(finetune_args(args, i, k)) for i, k in runs],
        "seconds": json.loads((work / "seconds.json").read_text()),
        "label_ce_per_member_during_training": {
            run_name(i, k): train_curve(work / run_name(i, k)) for i, k in runs},
    }
    if any("knn_top1_k200" in r for r in rows):  # after `slimssl knn WORK/ssl`
        out["pretraining_knn_top1_k200"] = {
            r["subnet"]: {"pretrained": r.get("knn_top1_k200"),
                          "random_init": r.get("knn_random_init")} for r in rows}
    for k in done:
        out[k] = comparison(rows, k, [i for i, setting in runs if setting == k])
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k, line in zip(done, ("-", "--", ":")):
        for init, color in zip(INITS, ("C0", "C1", "C2")):
            pts = [(e["macs_g"] * 1e3, e[f"{init}_top1"]) for e in out[k]["rows"]
                   if e[f"{init}_top1"] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", color=color, linestyle=line,
                        label=f"{init} init, {SETTINGS[k][2]}")
    ax.set_xscale("log")
    macs = [e["macs_g"] * 1e3 for e in out[done[0]]["rows"]] if done else []
    ax.set_xticks(macs, [f"{m:.1f}" for m in macs], minor=False)
    ax.minorticks_off()
    ax.set_xlabel("MMACs (32 px)")
    ax.set_ylabel("CIFAR-10 test top-1 (%)")
    ax.set_title("Supervised slimmable fine-tuning, resnet10_narrow", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center right")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{args.name}.png", dpi=120)
    for k in done:
        print(f"{SETTINGS[k][2]}:")
        for e in out[k]["rows"]:
            print(f"  {e['subnet']}: " + "  ".join(f"{i} {e[f'{i}_top1']}" for i in INITS))
        for other in INITS[1:]:
            print(f"  pretrained > {other} at every width:",
                  out[k][f"pretrained_beats_{other}_at_every_width"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stage", choices=("pretrain", "pretrain_single", "finetune", "report"),
                   required=True)
    p.add_argument("--init", choices=INITS, help="stage finetune: which initialisation")
    p.add_argument("--setting", choices=tuple(SETTINGS), default="kd_labels",
                   help="stage finetune: the students' loss (see the module docstring)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg"))
    p.add_argument("--work", default="/tmp/ft10_bench", help="runs and the linked subset")
    p.add_argument("--per-class", type=int, default=500, help="train images per class")
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--finetune-epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=0.03, help="fine-tuning lr per 256 images")
    p.add_argument("--pretrain-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="fine-tuning seed")
    p.add_argument("--name", default="finetune_slimmable_cifar10",
                   help="stage report: results/NAME.{json,png} (another name for a repeat, e.g. "
                        "fine-tuning seeds in another --work holding a copy of the pre-training)")
    args = p.parse_args()
    work = Path(args.work)
    if args.stage == "pretrain":
        link_subset(Path(args.data), work / "data", args.per_class)
        timed("pretrain", pretrain_args(args), work)
    elif args.stage == "pretrain_single":
        link_subset(Path(args.data), work / "data", args.per_class)
        timed("pretrain_single", pretrain_args(args, single=True), work)
    elif args.stage == "finetune":
        if args.init is None:
            p.error("--stage finetune needs --init pretrained|scratch")
        name = run_name(args.init, args.setting)
        timed(name, finetune_args(args, args.init, args.setting), work)
    else:
        report(args)


if __name__ == "__main__":
    main()
