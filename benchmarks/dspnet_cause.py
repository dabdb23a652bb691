"""Why DSPNet's small desired networks lose to their individually trained twins at ``--scale cpu``
(issue 17: "if a claim disagrees, look for the cause").

``slimssl reproduce dspnet-fig5 --scale cpu`` (2 seeds) found the width-0.75 one-block DN 2.5 +-
1.2 kNN points below the same shape trained alone with BYOL (DSPNet Fig. 5: a minor gain), the
other small DNs -1.6 / -1.9. Both arms use the same optimizer (SGD, lr 0.48 x 128/256, chosen
for ONE network, ``Scale.byol_overrides``), but DSPNet sums K = 4 BYOL losses per step (Eq. 5),
and every DN's loss reaches the weights the smallest DN uses. Five hypotheses:

* **lr**: the shared weights take up to K times the step a network trained alone takes, i.e. a
  too-large rate for them. Then averaging the K losses (``recipe.loss_reduction=mean``: the
  same direction, 1/K of the step after the one-epoch warm-up) should close the gap.
* **updates**: of the 12 DNs only the largest and the smallest train every step; each other DN
  gets its own loss in 1 step of 5. That would hurt the middle DNs (w1.0 d1111, w0.75 d1111),
  not the smallest (w0.5 d1111), which trains every step. Variant ``six_dns``: the same summed
  step over 6 DNs (depths 2-2-2-2 / 1-1-1-1 only), so a middle DN trains 1 step in 2.
* **scale**: 24 epochs of 5,000 images are too few for the sandwich to pay off. Then the gap
  should shrink as both arms train longer. Variants ``short12``, ``mid36`` and ``long48`` train
  BOTH arms 12, 36 or 48 epochs (``train --arm dspnet`` and ``train --arm individual``);
  ``report`` judges each against its own baselines of that length, so the gap at 12, 24, 36 and
  48 epochs can be compared. (Measured: it shrank from 12 to 24 epochs and grew again at 36, 2
  seeds; BENCHMARKS.md, issue 17.)
* **teacher**: every DN predicts the full-size EMA target (DSPNet Sec. 4.2, "the teacher of
  all"), which at this scale is the WORST of the four shapes when each is trained alone (the
  two-block ResNet-18 trails the one-block ones on both seeds at 12, 24 and 36 epochs,
  by 2.3-6.4 kNN points on the means), while on ImageNet the largest DN is the best. Variant
  ``d1111``: widths only, at one block per stage, so the target is the w1.0 one-block network,
  the best shape trained alone. (Measured, 2 seeds: the small DNs gain 2.0-2.8 kNN points over
  the 12-DN family and end level with the networks trained alone.)
* **data**: 5,000 images are too few: the DNs, pulled towards the full-size target, stop
  improving (on kNN) while the networks trained alone go on. Variant ``data10k`` trains both
  arms on 10,000 images for the steps of ``mid36`` (18 epochs), so only the data differ.
  (Measured, 2 seeds: the gap does not close, -6.0 / -6.8 / -3.5 kNN for w1.0 / w0.75 / w0.5
  one-block DNs, against -4.1 / -4.5 / -4.7 on 5,000 images.)

Four subcommands, all on the matrix's own runs:

``grad``: from a DSPNet run's last checkpoint, for a few training batches, the gradient of each
of the measured DNs' BYOL loss alone on the weights the smallest DN uses, their norms and
pairwise cosines, and ``||sum of the K losses' gradients|| / mean ||one DN's gradient||``: the
factor by which Eq. 5 scales the step on those weights (K when the gradients are parallel,
sqrt(K) when orthogonal). Nothing is trained or written to the run.

``train``: the matrix's DSPNet run (same config, overrides, seeds, data) with one variant's
overrides on top, into ``--out``; ``report`` then judges the variant against the matrix's own
individually trained BYOL networks with the verdict rule of ``slimssl reproduce``
(``slimssl.eval.claims.judge``), next to the matrix's DSPNet (Eq. 5) rows.

``recal``: a difference of protocol between the arms: each individual BYOL network scored as
the matrix did (its running BN statistics) and with its BN recalibrated exactly as the DNs are.

Usage::

    python benchmarks/dspnet_cause.py grad /work/claims_cpu/runs/dspnet_byol-s0-* --batches 8
    python benchmarks/dspnet_cause.py train --variant mean --seed 0 \
        --data ../shared/data/cifar10-jpeg --out runs/dspnet_cause
    python benchmarks/dspnet_cause.py train --variant short12 --arm individual --seed 0 \
        --only individual_byol_w0.50_d1111 --data ../shared/data/cifar10-jpeg --out runs/dspnet_cause
    python benchmarks/dspnet_cause.py report --out runs/dspnet_cause --matrix runs/claims_cpu
    python benchmarks/dspnet_cause.py recal --matrix runs/claims_cpu

Writes ``benchmarks/results/dspnet_grad_balance.json`` (grad),
``benchmarks/results/dspnet_cause_cpu.{json,md}`` and ``dspnet_cause_scale.png`` (report) and
``benchmarks/results/dspnet_recal_individual.json`` (recal). Findings: BENCHMARKS.md, issue 17.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR, loadavg, machine_info, write_result  # noqa: E402

import torch  # noqa: E402

from slimssl.cli.reproduce import count_queries, prepare_data, read_rows, run_one  # noqa: E402
from slimssl.eval.claims import (  # noqa: E402
    KNN, LINEAR, SCALES, RunSpec, Scale, build_matrix, judge)

#: variant -> overrides on top of the matrix's DSPNet run
VARIANTS: dict[str, tuple[str, ...]] = {
    "mean": ("recipe.loss_reduction=mean",),
    # hypothesis (b): the same step (sum of K = 4), but 6 DNs (widths x depths 2-2-2-2 / 1-1-1-1)
    # instead of 12, so a middle DN trains in 1 step of 2 instead of 1 of 5
    "six_dns": ("model.depths=[[2, 2, 2, 2], [1, 1, 1, 1]]",),
    # hypothesis (c), scale: both arms trained half as long (12 epochs, 468 steps of 128), to see
    # whether the gap grows as training shortens; or longer (36 / 48 epochs, 1,404 / 1,872 steps)
    # to see whether it closes. mid36 fits one seed of both arms in a session on 2 cores; long48
    # does not (BENCHMARKS.md, "(c) scale")
    "short12": ("train.epochs=12",),
    "mid36": ("train.epochs=36",),
    "long48": ("train.epochs=48",),
    # hypothesis (e), teacher: the family without its deep members, widths [1, .75, .5] at one
    # block per stage (K = 4 capped at these 3 DNs), so the EMA target every DN predicts is the
    # w1.0 one-block network, the best of the shapes trained alone, instead of the two-block
    # ResNet-18, the worst of them at 12, 24 and 36 epochs; the matrix's 24 epochs. The one-block
    # ResNet is its own arch, as for the individual networks (a depth family without the full
    # depth would leave the target blocks no member trains); its DNs are named "w0.75", and
    # ``report`` matches them with the matrix's one-block rows (MEMBER_WIDTH_ONLY)
    "d1111": ("model.arch=resnet10_narrow", "model.depths=null"),
    # hypothesis (d), data: twice the images (1,000 per class, DATA_PER_CLASS) for 18 epochs, the
    # 1,404 steps of mid36, so only the number of distinct images changes (the test set and its
    # 2,000 queries are the same; the kNN memory bank is the run's own, larger, training set)
    "data10k": ("train.epochs=18",),
}
#: variants whose family is widths only, at one block per stage: their DNs are named by width
#: ("w0.75"), and ``report`` compares them with the matrix's one-block rows only
MEMBER_WIDTH_ONLY = frozenset({"d1111"})
#: variants trained (both arms) on another class-balanced subset: training images per class
DATA_PER_CLASS: dict[str, int] = {"data10k": 1000}
#: variants whose overrides go to BOTH arms: the DSPNet run and the individual BYOL networks
#: (``train --arm individual``); ``report`` judges such a variant against its own baselines
BOTH_ARMS = frozenset({"short12", "mid36", "long48", *DATA_PER_CLASS})
#: BOTH_ARMS variants that differ from the matrix in training length only (the scale plot)
LENGTH_ONLY = BOTH_ARMS - DATA_PER_CLASS.keys()
DSP = "dspnet_byol"


def matrix_spec(seed: int) -> RunSpec:
    """The matrix's own DSPNet run of ``seed`` (``slimssl reproduce dspnet-fig5 --scale cpu``)."""
    _, runs = build_matrix(["dspnet-fig5"], SCALES["cpu"], seeds=seed + 1)
    return runs[(DSP, seed)]


