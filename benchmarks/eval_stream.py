"""Feature extraction streamed from a JPEG folder vs decoded into memory (issue 21).

On subsets of the CIFAR-10 JPEG folder (2,500 and 10,000 images: the first N/10 files of each
class of ``train/``, linked into a temporary ImageFolder), every member of a slimmable
``resnet10_narrow`` (widths 1, .75, .5, .25; CIFAR stem, 32 px, random init: the cost does not
depend on the weights) embeds every image, one torch thread:

* ``memory``: ``data.mode: memory`` -- decode the whole folder into one uint8 tensor (the
  library's decoder thread pool), then one pass of the frozen family over it;
* ``stream``: ``data.mode: stream`` -- one DataLoader worker decodes batch by batch
  (``max_images_held`` caps what is alive) while the family embeds, and the features go to
  shards on disk (:class:`slimssl.eval.feature_store.FeatureStore`), as ``slimssl knn`` does;
* ``stream_0workers``: the same, decoding in the main process between batches.

Each mode runs in its own fresh process (``--child``), so ``ru_maxrss`` is that mode's peak
resident memory (workers: the largest child's). Reported: end-to-end img/s (folder to
features) and its parts, peak RSS. Modes alternate over ``--repeats``; medians are reported.

    python benchmarks/eval_stream.py            # writes benchmarks/results/eval_stream.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import CIFAR_DIR, ROOT, loadavg, machine_info, write_result  # noqa: E402

MODES = {"memory": {"num_workers": 0}, "stream": {"num_workers": 1},
         "stream_0workers": {"num_workers": 0}}


def link_subset(source: Path, dest: Path, images: int) -> Path:
    """``dest/train/<class>/`` with symlinks to the first ``images / classes`` files of each
    class folder of ``source/train`` (the folder's own order)."""
    classes = sorted(p for p in (source / "train").iterdir() if p.is_dir())
    per_class = images // len(classes)
    for c in classes:
        out = dest / "train" / c.name
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted(c.iterdir())[:per_class]:
            (out / f.name).symlink_to(f)
    return dest


def _private_mb(pid: int) -> float:
    """Private (not shared with the parent) resident memory of a process, from smaps_rollup."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0.0
    kb = sum(int(line.split()[1]) for line in text.splitlines()
             if line.startswith(("Private_Clean:", "Private_Dirty:")))
    return kb / 1024


class WorkerMemory:
    """Polls the private memory of this process's children (DataLoader workers) every 0.1 s;
    ``peak_mb`` is the largest sum seen. (``RUSAGE_CHILDREN`` would count the pages a forked
    worker shares with its parent, and this torch build forks a 600 MB helper at import.)"""

    def __init__(self) -> None:
        import threading

        self.peak_mb, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _children(self) -> list[int]:
        pids = []
        for task in Path("/proc/self/task").iterdir():
            try:
                pids += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                pass
        return pids

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak_mb = max(self.peak_mb, sum(_private_mb(p) for p in self._children()))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_mb


def child(folder: str, mode: str, batch: int, max_images_held: int, out: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from slimssl.data import eval_transform, load_dataset
    from slimssl.eval.feature_store import FeatureStore, state_fingerprint
    from slimssl.eval.linear_eval import FrozenFamily
    from slimssl.models.registry import create

    torch.manual_seed(0)
    model = create("resnet10_narrow", widths=[1.0, 0.75, 0.5, 0.25], stem="cifar",
                   num_classes=0).eval()
    specs = model.family()
    family = FrozenFamily(model, specs)
    workers = MODES[mode]["num_workers"]
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers_memory = WorkerMemory()
    t0 = time.perf_counter()
    data_mode = "memory" if mode == "memory" else "stream"
    train = load_dataset(folder, "train", 32, mode=data_mode)
    transform = eval_transform(train.mean, train.std)
    t_load = time.perf_counter() - t0
    if data_mode == "memory":
        feats = family.features(train, transform, batch)
        dims = [int(f.shape[1]) for f in feats.values()]
    else:
        store = FeatureStore(out, state_fingerprint(model), {"image_size": 32}, refresh=True)
        feats = store.extract(lambda: family, specs, train, "train", transform, batch,
                              num_workers=workers, max_images_held=max_images_held)
        dims = [f.dim for f in feats.values()]
    total = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"mode": mode, "images": len(train), "members": len(specs), "feature_dims": dims,
            "num_workers": workers, "batch": batch,
            "max_images_held": None if data_mode == "memory" else max_images_held,
            "load_s": t_load, "extract_s": total - t_load, "total_s": total,
            "img_per_s": len(train) / total,
            "peak_rss_mb": peak / 1024, "rss_before_data_mb": rss_start / 1024,
            "peak_rss_added_mb": (peak - rss_start) / 1024,
            "workers_private_peak_mb": workers_memory.stop()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="2500,10000",
                   help="comma-separated subset sizes (the memory path grows with it)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--max-images-held", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--modes", default="memory,stream,stream_0workers")
    p.add_argument("--name", default="eval_stream")
    p.add_argument("--child", nargs=3, metavar=("FOLDER", "MODE", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.batch, args.max_images_held,
                               args.child[2])))
        return
    if not (CIFAR_DIR / "train").is_dir():
        raise SystemExit(f"needs the CIFAR-10 JPEG folder at {CIFAR_DIR}")
    modes = [m.strip() for m in args.modes.split(",")]
    sizes = [int(n) for n in args.images.split(",")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    info = machine_info(1)
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    info["lscpu_model"] = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                                if line.startswith("Model name")), None)
    runs: dict[str, dict[str, list[dict]]] = {str(n): {m: [] for m in modes} for n in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = link_subset(CIFAR_DIR, Path(tmp) / f"cifar_{n}", n)
            for r in range(args.repeats):
                for mode in modes:
                    cmd = [sys.executable, __file__, "--batch", str(args.batch),
                           "--max-images-held", str(args.max_images_held), "--child",
                           str(folder), mode, str(Path(tmp) / f"features_{mode}")]
                    out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                                         check=True)
                    row = json.loads(out.stdout.strip().splitlines()[-1])
                    row["loadavg"] = loadavg()
                    runs[str(n)][mode].append(row)
                    print(f"{n} images, repeat {r + 1}, {mode}: {row['img_per_s']:.0f} img/s, "
                          f"peak RSS {row['peak_rss_mb']:.0f} MB ({row['peak_rss_added_mb']:.0f} "
                          f"MB above the model; workers' private memory "
                          f"{row['workers_private_peak_mb']:.0f} MB), load {row['loadavg'][0]}",
                          flush=True)
    keys = ("img_per_s", "load_s", "extract_s", "total_s", "peak_rss_mb", "rss_before_data_mb",
            "peak_rss_added_mb", "workers_private_peak_mb")
    summary = {n: {m: {k: statistics.median(r[k] for r in rows) for k in keys}
                   for m, rows in per.items()} for n, per in runs.items()}
    for per in summary.values():
        if "memory" in per:
            for m in per:
                per[m]["speed_vs_memory"] = per[m]["img_per_s"] / per["memory"]["img_per_s"]
    result = {"machine": info, "loadavg_at_end": loadavg(),
              "setup": {"images": sizes, "source": str(CIFAR_DIR), "model": "resnet10_narrow",
                        "widths": [1.0, 0.75, 0.5, 0.25], "image_size": 32, "torch_threads": 1,
                        "batch": args.batch, "max_images_held": args.max_images_held,
                        "repeats": args.repeats,
                        "memory_decoder_threads": min(4, os.cpu_count() or 1)},
              "median": summary, "runs": runs}
    path = write_result(args.name, result)
    print(json.dumps(summary, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
