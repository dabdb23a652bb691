"""kNN accuracy of a randomly initialised slimmable ResNet-18 on CIFAR-10, and what kNN costs.

Why: a kNN score only means something against the score of features nobody trained. Every
self-supervised run must beat this baseline at every width (issue 6; kNN protocol of InstDisc,
Wu et al. 2018, k = 200 and T = 0.1, plus k = 20 as in DSPNet appendix 0.A.2). The wall time
says how long the per-width kNN evaluation of ``slimssl knn`` takes on this machine's CPU.

The network is ``resnet18`` with the CIFAR stem at widths 1, .75, .5, .25 (switchable BN, eval
mode, i.e. the freshly initialised running statistics), seeded. Features are extracted once per
width for the bank (train split) and the queries (test split); search and vote use
:func:`slimssl.eval.knn.knn_accuracy`.

A ResNet-18 forward pass on 2 shared CPU cores runs at only tens of images per second at full
width, so by default a seeded class-balanced subset of both splits is used (``--bank``,
``--queries``; 0 = the whole split). The JSON records the subset sizes, the measured seconds
per stage, and the time extrapolated to the full 50,000 x 10,000 protocol (extraction scales
with the number of images, the search with bank x queries).

Usage::

    python benchmarks/knn_random_init_cifar10.py [--data DIR] [--bank 10000] [--queries 2000]
        [--threads 2] [--batch-size 256]

Writes ``benchmarks/results/knn_random_init_cifar10.json``.
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

from slimssl.data import balanced_subset, eval_transform, load_dataset  # noqa: E402
from slimssl.eval.features import extract_features  # noqa: E402
from slimssl.eval.knn import knn_accuracy  # noqa: E402
from slimssl.models.registry import create  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "knn_random_init_cifar10.json"
DEFAULT_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg"
WIDTHS = (1.0, 0.75, 0.5, 0.25)
KS = (200, 20)
TEMPERATURE = 0.1


def _subset(dataset, count: int, seed: int):
    """The whole split for ``count`` 0, else a seeded class-balanced subset of ``count`` images."""
    if count <= 0 or count >= len(dataset):
        return dataset
    return dataset.subset(balanced_subset(dataset.labels, count=count, seed=seed))


def measure(data: Path, bank: int, queries: int, batch_size: int, seed: int) -> dict:
    """Accuracy and seconds per width; prints one progress line per stage."""
    start = time.perf_counter()
    train = load_dataset(data, "train", 32)
    test = load_dataset(data, "test", 32)
    load_s = time.perf_counter() - start
    full_bank, full_queries = len(train), len(test)
    train, test = _subset(train, bank, seed), _subset(test, queries, seed + 1)
    print(f"decoded {full_bank} + {full_queries} images in {load_s:.1f}s; bank {len(train)}, "
          f"queries {len(test)}", flush=True)
    transform = eval_transform(train.mean, train.std)
    torch.manual_seed(seed)
    model = create("resnet18", widths=list(WIDTHS), stem="cifar").eval()
    rows = []
    for w in WIDTHS:
        t0 = time.perf_counter()
        bank_f = extract_features(model, w, train.images, transform, batch_size)
        query_f = extract_features(model, w, test.images, transform, batch_size)
        t1 = time.perf_counter()
        acc = knn_accuracy(bank_f, train.labels, query_f, test.labels, 10, KS, TEMPERATURE)
        t2 = time.perf_counter()
        n_img = len(train) + len(test)
        scale = (full_bank * full_queries) / (len(train) * len(test))
        row = {
            "width": w,
            "feature_dim": int(bank_f.shape[1]),
            **{f"knn_top1_k{k}": round(acc[k], 2) for k in KS},
            "extract_seconds": round(t1 - t0, 1),
            "search_seconds": round(t2 - t1, 2),
            "images_per_second": round(n_img / (t1 - t0), 1),
            "full_protocol_seconds_estimate": round(
                (t1 - t0) * (full_bank + full_queries) / n_img + (t2 - t1) * scale, 0),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    return {
        "bank": len(train),
        "queries": len(test),
        "full_bank": full_bank,
        "full_queries": full_queries,
        "subset": "seeded class-balanced (slimssl.data.balanced_subset)"
                  if (len(train), len(test)) != (full_bank, full_queries) else "none",
        "subset_seeds": {"bank": seed, "queries": seed + 1},
        "decode_seconds": round(load_s, 1),
        "rows": rows,
        "total_seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_CIFAR)
    parser.add_argument("--bank", type=int, default=10000, help="bank images (0 = all 50,000)")
    parser.add_argument("--queries", type=int, default=2000, help="query images (0 = all 10,000)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "device": "cpu"},
        "model": "resnet18, CIFAR stem, switchable BN, random init (seeded), eval mode",
        "protocol": {"ks": list(KS), "temperature": TEMPERATURE, "image_size": 32,
                     "batch_size": args.batch_size},
        **measure(args.data, args.bank, args.queries, args.batch_size, args.seed),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
