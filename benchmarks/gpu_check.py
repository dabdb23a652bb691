"""The GPU check (issue 18.3): one script that records what slimssl does on one GPU.

Sections (each prints and is saved in ``benchmarks/results/gpu_check[_smoke].json``):

1. ``device``: the card (name, capability, memory), torch / CUDA versions.
2. ``step_cost``: SlimCLR / DSPNet / US3L slimmable step against the vanilla step of the same
   method (``bench_step_cost.measure``: real ``Trainer.train_step``, alternated, medians), with
   AMP bf16 + channels_last (+ ``torch.compile`` with ``--compile``), next to the FLOP limit.
   Goal (issue 18): SlimCLR <= 1.8x vanilla on a GPU (the SlimCLR paper reports 2.25x).
3. ``throughput``: training img/s of MoCo v2 on ResNet-18 (CIFAR stem, 32 px, batch 512) and
   ResNet-50 (224 px, batch 128), and img/s of the two-view augmentation alone on the same
   batch: the data pipeline is not the bottleneck when augmentation img/s >> step img/s.
4. ``memory``: peak ``torch.cuda.max_memory_allocated`` of a SlimCLR step in ``sum`` and
   ``accumulate`` update modes (fresh process each, ``bench_memory.py``).
5. ``run``: a short SlimCLR-MoCov2 pre-training (ResNet-18, CIFAR-10 at 32 px, widths
   [1, .75, .5, .25]; about 3 minutes on one H200-class GPU) through ``slimssl pretrain``:
   its epoch losses must fall and every member's kNN@200 must beat the same network at random
   initialisation.
6. ``host_sync``: ``torch.profiler`` over training steps between two log steps: the number of
   device-to-host reads (``aten::_local_scalar_dense``: ``.item()``, ``float(t)``, ``bool(t)``)
   per step must be at most 1 (the stacked non-finite flag that decides whether the optimizer
   steps, as GradScaler reads its found-inf flag); log values are read only at log steps.

``--smoke`` runs every section on the CPU in a tiny mode (resnet10_narrow, 16 px, a few steps,
the embedded digits data for the run) in well under 3 minutes: CI calls it so the script cannot
rot. In smoke mode sections 2-4 report figures that mean nothing about a GPU, and the learning
check of section 5 is reported, not enforced (a few CPU steps do not learn); the host-sync
check is enforced in both modes.

Usage::

    bash benchmarks/gpu_check.sh [--smoke] [--data ../shared/data/cifar10-jpeg] [--compile]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CIFAR_DIR, RESULTS_DIR, loadavg, machine_info, make_trainer, temp_run_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def section_device() -> dict:
    info = machine_info(torch.get_num_threads())
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}",
                    gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    bf16_supported=torch.cuda.is_bf16_supported())
    print(f"device: {info.get('gpu') or info['cpu']} | torch {torch.__version__}")
    return info


def section_step_cost(args, fast: list[str]) -> list[dict]:
    from bench_step_cost import measure

    if args.smoke:
        shared = ["data.path=synthetic", "data.image_size=16", "data.batch_size=16",
                  "model.arch=resnet10_narrow", "method.queue_size=256", "method.bn_splits=1"]
        repeats, size = 2, 16
    else:
        shared = ["data.path=synthetic", "data.image_size=32", "data.batch_size=256",
                  "model.arch=resnet18", "method.queue_size=4096", "method.bn_splits=1"]
        repeats, size = 10, 32
    out = []
    for recipe in ("slimclr", "dspnet", "us3l"):
        run_shared = shared + fast
        if recipe == "dspnet":  # DSPNet's depth choices need two blocks per stage
            run_shared = [s if not s.startswith("model.arch") else "model.arch=resnet18"
                          for s in run_shared]
        r = measure(recipe, run_shared, repeats, size)
        r.pop("timings", None)
        print(f"step_cost {recipe}: sum {r['ratio_sum']:.2f}x, accumulate "
              f"{r['ratio_accumulate']:.2f}x vanilla (FLOP limit {r['flop_limit']:.2f}x); "
              f"vanilla {r['vanilla_step_s'] * 1000:.1f} ms/step")
        out.append(r)
    return out


def _time_steps(trainer, images: torch.Tensor, steps: int) -> float:
    epoch = float(trainer.cfg.train.epochs) - 0.01
    trainer.train_step(images, epoch)  # warm-up (allocator, cudnn autotune, compile)
    trainer.train_step(images, epoch)
    sync(trainer.device)
    t0 = time.perf_counter()
    for _ in range(steps):
        trainer.train_step(images, epoch)
    sync(trainer.device)
    return time.perf_counter() - t0


def section_throughput(args, fast: list[str]) -> list[dict]:
    if args.smoke:
        cases = [("resnet10_narrow", "cifar", 16, 16)]
        steps = 2
    else:
        cases = [("resnet18", "cifar", 32, 512), ("resnet50", "imagenet", 224, 128)]
        steps = 20
    out = []
    for arch, stem, size, batch in cases:
        with temp_run_dir() as d:
            t = make_trainer("individual_mocov2_cifar10", [
                "data.path=synthetic", f"data.image_size={size}", f"data.batch_size={batch}",
                f"model.arch={arch}", f"model.stem={stem}", "method.bn_splits=1",
                "method.queue_size=4096", *fast], d)
            images = next(iter(t.loader))[0].to(t.device)
            step_s = _time_steps(t, images, steps) / steps
            sync(t.device)
            t0 = time.perf_counter()
            for _ in range(steps):
                t.views(images, t.aug_generator)
            sync(t.device)
            aug_s = (time.perf_counter() - t0) / steps
        row = {"arch": arch, "stem": stem, "image_size": size, "batch": batch,
               "train_img_per_s": round(batch / step_s, 1),
               "augment_img_per_s": round(batch / aug_s, 1),
               "augment_share_of_step": round(aug_s / step_s, 3)}
        print(f"throughput {arch} {size}px batch {batch}: {row['train_img_per_s']} img/s "
              f"training, augmentation alone {row['augment_img_per_s']} img/s "
              f"({100 * row['augment_share_of_step']:.1f}% of a step)")
        out.append(row)
    return out


def section_memory(args, fast: list[str]) -> dict:
    name = "gpu_check_memory" + ("_smoke" if args.smoke else "")
    argv = [sys.executable, str(ROOT / "benchmarks" / "bench_memory.py"), "--out", name]
    if args.smoke:
        argv += ["--arch", "resnet10_narrow", "--image-size", "16", "--batch", "16", "--steps", "1"]
    else:
        argv += ["--arch", "resnet18", "--image-size", "32", "--batch", "256", "--steps", "3"]
    for s in fast:
        argv += ["--set", s]
    subprocess.run(argv, check=True, cwd=ROOT)
    res = json.loads((RESULTS_DIR / f"{name}.json").read_text())
    return {k: v for k, v in res.items() if k != "machine"}


def section_run(args) -> dict:
    with temp_run_dir() as d:  # removed afterwards: repeated checks must not fill the disk
        return _run_once(args, Path(d) / "run")


def _run_once(args, out: Path) -> dict:
    if args.smoke:
        argv = ["pretrain", "--out-dir", str(out), "--epochs", "3", "--set", "train.seed=0",
                "--set", "data.batch_size=64", "--set", "eval.knn_every_epochs=0"]
    else:
        data = args.data or str(CIFAR_DIR)
        argv = ["pretrain", "--config", str(ROOT / "configs" / "slimclr_mocov2_cifar10.yaml"),
                "--data", data, "--out-dir", str(out), "--epochs", str(args.run_epochs),
                "--set", "data.batch_size=512", "--set", "method.queue_size=4096",
                "--set", "method.bn_splits=1", "--set", "optim.warmup_epochs=1",
                "--set", "data.num_workers=8", "--set", "eval.knn_every_epochs=0"]
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "slimssl.cli", *argv], check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
              if line.strip()]
    losses = [e["loss"] for e in epochs if e.get("kind") == "epoch" and "loss" in e]
    rows = json.loads((out / "results.json").read_text())["rows"]
    members = [{"member": r["subnet"], "knn200": r.get("knn_top1_k200"),
                "random_init_knn200": r.get("knn_random_init")} for r in rows]
    falls = len(losses) >= 2 and losses[-1] < losses[0]
    beats = all(m["knn200"] is not None and m["random_init_knn200"] is not None
                and m["knn200"] > m["random_init_knn200"] for m in members)
    print(f"run: {wall:.0f} s; epoch losses {[round(x, 3) for x in losses]}; "
          + "; ".join(f"{m['member']} kNN {m['knn200']} vs random {m['random_init_knn200']}"
                      for m in members))
    return {"wall_s": round(wall, 1), "epoch_losses": losses, "members": members,
            "losses_fall": falls, "knn_beats_random_init": beats, "argv": argv}


def section_host_sync(args, fast: list[str]) -> dict:
    from torch.profiler import ProfilerActivity, profile

    size, batch, arch = (16, 16, "resnet10_narrow") if args.smoke else (32, 256, "resnet18")
    with temp_run_dir() as d:
        t = make_trainer("slimclr_mocov2_cifar10", [
            "data.path=synthetic", f"data.image_size={size}", f"data.batch_size={batch}",
            f"model.arch={arch}", "method.bn_splits=1", "method.queue_size=1024",
            "train.log_every=1000", *fast], d)
        images = next(iter(t.loader))[0].to(t.device)
        epoch = float(t.cfg.train.epochs) - 0.01
        t.train_step(images, epoch)
        t.state.global_step = 1  # not a log step: steps 2..4 of a run with log_every=1000
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if t.device.type == "cuda" else [])
        steps = 3
        with profile(activities=acts) as prof:
            for _ in range(steps):
                t.train_step(images, epoch, read_logs=False)
                t.state.global_step += 1
            sync(t.device)
    names = {}
    for e in prof.events():
        if e.name in ("aten::_local_scalar_dense", "cudaStreamSynchronize",
                      "cudaDeviceSynchronize", "aten::item"):
            names[e.name] = names.get(e.name, 0) + 1
    reads = names.get("aten::_local_scalar_dense", 0)
    ok = reads <= steps  # one per step: the non-finite flag that decides the optimizer step
    print(f"host_sync: {reads / steps:.1f} device-to-host reads per non-log step (<= 1) "
          f"({'OK' if ok else 'FAIL: the step waits on the host'}); events {names}")
    return {"reads_per_step": reads / steps, "events": names, "ok": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny CPU mode (CI)")
    ap.add_argument("--data", default=None, help="CIFAR-10 folder for the run section")
    ap.add_argument("--compile", action="store_true", help="also torch.compile the online net")
    ap.add_argument("--run-epochs", type=int, default=15)
    ap.add_argument("--sections", default="device,step_cost,throughput,memory,run,host_sync")
    args = ap.parse_args()
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device; use --smoke for the CPU mode")
    if args.smoke:
        torch.set_num_threads(1)  # robust on a shared CPU (spinning OpenMP teams under load)
    fast = [] if args.smoke else ["train.amp=bf16", "train.channels_last=true"]
    if args.compile:
        fast.append("train.compile=true")
    result: dict = {"smoke": args.smoke, "args": vars(args), "fast_overrides": fast}
    t0 = time.perf_counter()
    wanted = args.sections.split(",")
    fns = {"device": lambda: section_device(),
           "step_cost": lambda: section_step_cost(args, fast),
           "throughput": lambda: section_throughput(args, fast),
           "memory": lambda: section_memory(args, fast),
           "run": lambda: section_run(args),
           "host_sync": lambda: section_host_sync(args, fast)}
    for name in wanted:
        s = time.perf_counter()
        result[name] = fns[name]()
        print(f"[{name}: {time.perf_counter() - s:.0f} s]", flush=True)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    result["loadavg_at_end"] = loadavg()
    name = "gpu_check_smoke" if args.smoke else "gpu_check"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(f"wrote {RESULTS_DIR / name}.json ({result['total_s']:.0f} s)")
    failures = []
    if "host_sync" in result and not result["host_sync"]["ok"]:
        failures.append("a training step reads values back from the device")
    if not args.smoke and "run" in result:
        if not result["run"]["losses_fall"]:
            failures.append("the run's losses did not fall")
        if not result["run"]["knn_beats_random_init"]:
            failures.append("a member's kNN did not beat random initialisation")
    if failures:
        sys.exit("gpu_check FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
