"""Evaluate, export and tabulate a pre-trained family (shared by ``pretrain`` and ``knn``)."""

from __future__ import annotations

from pathlib import Path

import torch

from slimssl.engine.config import Config
from slimssl.nn.switch import SlimmableModel


def evaluate_and_export(cfg: Config, backbone: SlimmableModel, run_dir: Path,
                        label: str) -> list[dict]:
    """kNN per member on the held-out split, export of every member, params/MACs of the exports,
    ``results.{json,csv,md}``, ``accuracy_vs_macs.png`` and a printed table."""
    from slimssl.data import load_dataset
    from slimssl.data.views import eval_transform
    from slimssl.eval.family import bn_cache_for, knn_family, recalibrate_if_universal
    from slimssl.eval.plot import plot_accuracy_vs_macs
    from slimssl.eval.report import format_table, merge_results
    from slimssl.export.extract import extract_subnet
    from slimssl.export.io import save_subnet
    from slimssl.export.profile import count_macs, count_params
    from slimssl.engine.build import build_backbone

    d = cfg.data
    train_set = load_dataset(d.path, "train", d.image_size, seed=cfg.train.seed,
                             cache_dir=d.cache_dir)
    test_set = load_dataset(d.path, "test", d.image_size, seed=cfg.train.seed,
                            cache_dir=d.cache_dir)
    specs = backbone.family()
    ks = sorted({cfg.eval.knn_k, 20}, reverse=True)
    backbone.eval()
    cache = bn_cache_for(backbone, run_dir, {"images": cfg.eval.recalib_images,
                                             "data": str(d.path), "size": d.image_size})
    rows = knn_family(backbone, specs, train_set, test_set, ks, cfg.eval.knn_t,
                      recalib_images=cfg.eval.recalib_images, cache=cache)
    if cfg.eval.random_init_baseline:
        torch.manual_seed(cfg.train.seed)  # the run's own initialisation, never trained
        random_net = build_backbone(cfg).to(next(backbone.parameters()).device)
        base = knn_family(random_net, specs, train_set, test_set, ks, cfg.eval.knn_t,
                          recalib_images=cfg.eval.recalib_images)
        for row, b in zip(rows, base):
            row["knn_random_init"] = b[f"knn_top1_k{ks[0]}"]
    transform = eval_transform(train_set.mean, train_set.std)
    for spec, row in zip(specs, rows):
        recalibrate_if_universal(backbone, spec, train_set.images, transform,
                                 cfg.eval.recalib_images, cache=cache)
        plain = extract_subnet(backbone, spec).cpu()
        save_subnet(plain, run_dir / "export" / spec.slug,
                    extra={"spec": spec.to_dict(), "mean": train_set.mean, "std": train_set.std,
                           "image_size": d.image_size})
        row["params_m"] = count_params(plain) / 1e6
        row["macs_g"] = count_macs(plain, d.image_size) / 1e9
    rows = merge_results(run_dir, rows)  # keeps linear/semi-sup columns of earlier commands
    plot_accuracy_vs_macs({label: rows}, f"knn_top1_k{ks[0]}", run_dir / "accuracy_vs_macs.png")
    print(format_table(rows))
    return rows
