"""Evaluate, export and tabulate a pre-trained family (shared by ``pretrain`` and ``knn``)."""

from __future__ import annotations

from pathlib import Path

import torch

from slimssl.engine.config import Config
from slimssl.nn.switch import SlimmableModel


def feature_store(cfg: Config, backbone: SlimmableModel, directory: Path, refresh: bool = False,
                  distributed: bool = False):
    """The run's feature cache for ``backbone`` (``<run>/features``; see
    :mod:`slimssl.eval.feature_store`), keyed by its weights, the evaluation transform and the
    BN recalibration it needs."""
    from slimssl.eval.family import needs_recalibration
    from slimssl.eval.feature_store import FeatureStore, state_fingerprint

    d = cfg.data
    settings = {"image_size": d.image_size, "normalise": "train split mean/std",
                "recalib_images": cfg.eval.recalib_images if needs_recalibration(backbone) else 0}
    return FeatureStore(directory, state_fingerprint(backbone), settings, refresh=refresh,
                        distributed=distributed)


def evaluate_and_export(cfg: Config, backbone: SlimmableModel, run_dir: Path,
                        label: str, distributed: bool = False,
                        refresh_features: bool = False) -> list[dict]:
    """kNN per member on the held-out split, export of every member, params/MACs of the exports,
    ``results.{json,csv,md}``, ``accuracy_vs_macs.png`` and a printed table.

    Features are cached in ``<run>/features`` (reused by later commands, refused when the
    weights changed unless ``refresh_features``). ``distributed``: every ``torchrun`` rank
    calls this and shares the kNN work; only rank 0 exports and writes the results."""
    from slimssl.data import load_split
    from slimssl.data.views import eval_transform
    from slimssl.dist import is_main
    from slimssl.eval.family import bn_cache_for, knn_family, recalibrate_if_universal
    from slimssl.eval.plot import plot_accuracy_vs_macs
    from slimssl.eval.report import format_table, merge_results
    from slimssl.export.extract import extract_subnet
    from slimssl.export.io import save_subnet
    from slimssl.export.profile import count_macs, count_params
    from slimssl.engine.build import build_backbone

    d = cfg.data
    train_set = load_split(d, "train", cfg.train.seed)
    test_set = load_split(d, "test", cfg.train.seed)
    specs = backbone.family()
    ks = sorted({cfg.eval.knn_k, 20}, reverse=True)
    backbone.eval()
    cache = bn_cache_for(backbone, run_dir, {"images": cfg.eval.recalib_images,
                                             "data": str(d.path), "size": d.image_size})
    loading = dict(num_workers=d.num_workers, max_images_held=d.max_images_held,
                   log=print if is_main() else None)
    store = feature_store(cfg, backbone, run_dir / "features", refresh_features, distributed)
    # the weighted (InstDisc) columns always; DSPNet's majority vote too when asked (dspnet runs)
    votes = ("weighted",) if cfg.eval.knn_vote == "weighted" else ("weighted", cfg.eval.knn_vote)
    rows = knn_family(backbone, specs, train_set, test_set, ks, cfg.eval.knn_t,
                      recalib_images=cfg.eval.recalib_images, cache=cache, store=store,
                      votes=votes, **loading)
    if cfg.eval.random_init_baseline:
        torch.manual_seed(cfg.train.seed)  # the run's own initialisation, never trained
        random_net = build_backbone(cfg).to(next(backbone.parameters()).device)
        random_store = feature_store(cfg, random_net, run_dir / "features" / "random_init",
                                     refresh_features, distributed)
        base = knn_family(random_net, specs, train_set, test_set, ks, cfg.eval.knn_t,
                          recalib_images=cfg.eval.recalib_images, store=random_store, **loading)
        for row, b in zip(rows, base):
            row["knn_random_init"] = b[f"knn_top1_k{ks[0]}"]
    if not is_main():
        return rows
    transform = eval_transform(train_set.mean, train_set.std)
    for spec, row in zip(specs, rows):
        recalibrate_if_universal(backbone, spec, train_set, transform,
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
