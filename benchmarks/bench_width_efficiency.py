"""Where a slimmable step's cost above its FLOP limit goes, per width (issue 18.2).

The FLOP limit (``common.flop_limit``) assumes a member of MACs ``M_w`` costs ``M_w / M_full``
of the full network's time. This script separates the two reasons a real step costs more:

1. **The hardware**: a narrow network does fewer MACs per second (small GEMMs/convolutions are
   overhead- and memory-bound). Measured on the member *exported* as a plain torch model
   (``nn.Conv2d``/``nn.BatchNorm2d``, contiguous weights): no slimmable machinery at all.
2. **slimssl's machinery**: weight slicing, switchable BN, the width switch. Measured as the
   same member run through the slimmable backbone, against its plain export, same input.

For every member of a width list it times, alternating in one process (``common.alternate``),
forward + backward of (a) the plain export and (b) the slimmable backbone at that width, on
a batch of random pixels (cost does not depend on pixels). From those it reports:

* ``time_share``: member time / full-width time for both, next to ``macs_share``;
* ``slim_overhead``: slimmable member time / its plain export's time;
* the backbone-only step ratio of the family, ``(fwd_full + sum_w fwdbwd_w) / (fwd_full +
  fwdbwd_full)`` (target forward once + every member's forward/backward, as a SlimCLR step),
  three ways: with MACs (the FLOP limit), with the plain exports' times (the limit this
  hardware allows for these shapes) and with the slimmable times (what slimssl pays).

Heads, losses, augmentation and the optimizer are not in these numbers. ``--step`` adds the
whole ``Trainer.train_step`` of SlimCLR-MoCov2 against the vanilla MoCo v2 step (as
``bench_step_cost``), alternating, with each part timed by wrapping it (the trainers are
otherwise untouched; on a CPU every op is synchronous, so wall clocks around a call time it):
augmentation, target forward, each member's forward (backbone + heads + its loss), the recipe's
terms (distillation), ``Recipe.report``, optimizer, EMA, enqueue; the remainder is backward
and loop overhead.

Usage::

    python benchmarks/bench_width_efficiency.py [--arch resnet10_narrow] [--image-size 32]
        [--batch 64] [--repeats 7] [--threads 1] [--widths 1,0.75,0.5,0.25]
        [--set model.base_width=32] [--channels-last] [--graphs] [--step] [--clock thread|wall]

Timing uses the main thread's CPU time by default (one torch thread runs every op on the
calling thread), so the time other processes held the core on a shared machine is left out
(medians are reported, every sample is saved).

Writes ``benchmarks/results/width_efficiency.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import alternate, machine_info, loadavg, make_config, temp_run_dir, write_result  # noqa: E402


def _fwd_bwd(model, x, **kw):
    def run():
        model.zero_grad(set_to_none=True)
        model(x, **kw).sum().backward()
    return run


def _fwd(model, x, **kw):
    def run():
        with torch.no_grad():
            model(x, **kw)
    return run


def measure(args) -> dict:
    from slimssl.engine.build import build_backbone
    from slimssl.export import extract_subnet, profile_family
    from slimssl.nn.spec import as_spec

    widths = [float(w) for w in args.widths.split(",")]
    with temp_run_dir() as d:
        cfg = make_config(None, [f"model.arch={args.arch}", f"model.widths={widths}",
                                 f"data.image_size={args.image_size}", *args.set], d)
    backbone = build_backbone(cfg, init_weights=True).train()
    specs = [as_spec(w) for w in widths]
    plains = {s.label: extract_subnet(backbone, s).train() for s in specs}
    macs = {row["label"]: row["macs"] for row in profile_family(backbone, specs, args.image_size)}
    x = torch.randn(args.batch, 3, args.image_size, args.image_size)
    if args.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        backbone.to(memory_format=torch.channels_last)
        for p in plains.values():
            p.to(memory_format=torch.channels_last)
    fns = {}
    for s in specs:
        fns[f"plain/{s.label}"] = _fwd_bwd(plains[s.label], x)
        fns[f"slim/{s.label}"] = _fwd_bwd(backbone, x, spec=s)
    full = specs[0].label
    fns[f"plain_fwd/{full}"] = _fwd(plains[full], x)
    fns[f"slim_fwd/{full}"] = _fwd(backbone, x, spec=specs[0])
    t = alternate(fns, args.repeats, warmup=2, clock=args.clock_fn)
    med = {k: v["median_s"] for k, v in t.items()}

    rows = []
    for s in specs:
        rows.append({
            "width": s.label, "macs": macs[s.label],
            "macs_share": macs[s.label] / macs[full],
            "plain_s": med[f"plain/{s.label}"], "slim_s": med[f"slim/{s.label}"],
            "plain_time_share": med[f"plain/{s.label}"] / med[f"plain/{full}"],
            "slim_time_share": med[f"slim/{s.label}"] / med[f"slim/{full}"],
            "slim_overhead": med[f"slim/{s.label}"] / med[f"plain/{s.label}"],
            "plain_gmacs_per_s": 3 * macs[s.label] * args.batch / med[f"plain/{s.label}"] / 1e9,
        })

    def family_ratio(fwd_full: float, member: list[float]) -> float:
        return (fwd_full + sum(member)) / (fwd_full + member[0])

    # MACs: forward = 1 unit, forward + backward = 3 units (the FLOP limit's convention)
    step = {
        "flop_limit": family_ratio(macs[full], [3 * macs[s.label] for s in specs]),
        "hardware_limit_plain": family_ratio(med[f"plain_fwd/{full}"],
                                             [med[f"plain/{s.label}"] for s in specs]),
        "slimssl_backbone": family_ratio(med[f"slim_fwd/{full}"],
                                         [med[f"slim/{s.label}"] for s in specs]),
    }
    return {"rows": rows, "family_step_ratio": step, "medians_s": med,
            "samples_s": {k: v["samples_s"] for k, v in t.items()}}


def graphs(args) -> dict:
    """The family's forward + backward three ways, alternating: one backward per member, one
    backward of the summed members (four graphs alive, SlimCLR's ``sum`` mode), and the same
    with the projection head (``method.online``), each over the full width alone."""
    from common import make_trainer
    from slimssl.nn.spec import as_spec

    widths = [float(w) for w in args.widths.split(",")]
    specs = [as_spec(w) for w in widths]
    with temp_run_dir() as d:
        t = make_trainer("slimclr_mocov2_cifar10", [
            "data.path=synthetic", f"data.image_size={args.image_size}",
            f"data.batch_size={args.batch}", f"model.arch={args.arch}",
            f"model.widths={widths}", "method.bn_splits=1", *args.set], d)
    online = t.method.online
    x = torch.randn(args.batch, 3, args.image_size, args.image_size)

    def run(module, members, summed):
        def go():
            online.zero_grad(set_to_none=True)
            total = None
            for s in members:
                with online.subnet(s):
                    y = module(x).sum()
                if summed:
                    total = y if total is None else total + y
                else:
                    y.backward()
            if summed:
                total.backward()
        return go

    fns = {}
    for name, module in (("backbone", online.backbone), ("online", online)):
        fns[f"{name}/full"] = run(module, specs[:1], False)
        fns[f"{name}/per_member"] = run(module, specs, False)
        fns[f"{name}/summed"] = run(module, specs, True)
    med = {k: v["median_s"] for k, v in
           alternate(fns, args.repeats, warmup=1, clock=args.clock_fn).items()}
    return {"medians_s": med,
            "family_over_full": {f"{n}/{mode}": med[f"{n}/{mode}"] / med[f"{n}/full"]
                                 for n in ("backbone", "online")
                                 for mode in ("per_member", "summed")},
            "head_cost_full_width": med["online/full"] / med["backbone/full"]}


class _Clock:
    """Accumulates wall seconds per part while ``active`` names the trainer being timed."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.active: str | None = None
        self.parts: dict[str, dict[str, float]] = {}

    def wrap(self, part: str, fn):
        def timed(*a, **kw):
            start = self.clock()
            try:
                return fn(*a, **kw)
            finally:
                if self.active is not None:
                    slot = self.parts.setdefault(self.active, {})
                    slot[part] = slot.get(part, 0.0) + self.clock() - start
        return timed


def step_breakdown(args) -> dict:
    """Whole SlimCLR and vanilla steps, alternating, split into their parts (mean s/step)."""
    import slimssl.engine.trainer as trainer_mod
    from common import make_trainer

    shared = ["data.path=synthetic", f"data.image_size={args.image_size}",
              f"data.batch_size={args.batch}", f"model.arch={args.arch}",
              "method.queue_size=1024", "method.bn_splits=1", *args.set]
    clock = _Clock(args.clock_fn)
    trainer_mod.ema_update_ = clock.wrap("ema", trainer_mod.ema_update_)
    with temp_run_dir() as d_van, temp_run_dir() as d_slim:
        trainers = {
            "vanilla": make_trainer("slimclr_mocov2_cifar10", shared + [
                "recipe.name=individual", "model.widths=[1.0]"], d_van),
            "slimclr": make_trainer("slimclr_mocov2_cifar10", shared, d_slim)}
        for t in trainers.values():
            t.views = clock.wrap("augment", t.views)
            m, r = t.method, t.recipe
            m.target_forward = clock.wrap("target_forward", m.target_forward)
            m.subnet_forward = clock.wrap("member_forward+loss", m.subnet_forward)
            m.end_iteration = clock.wrap("enqueue", m.end_iteration)
            r.subnet_loss = clock.wrap("recipe_terms", r.subnet_loss)
            r.report = clock.wrap("report", r.report)
            t.optimizer.step = clock.wrap("optimizer", t.optimizer.step)
        images = next(iter(trainers["vanilla"].loader))[0]
        epoch = float(trainers["slimclr"].cfg.train.epochs) - 0.01  # every member trains

        def step(name):
            def run():
                clock.active = name
                start = args.clock_fn()
                trainers[name].train_step(images, epoch, read_logs=False)
                slot = clock.parts.setdefault(name, {})
                slot["total"] = slot.get("total", 0.0) + args.clock_fn() - start
                clock.active = None
            return run

        fns = {name: step(name) for name in trainers}
        for fn in fns.values():  # warm-up (queue, allocator), not counted
            fn()
        clock.parts.clear()
        t = alternate(fns, args.repeats, warmup=0, clock=args.clock_fn)
    parts = {}
    for name, slot in clock.parts.items():
        mean = {k: v / args.repeats for k, v in slot.items()}
        mean["backward+rest"] = mean["total"] - sum(v for k, v in mean.items() if k != "total")
        parts[name] = mean
    return {"median_step_s": {k: v["median_s"] for k, v in t.items()},
            "ratio_median": t["slimclr"]["median_s"] / t["vanilla"]["median_s"],
            "ratio_mean": parts["slimclr"]["total"] / parts["vanilla"]["total"],
            "mean_parts_s": parts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet10_narrow")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--widths", default="1,0.75,0.5,0.25")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--set", action="append", default=[], help="config override k=v")
    p.add_argument("--graphs", action="store_true",
                   help="also time one backward per member vs one summed backward, with and "
                        "without the projection head")
    p.add_argument("--step", action="store_true",
                   help="also time whole SlimCLR / vanilla steps split into parts")
    p.add_argument("--clock", choices=("thread", "wall"), default=None,
                   help="thread: the main thread's CPU seconds (default with --threads 1: robust "
                        "to other processes on the cores); wall: perf_counter (default otherwise)")
    p.add_argument("--name", default="width_efficiency")
    args = p.parse_args()
    if args.clock is None:
        args.clock = "thread" if args.threads == 1 else "wall"
    args.clock_fn = time.thread_time if args.clock == "thread" else time.perf_counter
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = machine_info(args.threads)
    res = measure(args)
    print(f"{args.arch}, {args.image_size} px, batch {args.batch}, {args.threads} thread(s), "
          f"channels_last={args.channels_last}, clock {args.clock}")
    print(f"{'width':>6} {'MACs':>12} {'MAC share':>9} {'plain share':>11} {'slim share':>10} "
          f"{'slim/plain':>10} {'plain GMAC/s':>12}")
    for r in res["rows"]:
        print(f"{r['width']:>6} {r['macs']:>12,} {r['macs_share']:>9.3f} "
              f"{r['plain_time_share']:>11.3f} {r['slim_time_share']:>10.3f} "
              f"{r['slim_overhead']:>10.3f} {r['plain_gmacs_per_s']:>12.2f}")
    s = res["family_step_ratio"]
    print(f"family backbone step / full-width step: FLOP limit {s['flop_limit']:.3f}x, "
          f"plain exports {s['hardware_limit_plain']:.3f}x, slimssl {s['slimssl_backbone']:.3f}x")
    if args.graphs:
        res["graphs"] = g = graphs(args)
        print("family forward+backward / full width: " + ", ".join(
            f"{k} {v:.3f}x" for k, v in g["family_over_full"].items())
            + f"; head: online / backbone at full width {g['head_cost_full_width']:.3f}x")
    if args.step:
        res["step"] = step_breakdown(args)
        st = res["step"]
        print(f"whole step: SlimCLR / vanilla = {st['ratio_median']:.3f}x (medians), "
              f"{st['ratio_mean']:.3f}x (means)")
        keys = list(st["mean_parts_s"]["slimclr"])
        print(f"{'part':>22} {'vanilla s':>10} {'slimclr s':>10} {'ratio':>7}")
        for k in keys:
            v = st["mean_parts_s"]["vanilla"].get(k, 0.0)
            c = st["mean_parts_s"]["slimclr"][k]
            print(f"{k:>22} {v:>10.4f} {c:>10.4f} {c / v if v else float('nan'):>7.2f}")
    write_result(args.name, {"machine": info, "loadavg_end": loadavg(),
                             "args": {k: v for k, v in vars(args).items() if k != "clock_fn"},
                             "median_spread_note": "medians over alternating repeats",
                             **res,
                             "sample_cv": {k: statistics.pstdev(v) / statistics.mean(v)
                                           for k, v in res["samples_s"].items()}})


if __name__ == "__main__":
    main()
