"""Augmentation throughput of the batched two-view pipelines (slimssl.data.views).

Measures images per second (one image = both views produced) at batch 256 for:
- the MoCo v2 CIFAR recipe at 32 px (Chen et al. 2020), on real CIFAR-10 images when present;
- the default setting: the digits dataset at 32 px with the same recipe;
and, once, how long decoding the real CIFAR-10 train folder (50k JPEGs) into memory takes.

Writes ``benchmarks/results/augment.json``. Usage::

    python benchmarks/bench_augment.py [--cifar-dir DIR] [--threads N] [--repeats R] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slimssl.data import load_dataset, load_image_folder, make_views  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "augment.json"
DEFAULT_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_augment_throughput(
    recipe: str,
    image_size: int,
    batch: int,
    repeats: int,
    images: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    warmup: int = 2,
    seed: int = 0,
) -> float:
    """Images per second through ``make_views(recipe, image_size, ...)`` (both views).

    ``images``: uint8 ``(N, 3, H, W)`` pool to draw batches from (random pixels of
    ``image_size`` when None). Batches are sliced from the pool round-robin and moved to
    ``device`` before timing starts; only the augmentation is timed.
    """
    dev = torch.device(device)
    if images is None:
        g0 = torch.Generator().manual_seed(seed)
        images = torch.randint(0, 256, (batch * 4, 3, image_size, image_size), dtype=torch.uint8, generator=g0)
    n = images.shape[0]
    if n < batch:
        images = images.repeat((batch + n - 1) // n, 1, 1, 1)
        n = images.shape[0]
    starts = [(i * batch) % (n - batch + 1) for i in range(warmup + repeats)]
    batches = [images[s : s + batch].to(dev) for s in starts]
    views = make_views(recipe, image_size, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    gen = torch.Generator(device=dev).manual_seed(seed)
    for b in batches[:warmup]:
        views(b, gen)
    _sync(dev)
    t0 = time.perf_counter()
    for b in batches[warmup:]:
        views(b, gen)
    _sync(dev)
    return batch * repeats / (time.perf_counter() - t0)


def measure_torchvision_baseline(image_size: int, batch: int, repeats: int, images: torch.Tensor | None = None) -> float:
    """Images per second of the same MoCo v2 CIFAR recipe as a per-sample torchvision v2
    pipeline (the usual DataLoader-style approach), for comparison; CPU only."""
    from torchvision.transforms import v2 as T

    view = T.Compose(
        [
            T.RandomResizedCrop(image_size, scale=(0.2, 1.0), antialias=True),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.RandomHorizontalFlip(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25)),
        ]
    )
    if images is None:
        images = torch.randint(0, 256, (batch, 3, image_size, image_size), dtype=torch.uint8)
    b = images[:batch]
    torch.manual_seed(0)
    for img in b[:16]:
        view(img)
    t0 = time.perf_counter()
    for _ in range(repeats):
        torch.stack([view(img) for img in b]), torch.stack([view(img) for img in b])
    return batch * repeats / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar-dir", type=Path, default=DEFAULT_CIFAR, help="CIFAR-10 JPEG folder with train/ and test/")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared box)")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "torch": torch.__version__,
            "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        },
        "batch": args.batch,
        "repeats": args.repeats,
        "unit": "images/s, one image = both views",
        "runs": [],
    }

    cifar_images = None
    train_dir = args.cifar_dir / "train"
    if train_dir.is_dir():
        t0 = time.perf_counter()
        ds = load_image_folder(train_dir, mode="memory", num_threads=args.threads)
        secs = time.perf_counter() - t0
        cifar_images = ds.images
        result["cifar10_train_load"] = {
            "path": str(train_dir),
            "images": len(ds),
            "seconds": round(secs, 2),
            "images_per_s": round(len(ds) / secs, 1),
            "decode_threads": args.threads,
            "bytes_in_memory": int(ds.images.numel()),
        }
        print(f"decoded CIFAR-10 train ({len(ds)} JPEGs) into memory in {secs:.1f} s ({len(ds) / secs:.0f} img/s)")
    else:
        print(f"no CIFAR-10 JPEG folder at {train_dir}; using random pixels for the CIFAR run")

    digits = load_dataset(None, "train", image_size=32).images
    runs = [
        ("mocov2_cifar", 32, cifar_images, "cifar10-jpeg" if cifar_images is not None else "random"),
        ("mocov2_cifar", 32, digits, "digits (default)"),
        ("byol_cifar", 32, digits, "digits (default)"),
        ("simclr_cifar", 32, digits, "digits (default)"),
    ]
    for recipe, size, pool, data in runs:
        ips = measure_augment_throughput(recipe, size, args.batch, args.repeats, images=pool, device=args.device)
        result["runs"].append({"recipe": recipe, "image_size": size, "data": data, "images_per_s": round(ips, 1)})
        print(f"{recipe:14s} {size:4d}px {data:18s} {ips:9.0f} img/s (two views, batch {args.batch})")

    if args.device == "cpu":
        base = measure_torchvision_baseline(32, args.batch, max(1, args.repeats // 2), images=cifar_images)
        result["torchvision_v2_per_sample_mocov2_cifar_images_per_s"] = round(base, 1)
        print(f"baseline: torchvision v2 per-sample mocov2_cifar 32px {base:9.0f} img/s")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
