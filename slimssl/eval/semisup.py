"""Semi-supervised evaluation of every sub-network on a 1% / 10% labelled subset.

Protocol of DSPNet appendix 0.A.3 (following SwAV): the training set is replaced by a seeded,
class-balanced 1% or 10% subset, saved to the run directory so that every member and every
re-run sees the same labels. Two variants:

* ``finetune`` (DSPNet's default, Fig. 5): backbone AND classifier train, with distinct learning
  rates 0.001 (backbone) and 0.02 (classifier). Members share weights, so each member is
  fine-tuned on its own copy of the backbone; its score is that of the fine-tuned member alone.
* ``linear`` (DSPNet Tab. 1b, as SEED/DisCo): a linear classifier on frozen features,
  configured as the DSPNet linear probe (0.A.2) but lr 0.02 for 50 epochs -- one switchable
  probe per member, all trained in one pass by :mod:`slimssl.eval.linear_eval`.

DSPNet does not state the fine-tuning epochs or schedule; :class:`FinetuneRecipe` defaults to
20 epochs, batch 256, SGD momentum 0.9 with cosine decay (both rates decay together).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimssl.data import eval_transform, ordered_batches
from slimssl.data.subset import balanced_subset, load_subset, save_subset
from slimssl.eval.features import Recalibrate
from slimssl.dist import all_reduce_mean_tensors_, get_world_size
from slimssl.eval.linear_eval import (SEMISUP_LINEAR, FrozenFamily, Log, Mode, ProbeRecipe,
                                      linear_eval, linear_view, rank_view, sharded_batches,
                                      stored_size)
from slimssl.nn.calibrate import average_running_stats_
from slimssl.schedule import schedule_scale, set_lr

__all__ = ["FinetuneRecipe", "subset_path", "labelled_subset", "finetune_member",
           "finetune_family", "semisup_linear", "fraction_tag", "classify_family"]


@dataclass(frozen=True)
class FinetuneRecipe:
    """Fine-tuning hyper-parameters (DSPNet 0.A.3 learning rates; epochs/schedule our choice)."""

    epochs: int = 20
    backbone_lr: float = 0.001
    head_lr: float = 0.02
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 0.0


def fraction_tag(fraction: float) -> str:
    """``0.01 -> "1pct"``: names subset files and results columns
    (``semisup_{protocol}_{tag}_top1``, see :mod:`slimssl.eval.report`)."""
    return f"{fraction * 100:g}pct"


def subset_path(run_dir: str | Path, fraction: float, seed: int) -> Path:
    """Where the labelled subset of ``fraction`` and ``seed`` lives in a run directory."""
    return Path(run_dir) / "subsets" / f"labelled_{fraction_tag(fraction)}_seed{seed}.json"


def labelled_subset(labels: torch.Tensor, fraction: float, run_dir: str | Path,
                    seed: int = 0) -> tuple[torch.Tensor, Path]:
    """Indices of the class-balanced ``fraction`` subset, saved to (or re-read from) the run.

    A saved subset is reused only if it was drawn from a training set of the same size, so a
    changed dataset can never be paired silently with stale indices."""
    path = subset_path(run_dir, fraction, seed)
    if path.exists():
        meta = json.loads(path.read_text())
        if meta.get("num_train") == int(labels.numel()):
            return load_subset(path), path
    idx = balanced_subset(labels, fraction=fraction, seed=seed)
    save_subset(idx, path, fraction=fraction, seed=seed, num_train=int(labels.numel()))
    return idx, path


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
    n = max(1, y.shape[0])
    return {"top1": 100.0 * float((top[:, 0] == y).sum()) / n,
            "top5": 100.0 * float((top == y[:, None]).any(1).sum()) / n}


def finetune_member(model: nn.Module, spec: Hashable, train_set, test_set, num_classes: int,
                    recipe: FinetuneRecipe = FinetuneRecipe(), recalibrate: Recalibrate | None = None,
                    image_size: int | None = None, seed: int = 0,
                    log: Log | None = None, num_workers: int = 0,
                    max_images_held: int | None = None) -> dict[str, float]:
    """Fine-tune a COPY of ``model`` at ``spec`` plus a new linear classifier on ``train_set``;
    ``{"top1", "top5", "feature_dim"}`` on ``test_set``. ``model`` itself is left untouched.

    Either set may be in memory or a folder streamed by ``num_workers`` DataLoader workers
    (at most ``max_images_held`` decoded images alive); batch order and crops are those of the
    in-memory path (same seeds). Under ``torchrun`` each rank trains on ``1 / world`` of every
    batch (the crops of one process) and the gradients are averaged, as in pre-training; the
    BatchNorms see their rank's rows and their statistics are averaged before the test."""
    device = next(model.parameters()).device
    net = copy.deepcopy(model)
    transform = eval_transform(train_set.mean, train_set.std, image_size)
    size = image_size or stored_size(train_set)
    view = linear_view(size, train_set.mean, train_set.std)
    loader, batches = sharded_batches(train_set, min(recipe.batch_size, len(train_set)), seed,
                                      device, num_workers, max_images_held)
    gen = torch.Generator(device=device).manual_seed(seed)
    with net.subnet(spec):
        if recalibrate is not None:
            recalibrate(net, spec)
        net.eval()
        with torch.no_grad():
            dim = net(torch.zeros(1, 3, size, size, device=device)).flatten(1).shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = nn.Linear(dim, num_classes).to(device)
        groups = [{"params": list(net.parameters()), "lr_scale": recipe.backbone_lr},
                  {"params": list(head.parameters()), "lr_scale": recipe.head_lr}]
        opt = torch.optim.SGD(groups, lr=recipe.head_lr, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay)
        total, step, start = max(1, recipe.epochs * len(loader)), 0, time.perf_counter()
        net.train()
        params = [p for g in groups for p in g["params"]]
        for epoch in range(recipe.epochs):
            for x, y, n, _, real in batches(epoch):
                set_lr(opt, schedule_scale("cosine", step, total, recipe.epochs))
                logits = head(net(rank_view(view, x, gen, n)))
                # the global batch's mean once the ranks average: each rank's mean weighted by
                # its share of the real rows (0 for a rank holding only sampler padding)
                loss = F.cross_entropy(logits[:max(real, 1)], y[:max(real, 1)]) * (
                    real * get_world_size() / n)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                all_reduce_mean_tensors_([p.grad for p in params if p.grad is not None])
                opt.step()
                step += 1
            if log is not None:
                log(f"finetune {getattr(spec, 'label', spec)} epoch {epoch + 1}/{recipe.epochs} "
                    f"loss {float(loss.detach()):.4f} ({time.perf_counter() - start:.0f} s)")
        average_running_stats_(net)
        net.eval()
        logits, labels = [], []
        with torch.no_grad():
            for x, y in ordered_batches(test_set, None, 256, num_workers, max_images_held):
                logits.append(head(net(transform(x.to(device))).flatten(1)).cpu())
                labels.append(y)
    return {**_accuracy(torch.cat(logits), torch.cat(labels)), "feature_dim": dim}


