"""``slimssl reproduce CLAIM --scale SCALE``: the papers' central claims as one command.

Every member of the claim matrix (``slimssl/eval/claims.py``: what runs, the papers' figures,
the verdict rule) is an ordinary run directory ``OUT/runs/<label>-s<seed>-<hash>`` made by
``slimssl pretrain --resume auto`` (train, then kNN@200 per member and the random-init floor of
the same network), then, where the scale asks for it, ``slimssl linear --mode fast --recipe
dspnet --no-distill`` (a switchable probe per member, the same protocol for every arm). A run
whose ``results.json`` has every column is skipped; a run that was killed continues from its
newest checkpoint, so a killed ``reproduce`` is continued by running the same command again.
``--jobs J`` trains J runs at once, each a subprocess with ``--threads`` torch threads. Then
``OUT/claims.{md,json,png}``.

Data: a class-balanced subset (``Scale.train_per_class`` / ``test_per_class``; the first images
of each class after a fixed seeded shuffle, the same for every seed) is linked into
``OUT/data/`` so the kNN bank is exactly what the networks trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from slimssl.eval.claims import CLAIMS, SCALES, RunSpec, Scale
from slimssl.fileio import atomic_write_text

_LIVE: set[subprocess.Popen] = set()
_LIVE_LOCK = threading.Lock()


def link_subset(source: Path, dest: Path, train_per_class: int | None,
                test_per_class: int | None, seed: int = 0) -> Path:
    """``dest/{train,test}/<class>/`` symlinks to the first N files of each class of
    ``source/{train,test}`` after a shuffle seeded by (seed, split, class); None: every file."""
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        src = source / split
        if split == "test" and not src.is_dir() and (source / "val").is_dir():
            src = source / "val"
        for cls in sorted(p for p in src.iterdir() if p.is_dir()):
            files = sorted(f for f in cls.iterdir() if f.is_file())
            random.Random(f"{seed}-{split}-{cls.name}").shuffle(files)
            out = dest / split / cls.name
            out.mkdir(parents=True, exist_ok=True)
            for f in files[:n]:
                link = out / f.name
                if not link.exists():
                    try:
                        link.symlink_to(f.resolve())
                    except FileExistsError:  # a concurrent reproduce on this --out, or stale
                        if link.resolve() != f.resolve():
                            raise FileExistsError(
                                f"{link} links to {os.readlink(link)}, not {f}: the subset "
                                f"under {dest} is stale; remove that folder and run again"
                            ) from None
    return dest


def prepare_data(data: str | None, scale: Scale, out: Path) -> str:
    """The dataset path every run of the matrix trains and is scored on."""
    if data is None:
        if scale.name != "smoke":
            raise ValueError(f"--scale {scale.name} needs --data: {scale.data}")
        return "digits"
    if data.lower() in ("digits", "synthetic"):
        if scale.train_per_class is not None or scale.test_per_class is not None:
            raise ValueError(f"--scale {scale.name} trains on a class-balanced subset of a folder "
                             f"dataset; pass --data {scale.data}, not {data!r}")
        return data
    path = Path(data)
    if not path.is_dir():
        raise FileNotFoundError(f"--data {data}: no such folder; pass {scale.data}")
    if scale.train_per_class is None and scale.test_per_class is None:
        return str(path.resolve())
    has_test = (path / "test").is_dir() or (path / "val").is_dir()
    if not ((path / "train").is_dir() and has_test):
        raise ValueError(f"--data {data}: --scale {scale.name} needs an ImageFolder with train/ "
                         "and test/ (or val/) class sub-folders (e.g. CIFAR-10 as JPEGs in "
                         "ImageNet layout) to link its class-balanced subset from")
    name = f"{path.resolve().name}_{scale.train_per_class}_{scale.test_per_class}"
    return str(link_subset(path, out / "data" / name, scale.train_per_class,
                           scale.test_per_class).resolve())


def count_queries(data: str, seed: int = 0) -> int:
    """Test images of the dataset (the queries every kNN / probe accuracy is measured on)."""
    from slimssl.data import load_dataset

    return len(load_dataset(data, "test", 16, seed=seed))


def read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "results.json"
    if not path.exists():
        return []
    from slimssl.eval.report import read_results

    return read_results(run_dir)


#: settings a run directory records that are the run's own, not the recipe's
_RUN_LOCAL = {"data.path"}


def config_drift(spec: RunSpec, run_dir: Path) -> list[str]:
    """Settings in which ``run_dir/config.yaml`` (what the run trained with) differs from what
    this release resolves for ``spec`` (the packaged config and the overrides): a run name
    hashes the config's NAME and the overrides, so a changed packaged default (say a recipe's
    learning rate) would otherwise be reused silently. Empty when nothing differs or there is
    no run yet; settings one side does not have (added or removed in another release) and
    settings left to the run (None, such as a head width that follows the backbone) are
    skipped."""
    saved = run_dir / "config.yaml"
    if not saved.exists():
        return []
    import yaml

    from slimssl.engine.config import config_to_dict, load_config

    old = yaml.safe_load(saved.read_text()) or {}
    new = config_to_dict(load_config(spec.config, list(spec.overrides)))
    drift = []
    for section, values in new.items():
        if not isinstance(values, dict) or not isinstance(old.get(section), dict):
            continue  # out_dir: the run's own
        for key, value in values.items():
            name = f"{section}.{key}"
            if (key in old[section] and value is not None and old[section][key] != value
                    and name not in _RUN_LOCAL):  # None: resolved when the run starts
                drift.append(f"{name} {old[section][key]!r} -> {value!r}")
    return drift


def _run(cmd: list[str], log: Path, threads: int, tick: Callable[[], None] | None = None,
         every: float = 30.0) -> int:
    """Run ``cmd`` to its end, its output appended to ``log``; ``tick()`` every ``every``
    seconds meanwhile (the caller saves the elapsed time: a run killed with its session keeps
    all but the last ``every`` seconds of its wall-time record)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with log.open("a") as f:
        f.write(f"\n$ {shlex.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        with _LIVE_LOCK:
            _LIVE.add(proc)
        try:
            while True:
                try:
                    return proc.wait(timeout=every)
                except subprocess.TimeoutExpired:
                    if tick is not None:
                        tick()
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(proc)


def run_one(spec: RunSpec, data: str, out: Path, scale: Scale, threads: int) -> dict[str, Any]:
    """Train/score one member of the matrix unless its results are complete."""
    from slimssl.eval.claims import complete

    run_dir = out / "runs" / spec.name
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log, timing_path = logs / f"{spec.name}.log", logs / f"{spec.name}.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {
        "run": spec.name, "config": spec.config, "overrides": list(spec.overrides),
        "seconds": {}}
    linear = scale.linear_epochs > 0
    drift = config_drift(spec, run_dir)
    if drift:
        return {"name": spec.name, "status": f"failed: {run_dir} was trained with another config "
                f"than this release resolves ({'; '.join(drift)}); move it away (or pass another "
                "--out) to train it again, or --report to score it as it is"}
    if complete(read_rows(run_dir), linear):
        return {"name": spec.name, "status": "skipped (complete)"}
    lock = run_dir.parent / f"{spec.name}.lock"
    if lock.exists():
        text = lock.read_text().strip()
        pid = int(text) if text.isdigit() else 0
        if pid and pid != os.getpid() and _alive(pid):
            return {"name": spec.name, "status": f"failed: locked by running process {pid} "
                                                  f"({lock}); wait for it or stop it"}
        # else: a stale lock of a killed reproduce
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    try:
        py = [sys.executable, "-m", "slimssl.cli"]
        stages = []
        rows = read_rows(run_dir)
        if not complete(rows, False):
            cmd = py + ["pretrain", "--config", spec.config, "--data", data,
                        "--out-dir", str(run_dir), "--resume", "auto", "--progress", "lines"]
            cmd += [a for s in spec.overrides for a in ("--set", s)]
            stages.append(("pretrain", cmd))
        if linear:
            # one protocol for every arm (SlimCLR runs would otherwise distil their probes):
            # DSPNet's BN + lr 0.2 cosine probe, the least sensitive to lr, no distillation
            stages.append(("linear", py + ["linear", str(run_dir), "--mode", "fast", "--probe",
                                           "switchable", "--recipe", "dspnet", "--no-distill",
                                           "--epochs", str(scale.linear_epochs)]))
        for stage, cmd in stages:
            before, t0 = timing["seconds"].get(stage, 0.0), time.perf_counter()

            def save(stage: str = stage, before: float = before, t0: float = t0) -> None:
                timing["seconds"][stage] = before + time.perf_counter() - t0
                atomic_write_text(timing_path, json.dumps(timing, indent=2) + "\n")

            rc = _run(cmd, log, threads, tick=save)
            save()
            if rc != 0:
                return {"name": spec.name, "status": f"failed: {stage} exit {rc}, see {log}"}
        return {"name": spec.name, "status": "ran"}
    finally:
        lock.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _machine(threads: int, jobs: int) -> str:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}; {jobs} job(s) x "
            f"{threads} thread(s); load average at the end {load}")


