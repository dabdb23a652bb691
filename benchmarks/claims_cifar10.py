"""The three papers' CIFAR-10 claims side by side, at a scale a shared 2-core CPU can run.

Superseded by ``slimssl reproduce`` (issue 17: seeds, verdicts with standard errors, presets);
kept because BENCHMARKS.md's first claims record was made with it.

Runs ``slimssl pretrain`` (training, then kNN top-1 per member, k = 200, T = 0.1, and the
random-initialisation kNN of the same network) for:

* SlimCLR claim (SlimCLR Table 1: sub-networks beat individually trained ones at 0.5 and 0.25):
  SlimCLR-MoCov2 [1, .75, .5, .25], naive slimmable MoCo v2 (S-Net, summed losses), and one
  individually trained MoCo v2 network per width (same epochs).
* US3L claim (US3L Table 1: naive US-Net + SimSiam collapses; US3L trains): US3L (SimCLR with
  momentum teacher, group regularisation, dynamic sampling) vs US-Net + SimSiam without
  in-place distillation.
* DSPNet claim (DSPNet Fig. 5: small desired networks >= individually trained ones): DSPNet-BYOL
  (width x depth, K = 4) vs individual BYOL networks of the same shape as its full network and
  its smallest network (ResNet-18 at width .5 with one block per stage = ResNet-10 at .5).

Data: a class-balanced subset of the CIFAR-10 JPEG folder (``--train-per-class`` /
``--test-per-class`` images per class, the first ones after a seeded shuffle), made as a
folder of symbolic links so the kNN bank is the same subset the networks trained on. Fixed seed
0 for everything. Each finished run is skipped when the script is run again (``results.json``
exists), so the protocol can be continued in pieces.

Usage::

    python benchmarks/claims_cifar10.py [--scale small|quick] [--only slimclr,individual_0.5,...]
        [--jobs 1] [--threads 1]

Writes ``benchmarks/results/claims_cifar10.json`` (per run and per claim) and
``benchmarks/results/claims_cifar10.png`` (accuracy vs MACs of every run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CIFAR_DIR, RESULTS_DIR, ROOT, loadavg, machine_info, write_result  # noqa: E402

# scale -> (train images per class, test images per class, image size, epochs, batch)
SCALES: dict[str, dict[str, int]] = {
    "small": {"train": 100, "test": 100, "size": 16, "epochs": 3, "batch": 96},
    "quick": {"train": 40, "test": 20, "size": 16, "epochs": 1, "batch": 64},
}

MOCO = ["model.arch=resnet10_narrow", "method.queue_size=1024", "method.bn_splits=8"]
DSP = ["model.arch=resnet18", "model.base_width=16"]
# name -> (claim, config, overrides)
RUNS: dict[str, tuple[str, str, list[str]]] = {
    "slimclr": ("slimclr", "slimclr_mocov2_cifar10", MOCO),
    "naive_snet": ("slimclr", "naive_mocov2_cifar10", MOCO),
    # an individual network of width w = the same ResNet with its base width scaled by w, at
    # width 1 (model.widths=[w] alone fails: see BENCHMARKS.md, "library issues found")
    **{f"individual_{w}": ("slimclr", "individual_mocov2_cifar10",
                           MOCO + [f"model.base_width={int(32 * w)}", "model.widths=[1.0]"])
       for w in (1.0, 0.75, 0.5, 0.25)},
    "us3l": ("us3l", "us3l_simclr_cifar10", ["model.arch=resnet10_narrow",
                                             "model.widths=[1.0,0.75,0.5,0.25]"]),
    "naive_usnet_simsiam": ("us3l", "usnet_simsiam_cifar10", ["model.arch=resnet10_narrow",
                                                              "recipe.inplace_distill=none"]),
    "dspnet": ("dspnet", "dspnet_byol_cifar10", DSP),
    "individual_byol_full": ("dspnet", "dspnet_byol_cifar10",
                             DSP + ["recipe.name=individual", "model.widths=[1.0]",
                                    "model.depths=null"]),
    "individual_byol_smallest": ("dspnet", "dspnet_byol_cifar10",
                                 ["model.arch=resnet10_narrow", "model.base_width=8",
                                  "recipe.name=individual", "model.widths=[1.0]",
                                  "model.depths=null"]),
}


def make_subset(src: Path, dst: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    """A class-balanced ImageFolder of symlinks: ``dst/{train,test}/<class>/<file>``
    (``slimssl reproduce``'s subset, the same images)."""
    from slimssl.cli.reproduce import link_subset

    return link_subset(src, dst, per_class["train"], per_class["test"], seed)


def pretrain(name: str, data: Path, runs_dir: Path, scale: dict[str, int], threads: int
             ) -> dict[str, Any]:
    """One ``slimssl pretrain`` subprocess; returns its results rows (skips a finished run)."""
    claim, config, extra = RUNS[name]
    run_dir = runs_dir / name
    if not (run_dir / "results.json").exists():
        epochs = scale["epochs"]
        warm = round(max(epochs / 30, 0.1), 2)  # the configs' 2 of 60 warm-up epochs, scaled
        sets = [f"data.image_size={scale['size']}", f"data.batch_size={scale['batch']}",
                "data.num_workers=0", "train.seed=0", "train.tensorboard=false",
                "eval.knn_every_epochs=0", "eval.recalib_images=1000",
                f"optim.warmup_epochs={warm}", "train.log_every=5"] + extra
        if config.startswith("dspnet"):
            sets.append(f"recipe.warmup_full_epochs={warm}")
        cmd = [sys.executable, "-m", "slimssl.cli", "pretrain", "--config",
               str(ROOT / "configs" / f"{config}.yaml"), "--data", str(data), "--epochs",
               str(epochs), "--out-dir", str(run_dir), "--progress", "off"]
        cmd += [a for s in sets for a in ("--set", s)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        runs_dir.mkdir(parents=True, exist_ok=True)
        log = runs_dir / f"{name}.log"
        print(f"[{name}] {' '.join(cmd)}  (load {loadavg()[0]})", flush=True)
        with log.open("w") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        if proc.returncode != 0:
            return {"name": name, "claim": claim, "error": f"exit {proc.returncode}, see {log}"}
    rows = json.loads((run_dir / "results.json").read_text())["rows"]
    return {"name": name, "claim": claim, "config": config, "overrides": extra,
            "run_dir": str(run_dir), "rows": rows, "first_last_train_log": _train_logs(run_dir)}


def _train_logs(run_dir: Path) -> list[dict[str, float]]:
    """The first and last logged training steps (losses and the per-member embedding std, the
    collapse monitor: it falls towards 0 when every image maps to one point)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    train = [r for r in map(json.loads, path.read_text().splitlines()) if r.get("kind") == "train"]
    keep = ("step", "loss")
    return [{k: round(v, 5) for k, v in r.items() if k in keep or k.startswith(("std/", "loss/"))}
            for r in (train[:1] + train[-1:])]


def _acc(run: dict | None, label: str | None = None, width: float | None = None) -> float | None:
    """kNN top-1 (k = 200) of a run's member chosen by label, or by width (full depth)."""
    if not run or "rows" not in run:
        return None
    for r in run["rows"]:
        if (label is not None and r.get("label") == label) or (
                width is not None and abs(float(r.get("width", -1)) - width) < 1e-6
                and not r.get("depth")):
            return r.get("knn_top1_k200")
    if width is not None and len(run["rows"]) == 1:
        return run["rows"][0].get("knn_top1_k200")
    return None


def gain_over_random(run: dict | None) -> float | None:
    """Mean over a run's members of kNN top-1 minus the same network's random-init kNN: below
    about one point the run has not learned anything a comparison could rest on."""
    if not run or "rows" not in run:
        return None
    gains = [r["knn_top1_k200"] - r["knn_random_init"] for r in run["rows"]
             if r.get("knn_random_init") is not None]
    return round(sum(gains) / len(gains), 2) if gains else None


def _inconclusive(verdict: bool | None, runs: dict[str, dict], names: list[str]) -> Any:
    """The verdict, or "inconclusive" when a run it rests on learned < 1 point over random."""
    gains = [gain_over_random(runs.get(n)) for n in names]
    if verdict is not None and any(g is not None and g < 1.0 for g in gains):
        return f"inconclusive (would read {verdict}): a run is < 1 point above random init"
    return verdict


def judge(runs: dict[str, dict]) -> dict[str, Any]:
    """Whether each small-scale result agrees with the paper's claim (None: runs missing)."""
    out: dict[str, Any] = {"gain_over_random_init": {n: gain_over_random(r)
                                                      for n, r in runs.items()}}
    per_width = {w: {"slimclr": _acc(runs.get("slimclr"), width=w),
                     "naive": _acc(runs.get("naive_snet"), width=w),
                     "individual": _acc(runs.get(f"individual_{w}"), width=w)}
                 for w in (1.0, 0.75, 0.5, 0.25)}
    small = [per_width[w] for w in (0.5, 0.25)]
    ok = None if any(v["slimclr"] is None or v["individual"] is None for v in small) else all(
        v["slimclr"] > v["individual"] for v in small)
    out["slimclr_table1"] = {"claim": "SlimCLR sub-networks beat individually trained networks "
                             "at widths 0.5 and 0.25", "knn_top1": per_width,
                             "agrees": _inconclusive(ok, runs, ["slimclr", "individual_0.5",
                                                                "individual_0.25"])}
    us3l, naive = runs.get("us3l"), runs.get("naive_usnet_simsiam")
    collapse = None
    if naive and "rows" in naive:
        # collapse: no better than the same network's random initialisation at every width
        collapse = all(r["knn_top1_k200"] <= r.get("knn_random_init", 0) + 1.0
                       for r in naive["rows"])
    out["us3l_table1"] = {
        "claim": "naive US-Net + SimSiam collapses; US3L does not",
        "knn_top1_us3l": {w: _acc(us3l, width=w) for w in (1.0, 0.75, 0.5, 0.25)},
        "knn_top1_naive": {w: _acc(naive, width=w) for w in (1.0, 0.75, 0.5, 0.25)},
        "knn_random_init_naive": ({r["width"]: r.get("knn_random_init") for r in naive["rows"]}
                                  if naive and "rows" in naive else None),
        "naive_collapsed": collapse,
        "agrees": _inconclusive(collapse, runs, ["us3l"])}
    dsp = runs.get("dspnet")
    pairs = {"full 1.0@[2,2,2,2]": (_extreme(dsp, max),
                                     _acc(runs.get("individual_byol_full"), width=1.0)),
             "smallest 0.5@[1,1,1,1]": (_extreme(dsp, min),
                                        _acc(runs.get("individual_byol_smallest"), width=0.5))}
    ok = None if any(a is None or b is None for a, b in pairs.values()) else (
        pairs["smallest 0.5@[1,1,1,1]"][0] >= pairs["smallest 0.5@[1,1,1,1]"][1])
    out["dspnet_fig5"] = {"claim": "small DSPNet desired networks >= individually trained ones",
                          "knn_top1_dspnet_vs_individual": pairs,
                          "agrees": _inconclusive(ok, runs, ["dspnet",
                                                             "individual_byol_smallest"])}
    return out


def _extreme(run: dict | None, pick=min) -> float | None:
    """kNN top-1 of a family's member with the fewest (``min``) or most (``max``) MACs."""
    if not run or "rows" not in run:
        return None
    return pick(run["rows"], key=lambda r: r.get("macs_g", 0.0)).get("knn_top1_k200")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="small")
    ap.add_argument("--cifar-dir", type=Path, default=CIFAR_DIR)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/slimssl-claims"))
    ap.add_argument("--only", help="comma-separated run names (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    scale = SCALES[args.scale]
    work = args.work_dir / args.scale
    data = make_subset(args.cifar_dir, work / "data", {"train": scale["train"],
                                                       "test": scale["test"]})
    names = args.only.split(",") if args.only else list(RUNS)
    with ThreadPoolExecutor(args.jobs) as pool:
        done = list(pool.map(lambda n: pretrain(n, data, work / "runs", scale, args.threads),
                             names))
    runs = {r["name"]: r for r in done}
    for name in RUNS:  # runs finished earlier (another --only) count too
        if name not in runs and (work / "runs" / name / "results.json").exists():
            runs[name] = pretrain(name, data, work / "runs", scale, args.threads)
    suffix = "" if args.scale == "small" else f"_{args.scale}"
    plot = RESULTS_DIR / f"claims_cifar10{suffix}.png"
    finished = [r["run_dir"] for r in runs.values() if "rows" in r]
    if finished:
        subprocess.run([sys.executable, "-m", "slimssl.cli", "plot", *finished, "--output",
                        str(plot)], check=False)
    result = {"machine": machine_info(args.threads), "scale": {"name": args.scale, **scale},
              "data": f"{scale['train']}/{scale['test']} images per class (train/test) of "
                      f"{args.cifar_dir}, seed 0", "loadavg_end": loadavg(),
              "runs": runs, "claims": judge(runs), "plot": str(plot)}
    for key, c in result["claims"].items():
        if isinstance(c, dict) and "agrees" in c:
            print(f"{key}: agrees with the paper: {c['agrees']}")
    write_result(f"claims_cifar10{suffix}", result)


if __name__ == "__main__":
    main()