def variant_spec(variant: str, seed: int) -> RunSpec:
    base = matrix_spec(seed)
    return RunSpec(f"{DSP}_{variant}", base.config, (*base.overrides, *VARIANTS[variant]), seed)


def baseline_specs(variant: str, seed: int) -> dict[str, RunSpec]:
    """The matrix's individual BYOL networks of ``seed`` with a BOTH_ARMS variant's overrides,
    by the matrix's label."""
    _, runs = build_matrix(["dspnet-fig5"], SCALES["cpu"], seeds=seed + 1)
    return {label: RunSpec(f"{label}_{variant}", spec.config,
                           (*spec.overrides, *VARIANTS[variant]), seed)
            for (label, s), spec in runs.items() if s == seed and label != DSP}


# ------------------------------------------------------------------------------------ train
def variant_scale(variant: str) -> Scale:
    """The ``cpu`` preset, on the variant's own training subset where it has one."""
    scale = SCALES["cpu"]
    if variant in DATA_PER_CLASS:
        return dataclasses.replace(scale, train_per_class=DATA_PER_CLASS[variant])
    return scale


def train(args: argparse.Namespace) -> None:
    scale = variant_scale(args.variant)
    data = prepare_data(args.data, scale, Path(args.out))
    if args.arm == "dspnet":
        specs = [variant_spec(args.variant, args.seed)]
    elif args.variant in BOTH_ARMS:
        base = baseline_specs(args.variant, args.seed)
        labels = args.only.split(",") if args.only else list(base)
        if unknown := [lab for lab in labels if lab not in base]:
            raise SystemExit(f"--only: unknown label(s) {unknown}; choose from {list(base)}")
        specs = [base[label] for label in labels]
    else:
        raise SystemExit(f"--arm individual: variant {args.variant!r} changes the DSPNet run "
                         f"only (its baselines are the matrix's); both arms: {sorted(BOTH_ARMS)}")
    for spec in specs:
        t0 = time.time()
        status = run_one(spec, data, Path(args.out), scale, threads=1)["status"]
        print(f"{spec.name}: {status} ({time.time() - t0:.0f} s)", flush=True)