def finetune_family(model: nn.Module, specs: Sequence[Hashable], train_set, test_set,
                    num_classes: int, recipe: FinetuneRecipe = FinetuneRecipe(),
                    recalibrate: Recalibrate | None = None, image_size: int | None = None,
                    seed: int = 0, log: Log | None = None, num_workers: int = 0,
                    max_images_held: int | None = None) -> dict[Hashable, dict[str, float]]:
    """:func:`finetune_member` for every member (each from the same pre-trained weights)."""
    return {spec: finetune_member(model, spec, train_set, test_set, num_classes, recipe,
                                  recalibrate, image_size, seed, log, num_workers,
                                  max_images_held) for spec in specs}


def semisup_linear(model: nn.Module, specs: Sequence[Hashable], train_set, test_set,
                   num_classes: int, recipe: ProbeRecipe = SEMISUP_LINEAR, mode: Mode = "fast",
                   recalibrate: Recalibrate | None = None, image_size: int | None = None,
                   seed: int = 0, log: Log | None = None, **options
                   ) -> dict[Hashable, dict[str, float]]:
    """DSPNet 0.A.3 semi-supervised linear evaluation: one probe per member (switchable),
    all members in one pass on the labelled subset ``train_set``. ``options`` go to
    :func:`~slimssl.eval.linear_eval.linear_eval` (store, num_workers, max_images_held,
    checkpoint, train_split: the subset's name in the feature store)."""
    results = linear_eval(model, specs, train_set, test_set, num_classes, recipe, mode,
                          ("switchable",), recalibrate=recalibrate, image_size=image_size,
                          seed=seed, log=log, **options)
    return results["switchable"]


def classify_family(classifier: nn.Module, specs: Sequence[Hashable], test_set,
                    recalibrate: Recalibrate | None = None, batch_size: int = 256,
                    num_workers: int = 0, max_images_held: int | None = None
                    ) -> dict[Hashable, dict[str, float]]:
    """Top-1/top-5 of every member of a slimmable CLASSIFIER (backbone + slimmable head, as
    trained by ``slimssl finetune --slimmable``) on ``test_set`` (in memory or streamed).

    One pass over the split feeds every member, each with its own statistics after
    ``recalibrate(classifier, spec)`` when given (universal norm / depth families)."""
    transform = eval_transform(test_set.mean, test_set.std)
    family = FrozenFamily(classifier, specs, recalibrate)
    logits = family.features(test_set, transform, batch_size, num_workers, max_images_held)
    return {spec: _accuracy(logits[spec], test_set.labels) for spec in family.specs}