def _stop_children(*_: Any) -> None:
    """SIGTERM: stop the runs in flight (each resumes from its last checkpoint next time)."""
    _stop_children_quietly()
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from slimssl.eval.claims import build_matrix, complete, judge, write_report

    if args.scale == "paper":
        raise NotImplementedError(
            "--scale paper is documented (slimssl.eval.claims.PAPER_SCALE and the README) but "
            "not run by this command: the papers' runs need their own ImageNet/CIFAR-100 configs "
            "per arm and a cluster; start them with slimssl pretrain --config "
            "slimclr_mocov2_r50_200ep (slimssl config list)")
    scale = SCALES[args.scale]
    seeds = args.seeds if args.seeds is not None else scale.seeds
    if args.jobs < 1 or args.threads < 1:
        raise ValueError("--jobs and --threads must be >= 1")
    out = Path(args.out or f"reproduce-{args.claim}-{args.scale}")
    claims, runs = build_matrix([args.claim], scale, seeds)
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = wanted - {label for label, _ in runs}
        if unknown:
            raise ValueError(f"--only: no run labelled {sorted(unknown)[0]!r} in this matrix; "
                             f"labels: {', '.join(sorted({lb for lb, _ in runs}))}")
        todo = {k: v for k, v in runs.items() if k[0] in wanted}
    else:
        todo = runs
    if args.report:
        todo = {}
    data = prepare_data(args.data, scale, out)
    print(f"reproduce {args.claim} at scale {scale.name}: {len(runs)} runs ({len(todo)} selected)"
          f", {seeds} seed(s), data {data}, out {out.resolve()}, {args.jobs} job(s) x "
          f"{args.threads} thread(s)", flush=True)
    if args.dry_run:
        for spec in todo.values():
            print(f"  {spec.name}: {spec.config} {' '.join(spec.overrides)}")
        return 0
    start = time.perf_counter()
    old = signal.signal(signal.SIGTERM, _stop_children)
    pool = ThreadPoolExecutor(args.jobs)
    done = []
    try:
        futures = [pool.submit(run_one, spec, data, out, scale, args.threads)
                   for spec in todo.values()]
        for f in futures:
            done.append(f.result())
            print(f"  {done[-1]['name']}: {done[-1]['status']}", flush=True)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_children_quietly()
        print("reproduce: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        signal.signal(signal.SIGTERM, old)
    wall = time.perf_counter() - start
    results = {(label, seed): read_rows(out / "runs" / spec.name)
               for (label, seed), spec in runs.items()}
    queries = count_queries(data)
    judged = judge(claims, results, seeds, queries)
    pending = sorted(spec.name for key, spec in runs.items()
                     if not complete(results[key], scale.linear_epochs > 0))
    timings = {}
    for spec in runs.values():
        t = out / "logs" / f"{spec.name}.json"
        if t.exists():
            timings[spec.name] = json.loads(t.read_text())["seconds"]
    drift = {spec.name: d for spec in runs.values() if (d := config_drift(spec, out / "runs" /
                                                                        spec.name))}
    meta = {"command": command_line(args),
            "scale": scale.name, "seeds": seeds, "queries": queries, "data": data,
            "machine": _machine(args.threads, args.jobs), "wall_s": wall,
            "runs_total": len(runs), "pending": pending, "config_drift": drift,
            "run_seconds": timings, "runs": {s.name: {"label": s.label, "seed": s.seed,
                                                      "config": s.config,
                                                      "overrides": list(s.overrides)}
                                             for s in runs.values()}}
    paths = write_report(out, judged, meta)
    for name, c in judged.items():
        print(f"{name}: {c['verdict']}")
    if pending:
        print(f"partial report: {len(runs) - len(pending)} of {len(runs)} runs complete "
              f"({len(pending)} pending); run the same command without --report to continue")
    print(f"wrote {paths['md']}, {paths['json'].name}, {paths['png'].name}")
    failed = [r for r in done if r["status"].startswith("failed")]
    for r in failed:
        print(f"reproduce: {r['name']} {r['status']}", file=sys.stderr)
    return 1 if failed else 0


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this report (the options that change what runs)."""
    parts = ["slimssl", "reproduce", args.claim, "--scale", args.scale]
    for flag, value in (("--data", args.data), ("--seeds", args.seeds), ("--out", args.out),
                        ("--jobs", args.jobs), ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts)


def _stop_children_quietly() -> None:
    with _LIVE_LOCK:
        for proc in list(_LIVE):
            proc.terminate()


def add_parser(sub) -> None:
    from slimssl.eval.claims import scale_table

    p = sub.add_parser("reproduce", help="run the papers' central claims (SlimCLR Table 1, US3L "
                       "Table 1, DSPNet Fig. 5) at a scale your hardware affords, with verdicts",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="scales:\n" + scale_table())
    p.add_argument("claim", choices=[*CLAIMS, "all"])
    p.add_argument("--scale", required=True, choices=[*SCALES, "paper"],
                   help="smoke: CI, seconds (digits); cpu: 2 cores, 5.7-6.8 h for all; "
                        "cpu20: cpu at 20 px, 4.1 h; gpu: one GPU, ~10 min for all; "
                        "paper: the papers' settings (documented only)")
    p.add_argument("--data", help="dataset folder (cpu/gpu: CIFAR-10 ImageFolder with train/ and "
                                  "test/); smoke defaults to the built-in digits")
    p.add_argument("--seeds", type=int, help="seeds per run (default: the scale's)")
    p.add_argument("--out", help="output folder (default: reproduce-CLAIM-SCALE)")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (subprocesses)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--only", help="comma-separated run labels to train now (default: all); the "
                                  "report covers every run already finished")
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    p.add_argument("--report", action="store_true",
                   help="train nothing: write claims.{md,json,png} from the runs finished so far "
                        "(a partial report names the pending runs; their rows read 'missing')")
    p.set_defaults(func=run)