# ----------------------------------------------------------------------------------- report
def report(args: argparse.Namespace) -> None:
    scale = SCALES["cpu"]
    claims, runs = build_matrix(["dspnet-fig5"], scale, seeds=args.seeds)
    results = {key: read_rows(Path(args.matrix) / "runs" / spec.name)
               for key, spec in runs.items()}
    tables = {"eq5_sum (matrix)": claims}
    for variant in VARIANTS:
        label = f"{DSP}_{variant}"
        if not any((Path(args.out) / "runs" / variant_spec(variant, seed).name).is_dir()
                   for seed in range(args.seeds)):
            continue  # not run (e.g. long48 on a machine where it does not fit)
        for seed in range(args.seeds):
            spec = variant_spec(variant, seed)
            results[(label, seed)] = read_rows(Path(args.out) / "runs" / spec.name)
        claim = copy.deepcopy(claims["dspnet-fig5"])
        claim.rows = [dataclasses.replace(r, ours=(label, r.ours[1])) for r in claim.rows]
        if variant in MEMBER_WIDTH_ONLY:
            claim.rows = [dataclasses.replace(r, ours=(label, r.ours[1].split()[0]))
                          for r in claim.rows if r.ours[1].endswith(" d1-1-1-1")]
        if variant in BOTH_ARMS:  # against its own, equally long baselines
            for seed in range(args.seeds):
                for spec in baseline_specs(variant, seed).values():
                    results[(spec.label, seed)] = read_rows(Path(args.out) / "runs" / spec.name)
            labels = {lab: spec.label for lab, spec in baseline_specs(variant, 0).items()}
            claim.rows = [dataclasses.replace(r, base=(labels[r.base[0]], r.base[1]))
                          for r in claim.rows]
        tables[variant] = {"dspnet-fig5": claim}
    queries = count_queries(str(next(Path(args.matrix, "data").iterdir())))
    judged = {name: judge(c, results, args.seeds, queries)["dspnet-fig5"]
              for name, c in tables.items()}
    lines = ["| DSPNet losses | member | DSPNet kNN | gain over random init | individual kNN "
             "| kNN d +- SE | verdict | DSPNet linear | individual linear | linear d +- SE |",
             "| :-- | :-- | --: | --: | --: | --: | :-- | --: | --: | --: |"]

    def ms(stats: dict) -> str:
        vals = stats["values"]
        return (" / ".join(f"{v:.1f}" for v in vals) + f" (mean {stats['mean']:.1f})"
                if vals else "n/a")

    for name, j in judged.items():
        for r in j["rows"]:
            k, lin = r["verdict"][KNN], r["verdict"].get(LINEAR, {})

            def dse(v: dict) -> str:
                return "n/a" if v.get("d") is None else f"{v['d']:+.1f} +- {v['se']:.1f}"
            gain = r["ours"]["gain"]["mean"]
            lines.append(f"| {name} | {r['member']} | {ms(r['ours'][KNN])} | "
                         f"{'n/a' if gain is None else format(gain, '+.1f')} | {ms(r['base'][KNN])}"
                         f" | {dse(k)} | {k['verdict']} | {ms(r['ours'][LINEAR])} | "
                         f"{ms(r['base'][LINEAR])} | {dse(lin)} |")
    md = "\n".join(lines) + "\n"
    result = {"machine": machine_info(1), "loadavg_at_end": loadavg(), "seeds": args.seeds,
              "queries": queries, "variants": {k: list(v) for k, v in VARIANTS.items()},
              "judged": judged}
    print(md, end="")
    write_result("dspnet_cause_cpu", result)
    (RESULTS_DIR / "dspnet_cause_cpu.md").write_text(md)
    plot_scale(judged, RESULTS_DIR / "dspnet_cause_scale.png")


