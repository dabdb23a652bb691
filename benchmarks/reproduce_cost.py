"""How long ``slimssl reproduce CLAIM --scale SCALE`` takes, from a few timed steps per run.

For every run of the matrix (one seed; every seed costs the same), in this process and with
``--threads`` torch threads: real ``Trainer.train_step`` calls at ``--points`` spread-out epoch
fractions (so slow start, DSPNet's full-network warm-up and US3L's dynamic-sampling stages are
each weighted by their share of the run), ``--steps`` steps per point after one untimed step;
then one forward of a batch of 256 images per member (the cost unit of the kNN bank and
queries, the random-init floor and the linear probe's feature pass). Images are random pixels
(``data.path=synthetic``): a step's cost does not depend on them. Times are CPU time of this
process (``time.process_time``; with one thread, the wall time it would take on an idle core),
so the estimate does not depend on how loaded the machine is while measuring; the wall times
of the steps are kept too (``step_wall_s``), with the load average.

Estimate per run = steps/epoch x epochs x mean step + (bank + queries) images x sum over members
of the per-image forward x 3 (trained kNN, random-init kNN, probe features). The matrix's wall
time = the sum over runs x seeds / --jobs (runs are independent single-threaded processes).

Usage::

    python benchmarks/reproduce_cost.py --scale cpu [--claims all] [--threads 1]
    python benchmarks/reproduce_cost.py --scale cpu --records benchmarks/results/claims_cpu_runs
    python benchmarks/reproduce_cost.py --scale cpu --image-sizes 32,24,20 [--only LABELS]

Writes ``benchmarks/results/reproduce_cost_<scale>.json``.

``--image-sizes`` times every run's step (as above, CPU time) at each size, the order
alternating from run to run, and writes ``reproduce_cost_<scale>_image_size.json``: what the
matrix's training would cost at a lower resolution (issue 17: ``all`` at ``cpu`` is ~2x over
its 3 h).

``--records DIR`` times nothing: it reads the run records of a finished matrix (``OUT/runs`` or
their committed copies) and sums what the runs really took, per run of the current matrix:
the training epochs (``epoch_time_s`` of ``metrics.jsonl``: one per epoch, so work redone after
a kill and the time a run stood paused between epochs are left out; a pause inside an epoch is
not), the rest of its pretraining stage (kNN bank and queries, random-init floor; the smallest
remainder over the run's seeds, since a killed invocation's time lands there) and its linear
probe (``timing.json``). The matrix's wall time with ``--jobs J`` is the longest-first packing
of those runs onto J single-threaded workers. Writes ``reproduce_cost_<scale>_records.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import loadavg, machine_info, make_trainer, temp_run_dir, write_result  # noqa: E402


def time_run(spec, points: int, steps: int) -> dict:
    with temp_run_dir() as d:
        trainer = make_trainer(spec.config, list(spec.overrides)
                               + ["data.path=synthetic"], d)
        images = next(iter(trainer.loader))[0]
        epochs = trainer.cfg.train.epochs
        samples, walls = [], []
        for i in range(points):
            epoch_f = epochs * (i + 0.5) / points
            trainer.train_step(images, epoch_f)  # untimed: first step at this phase
            for _ in range(steps):
                t0, c0 = time.perf_counter(), time.process_time()
                trainer.train_step(images, epoch_f)
                samples.append(time.process_time() - c0)
                walls.append(time.perf_counter() - t0)
        # train mode: batch statistics (a universal-BN member has none stored before
        # recalibration); the cost of a forward is the same
        backbone = trainer.method.online.backbone.train()
        size = trainer.cfg.data.image_size
        x = torch.randn(256, 3, size, size)
        fwd = {}
        with torch.no_grad():
            for member in backbone.family():
                with backbone.subnet(member):
                    backbone(x[:16])
                    c0 = time.process_time()
                    backbone(x)
                    fwd[member.label] = (time.process_time() - c0) / 256
    return {"step_s": statistics.fmean(samples), "step_samples_s": [round(s, 3) for s in samples],
            "step_wall_s": [round(s, 3) for s in walls],
            "forward_s_per_image": fwd, "batch": trainer.cfg.data.batch_size, "epochs": epochs}


def by_image_size(runs: dict, train_imgs: int, sizes: list[int],
                  args: argparse.Namespace) -> dict:
    """Every run's step at each image size (``data.image_size`` overridden, nothing else), the
    sizes in alternating order from run to run so that drift in the machine's speed falls on
    all of them; the step only (training is ~95 % of a run at ``cpu``)."""
    per_run, totals = {}, {px: 0.0 for px in sizes}
    for i, ((label, _), spec) in enumerate(runs.items()):
        row = {}
        for px in (sizes if i % 2 == 0 else sizes[::-1]):
            sized = dataclasses.replace(spec, overrides=(*spec.overrides,
                                                         f"data.image_size={px}"))
            t = time_run(sized, args.points, args.steps)
            row[px] = {"step_s": t["step_s"], "step_samples_s": t["step_samples_s"],
                       "train_s": (train_imgs // t["batch"]) * t["epochs"] * t["step_s"]}
            totals[px] += row[px]["train_s"]
        base = row[sizes[0]]["step_s"]
        per_run[label] = {**{str(px): r for px, r in row.items()},
                          "ratio": {str(px): row[px]["step_s"] / base for px in sizes},
                          "loadavg": loadavg()}
        print(f"{label:34s} " + "  ".join(f"{px} px {row[px]['step_s']:.3f} s "
                                            f"({row[px]['step_s'] / base:.2f}x)"
                                            for px in sizes), flush=True)
    wall = {str(px): t * args.seeds / args.jobs for px, t in totals.items()}
    for px in sizes:
        print(f"{px} px: training of one seed {totals[px]:.0f} s of one core "
              f"({totals[px] / totals[sizes[0]]:.2f}x); {args.seeds} seeds on {args.jobs} jobs: "
              f"{wall[str(px)] / 3600:.2f} h")
    return {"sizes": sizes, "points": args.points, "steps": args.steps, "runs": per_run,
            "one_seed_train_core_s": {str(px): t for px, t in totals.items()},
            "ratio": {str(px): totals[px] / totals[sizes[0]] for px in sizes},
            "seeds": args.seeds, "jobs": args.jobs, "wall_s_estimate": wall}


def from_records(records: Path, scale, claims: str, seeds: int, jobs: int) -> dict:
    from slimssl.eval.claims import build_matrix

    claim_map, runs = build_matrix(claims.split(","), scale, seeds)
    per_run, rest_by_label = {}, {}
    for (label, seed), spec in runs.items():
        d = records / spec.name
        if not (d / "timing.json").exists():
            raise SystemExit(f"{d}: no timing.json (is --records the matrix's runs/ folder, "
                             f"and --seeds what it ran?)")
        epochs = [json.loads(line)["epoch_time_s"] for line in (d / "metrics.jsonl").open()
                  if '"epoch_time_s"' in line]
        secs = json.loads((d / "timing.json").read_text())["seconds"]
        per_run[spec.name] = {"label": label, "seed": seed, "epochs": len(epochs),
                              "train_s": sum(epochs), "pretrain_s": secs["pretrain"],
                              "linear_s": secs.get("linear", 0.0)}
        rest_by_label.setdefault(label, []).append(max(0.0, secs["pretrain"] - sum(epochs)))
    for r in per_run.values():
        r["eval_s"] = min(rest_by_label[r["label"]])
        r["total_s"] = r["train_s"] + r["eval_s"] + r["linear_s"]
    # longest first onto the least loaded of J workers
    workers = [0.0] * jobs
    for t in sorted((r["total_s"] for r in per_run.values()), reverse=True):
        workers[workers.index(min(workers))] += t
    by_claim = {}
    for name, claim in claim_map.items():
        labels = {lab for row in claim.rows for lab in (row.ours[0], row.base[0])}
        by_claim[name] = sum(r["total_s"] for r in per_run.values() if r["label"] in labels)
    total = sum(r["total_s"] for r in per_run.values())
    # the least disturbed seed of every run, for every seed: what idle cores would come closer to
    best = {lab: min(r["train_s"] for r in per_run.values() if r["label"] == lab)
            for lab in rest_by_label}
    best_total = sum(best[r["label"]] + r["eval_s"] + r["linear_s"] for r in per_run.values())
    recorded = sum(r["pretrain_s"] + r["linear_s"] for r in per_run.values())
    for name, r in sorted(per_run.items()):
        print(f"{name:48s} {r['epochs']:3d} ep  train {r['train_s']:6.0f} s  eval "
              f"{r['eval_s']:4.0f} s  probe {r['linear_s']:3.0f} s  (recorded "
              f"{r['pretrain_s'] + r['linear_s']:6.0f} s)")
    for name, t in by_claim.items():
        print(f"{name}: {t:.0f} s of one core ({seeds} seeds; runs it shares counted in full)")
    print(f"all {len(per_run)} runs: {total:.0f} s of one core (recorded wall, with redone work "
          f"and pauses: {recorded:.0f} s); --jobs {jobs}: {max(workers):.0f} s = "
          f"{max(workers) / 3600:.2f} h of wall")
    print(f"every run at its fastest seed's training time: {best_total:.0f} s of one core, "
          f"~{best_total / jobs / 3600:.2f} h of wall with --jobs {jobs}")
    return {"records": str(records), "claims": claims, "seeds": seeds, "jobs": jobs,
            "runs": per_run, "by_claim_core_s": by_claim, "core_s": total,
            "recorded_s": recorded, "wall_s": max(workers),
            "fastest_seed_train_s": best, "fastest_seed_core_s": best_total}


def main() -> None:
    from slimssl.eval.claims import SCALES, build_matrix

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="cpu", choices=sorted(SCALES))
    ap.add_argument("--claims", default="all")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=2, help="seeds of the estimate")
    ap.add_argument("--jobs", type=int, default=2, help="parallel runs of the estimate")
    ap.add_argument("--only", help="comma-separated run labels (default: every run)")
    ap.add_argument("--records", help="a finished matrix's run records: sum what they took "
                    "instead of timing steps")
    ap.add_argument("--image-sizes", help="comma-separated sizes, e.g. 32,24,20: time every run "
                    "at each (alternating order), to see what a lower resolution would save")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    scale = SCALES[args.scale]
    if args.records:
        out = from_records(Path(args.records), scale, args.claims, args.seeds, args.jobs)
        write_result(f"reproduce_cost_{args.scale}_records",
                     {"machine": machine_info(args.threads), "scale": args.scale, **out})
        return
    _, runs = build_matrix(args.claims.split(","), scale, 1)
    if args.only:
        runs = {k: v for k, v in runs.items() if k[0] in args.only.split(",")}
    train_imgs = 10 * scale.train_per_class if scale.train_per_class else 50_000
    if args.image_sizes:
        sizes = [int(x) for x in args.image_sizes.split(",")]
        write_result(f"reproduce_cost_{args.scale}_image_size",
                     {"machine": machine_info(args.threads), "scale": args.scale,
                      **by_image_size(runs, train_imgs, sizes, args)})
        return
    test_imgs = 10 * scale.test_per_class if scale.test_per_class else 10_000
    out, total = {}, 0.0
    for (label, _), spec in runs.items():
        load0 = loadavg()
        t = time_run(spec, args.points, args.steps)
        steps = (train_imgs // t["batch"]) * t["epochs"]
        train_s = steps * t["step_s"]
        passes = 3 if scale.linear_epochs else 2
        eval_s = (train_imgs + test_imgs) * sum(t["forward_s_per_image"].values()) * passes
        out[label] = {**t, "steps": steps, "train_s": train_s, "eval_s": eval_s,
                      "loadavg_before": load0, "loadavg_after": loadavg()}
        total += train_s + eval_s
        print(f"{label:34s} step {t['step_s']:.3f} s x {steps} = {train_s:7.0f} s  eval "
              f"{eval_s:5.0f} s  (load {load0[0]} -> {loadavg()[0]})", flush=True)
    wall = total * args.seeds / args.jobs
    print(f"one seed: {total:.0f} s of one core; {args.seeds} seeds on {args.jobs} jobs: "
          f"{wall:.0f} s = {wall / 3600:.2f} h (at the load measured)")
    write_result(f"reproduce_cost_{args.scale}",
                 {"machine": machine_info(args.threads), "scale": args.scale,
                  "runs": out, "one_seed_core_s": total, "seeds": args.seeds, "jobs": args.jobs,
                  "wall_s_estimate": wall, "loadavg_end": loadavg()})


if __name__ == "__main__":
    main()