def _epochs(spec: RunSpec) -> int:
    """The epochs a run trains: its last ``train.epochs`` override (later ones win)."""
    return int([o for o in spec.overrides if o.startswith("train.epochs=")][-1].split("=")[1])


#: variants drawn beside the length axis, hollow: (marker, legend)
OFF_AXIS = {"d1111": ("s", "one-block family (d1111):\ntarget = the best shape"),
            "data10k": ("D", "10,000 images, 18 epochs\n(data10k: the steps of 36)")}


def _x(variant: str) -> float:
    """Where a variant sits on the length axis: its steps, in epochs of the preset's subset
    (data10k's 18 epochs of 10,000 images sit at 36, with mid36)."""
    per_class = SCALES["cpu"].train_per_class
    return _epochs(variant_spec(variant, 0)) * DATA_PER_CLASS.get(variant, per_class) / per_class


def plot_scale(judged: dict, path: Path) -> None:
    """Hypothesis (c) as a picture: kNN d (DN minus the same shape trained alone for as long)
    against the epochs both arms trained, one line per DN; error bars +- SE over seeds, small
    dots the single seeds' differences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = {"eq5_sum (matrix)": _epochs(matrix_spec(0))}
    epochs |= {v: _epochs(variant_spec(v, 0)) for v in LENGTH_ONLY if v in judged}
    has_d = {n for n in epochs if any(r["verdict"][KNN].get("d") is not None
                                      for r in judged[n]["rows"])}
    order = sorted(has_d, key=epochs.get)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, row in enumerate(judged["eq5_sum (matrix)"]["rows"]):
        xs, ds, ses = [], [], []
        for name in order:
            r = next(r for r in judged[name]["rows"] if r["member"] == row["member"])
            v = r["verdict"][KNN]
            if v.get("d") is None:
                continue
            xs.append(epochs[name] + 0.3 * (i - 1.5))
            ds.append(v["d"])
            ses.append(v["se"] or 0.0)
            ours, base = r["ours"][KNN]["values"], r["base"][KNN]["values"]
            if len(ours) == len(base):  # seed by seed (both lists in seed order)
                ax.plot([xs[-1]] * len(ours), [a - b for a, b in zip(ours, base)], ".",
                        color=f"C{i}", alpha=0.4)
        ax.errorbar(xs, ds, yerr=ses, fmt="o-", color=f"C{i}", capsize=3, label=row["member"])
        for name, (marker, _) in OFF_AXIS.items():  # hypotheses (e), (d): hollow markers
            r = next((r for r in judged.get(name, {"rows": []})["rows"]
                      if r["member"] == row["member"]), None)
            if r is not None and r["verdict"][KNN].get("d") is not None:
                v = r["verdict"][KNN]
                ax.errorbar([_x(name) + 1.2 + 0.3 * (i - 1.5)], [v["d"]], yerr=[v["se"] or 0.0],
                            fmt=marker, mfc="none", color=f"C{i}", capsize=3)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_xticks([epochs[n] for n in order])
    seeds = {n: len(judged[n]["rows"][0]["ours"][KNN]["values"]) for n in order}
    ax.set_xticklabels([f"{epochs[n]}\n(DSPNet seeds: {seeds[n]})" for n in order])
    ax.set_xlabel("epochs, both arms (5,000 CIFAR-10 images, --scale cpu)")
    ax.set_ylabel("kNN@200 d: DSPNet DN - trained alone (points)")
    for name, (marker, label) in OFF_AXIS.items():
        if name in judged:
            n = max(len(r["ours"][KNN]["values"]) for r in judged[name]["rows"])
            ax.plot([], [], marker, mfc="none", color="0.3", label=f"{label}, seeds: {n}")
    ax.set_title("dspnet-fig5 at cpu: the gap against training length", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------- grad
def _flat_grad(params: list[torch.nn.Parameter]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for p in params])


def measure(run_dir: Path, batches: int) -> dict:
    """Per measured DN: ||g|| of its loss alone on the smallest DN's weights; pairwise cosines;
    and the Eq. 5 step factor over sampled sets of K DNs."""
    from slimssl.engine.checkpoint import list_checkpoints
    from slimssl.engine.config import load_config
    from slimssl.engine.trainer import Trainer

    cfg = load_config(run_dir / "config.yaml")
    ckpt = list_checkpoints(run_dir / "checkpoints")[-1]
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp) / "run", resume=str(ckpt), progress="off")
        method, recipe = trainer.method, trainer.recipe
        method.train()
        params = [p for p in method.online.backbone.parameters() if p.requires_grad]
        family = sorted(trainer.backbone.family(), key=lambda s: (s.width, sum(s.depth or ())))
        smallest, largest = family[0], family[-1]
        measured = [largest] + [s for s in family if s.depth is not None
                                and all(d == 1 for d in s.depth)][::-1]
        norms = {s.label: [] for s in measured}
        cos = {f"{a.label} | {b.label}": [] for a, b in itertools.combinations(measured, 2)}
        factor = []
        for i, (images, _labels) in enumerate(trainer.loader):
            if i == batches:
                break
            views = trainer.draw_views(images)
            keys = method.target_forward(views)
            grads = {}
            for spec in family:
                method.zero_grad(set_to_none=True)
                method.subnet_forward(views, spec, keys).loss.backward()
                grads[spec] = _flat_grad(params)
            mask = grads[smallest] != 0   # the weights the smallest DN uses
            g = {s: v[mask] for s, v in grads.items()}
            for s in measured:
                norms[s.label].append(float(g[s].norm()))
            for a, b in itertools.combinations(measured, 2):
                cos[f"{a.label} | {b.label}"].append(float(torch.nn.functional.cosine_similarity(
                    g[a], g[b], dim=0)))
            for _ in range(4):   # the recipe's own sandwich draws: largest, smallest, 2 others
                specs = recipe.sampler.sample()
                total = torch.stack([g[s] for s in specs]).sum(0)
                each = statistics.fmean(float(g[s].norm()) for s in specs)
                factor.append(float(total.norm()) / each)
        method.zero_grad(set_to_none=True)

    def stats(xs: list[float]) -> dict:
        return {"mean": statistics.fmean(xs),
                "se": statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else math.nan}

    return {"run": run_dir.name, "checkpoint": ckpt.name, "batches": batches,
            "k": len(specs), "shared_weights": int(mask.sum()),
            "norms": {k: stats(v) for k, v in norms.items()},
            "cosines": {k: stats(v) for k, v in cos.items()},
            "eq5_step_factor": stats(factor)}


def grad(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    machine, t0 = machine_info(1), time.time()
    results = [measure(Path(r), args.batches) for r in args.runs]
    for r in results:
        print(f"## {r['run']} ({r['checkpoint']}, {r['batches']} batches, "
              f"{r['shared_weights']:,} weights of the smallest DN)")
        for k, v in r["norms"].items():
            print(f"  ||g|| {k}: {v['mean']:.3e} +- {v['se']:.1e}")
        for k, v in r["cosines"].items():
            print(f"  cos {k}: {v['mean']:+.3f} +- {v['se']:.3f}")
        f = r["eq5_step_factor"]
        print(f"  ||sum of K={r['k']} grads|| / mean ||grad||: {f['mean']:.2f} +- {f['se']:.2f} "
              f"(parallel: {r['k']}, orthogonal: {math.sqrt(r['k']):.2f})")
    payload = {"machine": machine, "loadavg_at_end": loadavg(),
               "seconds": round(time.time() - t0, 1),
               "command": "python benchmarks/dspnet_cause.py grad "
               + " ".join(str(r) for r in args.runs) + f" --batches {args.batches}",
               "runs": results}
    write_result("dspnet_grad_balance", payload)


# ------------------------------------------------------------------------------------ recal
def recal(args: argparse.Namespace) -> None:
    """The two arms are scored with different BN statistics: every DN of the depth-elastic
    DSPNet model is recalibrated on ``eval.recalib_images`` clean (centre-view) training images
    before its kNN (its running statistics mix four depths), while a network trained alone keeps
    the running statistics of its augmented training views. Score each individual BYOL network
    both ways, with the same kNN code: as the matrix did (must reproduce its number), and
    recalibrated exactly as the DNs are."""
    from slimssl.cli.members import open_run
    from slimssl.data import eval_transform, load_split
    from slimssl.eval.family import calibration_batches, knn_family
    from slimssl.nn.calibrate import recalibrate_bn

    torch.set_num_threads(1)
    machine, t0 = machine_info(1), time.time()
    _, runs = build_matrix(["dspnet-fig5"], SCALES["cpu"], seeds=args.seeds)
    rows = []
    for (label, seed), spec in sorted(runs.items()):
        if not label.startswith("individual_byol"):
            continue
        run_dir = Path(args.matrix) / "runs" / spec.name
        run = open_run(str(run_dir))
        cfg, backbone = run.cfg, run.backbone
        train = load_split(cfg.data, "train", cfg.train.seed)
        test = load_split(cfg.data, "test", cfg.train.seed)
        member = backbone.family()[0]
        key = f"knn_top1_k{cfg.eval.knn_k}"
        as_run = knn_family(backbone, [member], train, test, (cfg.eval.knn_k,),
                            cfg.eval.knn_t)[0][key]
        n = min(cfg.eval.recalib_images, len(train))
        recalibrate_bn(backbone, member, calibration_batches(
            train, eval_transform(train.mean, train.std), n, 256, torch.device("cpu")), n)
        recalibrated = knn_family(backbone, [member], train, test, (cfg.eval.knn_k,),
                                  cfg.eval.knn_t)[0][key]
        reported = read_rows(run_dir)[0][KNN]
        rows.append({"run": spec.name, "label": label, "seed": seed, "reported": reported,
                     "running_stats": as_run, "recalibrated": recalibrated,
                     "recalib_images": n})
        print(f"{spec.name}: reported {reported:.2f}, running stats {as_run:.2f}, recalibrated "
              f"on {n} clean images {recalibrated:.2f} ({recalibrated - as_run:+.2f})", flush=True)
    write_result("dspnet_recal_individual", {
        "machine": machine, "loadavg_at_end": loadavg(), "seconds": round(time.time() - t0, 1),
        "command": f"python benchmarks/dspnet_cause.py recal --matrix {args.matrix} "
                   f"--seeds {args.seeds}", "rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="the matrix's DSPNet run with a variant's overrides")
    t.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    t.add_argument("--seed", type=int, required=True)
    t.add_argument("--data", required=True, help="CIFAR-10 ImageFolder (train/, test/)")
    t.add_argument("--out", required=True, help="where the variant runs go (resumable)")
    t.add_argument("--arm", choices=("dspnet", "individual"), default="dspnet",
                   help="individual: the variant's own baselines (variants in BOTH_ARMS)")
    t.add_argument("--only", help="--arm individual: comma-separated matrix labels, in order "
                   "(default: all four)")
    r = sub.add_parser("report", help="judge the variants against the matrix's baselines")
    r.add_argument("--out", required=True)
    r.add_argument("--matrix", required=True, help="the --out of slimssl reproduce --scale cpu")
    r.add_argument("--seeds", type=int, default=2)
    g = sub.add_parser("grad", help="per-DN gradients on the smallest DN's weights")
    g.add_argument("runs", nargs="+", help="DSPNet run directories")
    g.add_argument("--batches", type=int, default=8)
    c = sub.add_parser("recal", help="individual networks scored with recalibrated BN too")
    c.add_argument("--matrix", required=True, help="the --out of slimssl reproduce --scale cpu")
    c.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    {"train": train, "report": report, "grad": grad, "recal": recal}[args.cmd](args)


if __name__ == "__main__":
    main()
