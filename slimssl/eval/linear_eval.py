"""Linear evaluation of every sub-network: switchable AND slimmable probes trained in one pass.

The backbone is frozen (eval-mode BN, no gradient). Each step computes the features of every
member once and feeds them to every probe, so one pass over the data trains

* a ``switchable`` probe set (one ``nn.Linear`` per member; SlimCLR's choice, Sec. 3.3 and
  Appendix A: one shared layer cannot realise every member's optimal mapping), and
* a ``slimmable`` probe (one shared ``nn.Linear`` sliced per width; SlimCLR Table 3a's
  comparison point),

with optional probe distillation from the full member's probe of the same kind (SlimCLR
Sec. 4.1, temperature 1.0). Probes of different kinds share no parameters, so training them
together gives the same result as training them apart, at the cost of one backbone pass.

Two modes:

* ``augment``: the papers' protocol -- each batch is randomly cropped and flipped, then goes
  through the frozen backbone (:data:`RECIPES`: SlimCLR-MoCov2, SlimCLR-MoCov3, DSPNet 0.A.2).
* ``fast``: features of un-augmented images are cached once per member and the probes train on
  them; orders of magnitude cheaper, for small data and CPU runs.

Universal (US-Net) backbones share BN statistics across widths; pass ``recalibrate`` and each
member's recalibrated statistics are computed once and swapped in whenever that member runs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Callable, Hashable, Iterable, Iterator, Literal, Mapping, Sequence

import torch
from torch import nn

from slimssl.data import BatchAugment, eval_transform, make_loader
from slimssl.data.views import SUPERVISED_VIEW
from slimssl.eval.features import Recalibrate, features_per_subnet
from slimssl.eval.linear_probe import LinearProbes, ProbeKind, evaluate_probes, probe_loss
from slimssl.schedule import schedule_scale, set_lr

__all__ = [
    "ProbeRecipe",
    "RECIPES",
    "SEMISUP_LINEAR",
    "PROBE_KINDS",
    "LINEAR_VIEW",
    "linear_view",
    "ProbeSet",
    "FrozenFamily",
    "train_probe_set",
    "linear_eval_cached",
    "linear_eval",
    "result_rows",
]

PROBE_KINDS: tuple[ProbeKind, ...] = ("switchable", "slimmable")
Mode = Literal["fast", "augment"]
Log = Callable[[str], None]
Batches = Iterable[tuple[dict[Hashable, torch.Tensor], torch.Tensor]]


@dataclass(frozen=True)
class ProbeRecipe:
    """Hyper-parameters of one linear-probe protocol (SGD with momentum, no weight decay)."""

    name: str
    epochs: int
    lr: float
    batch_size: int
    schedule: Literal["step", "cosine"]
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    bn: bool = False

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate at optimizer step ``step`` of ``total_steps``."""
        return self.lr * schedule_scale(self.schedule, step, total_steps, self.epochs,
                                        self.milestones, self.gamma)


#: SlimCLR Sec. 4.1: MoCov2 probes -- batch 1024, 100 epochs, lr 60 divided by 10 at 60 and 80
#: (MoCo v2 itself: lr 30 at batch 256); MoCov3 probes -- batch 1024, 90 epochs, lr 0.4 cosine.
#: DSPNet 0.A.2: BN before the classifier, SGD momentum 0.9, lr 0.2 at batch 256, 80 epochs cosine.
RECIPES: dict[str, ProbeRecipe] = {
    "mocov2": ProbeRecipe("mocov2", 100, 60.0, 1024, "step", (60, 80)),
    "mocov3": ProbeRecipe("mocov3", 90, 0.4, 1024, "cosine"),
    "dspnet": ProbeRecipe("dspnet", 80, 0.2, 256, "cosine", bn=True),
}

#: DSPNet 0.A.3 semi-supervised linear evaluation: as 0.A.2 but lr 0.02 and 50 epochs.
SEMISUP_LINEAR = replace(RECIPES["dspnet"], name="semisup_linear", epochs=50, lr=0.02)

#: Augmentation of the linear-evaluation protocol (MoCo v2 / BYOL): random resized crop
#: (scale 0.08-1) and horizontal flip, no colour distortion.
LINEAR_VIEW = SUPERVISED_VIEW


def linear_view(image_size: int, mean: Sequence[float], std: Sequence[float]) -> BatchAugment:
    """The batched :data:`LINEAR_VIEW` augmentation at ``image_size``."""
    return BatchAugment(LINEAR_VIEW, image_size, mean, std)


class ProbeSet(nn.Module):
    """One :class:`LinearProbes` per probe kind over the same members; one summed loss."""

    def __init__(self, dims: Mapping[Hashable, int], num_classes: int,
                 kinds: Sequence[ProbeKind] = PROBE_KINDS, bn: bool = False) -> None:
        super().__init__()
        if not kinds:
            raise ValueError("give at least one probe kind")
        self.kinds = tuple(dict.fromkeys(kinds))
        self.probes = nn.ModuleDict({k: LinearProbes(dims, num_classes, k, bn) for k in self.kinds})
        self.teacher_key = max(dims, key=lambda key: dims[key])  # the widest member

    def loss(self, feats: Mapping[Hashable, torch.Tensor], y: torch.Tensor,
             distill: bool = False, temperature: float = 1.0) -> torch.Tensor:
        """Cross entropy of every probe (+ distillation from the widest member's probe of the
        same kind); summed over members and kinds."""
        return sum(probe_loss(self.probes[k](feats), y, self.teacher_key, distill, temperature)
                   for k in self.kinds)

    def evaluate(self, feats: Mapping[Hashable, torch.Tensor],
                 y: torch.Tensor) -> dict[str, dict[Hashable, dict[str, float]]]:
        """``{kind: {member: {"top1", "top5", "feature_dim"}}}``, accuracies in percent; the
        feature dimension shows which member's features each probe read."""
        return {k: {m: {**acc, "feature_dim": self.probes[k].dims[m]}
                    for m, acc in evaluate_probes(self.probes[k], feats, y).items()}
                for k in self.kinds}


class FrozenFamily:
    """Features of every member of a frozen slimmable backbone, with per-member BN statistics.

    ``recalibrate(model, spec)`` (universal models) runs once per member at construction; the
    resulting buffers are stored and restored whenever that member runs, so members whose
    statistics share storage do not overwrite each other.
    """

    def __init__(self, model: nn.Module, specs: Sequence[Hashable],
                 recalibrate: Recalibrate | None = None) -> None:
        self.model = model
        self.specs = list(dict.fromkeys(specs))
        self._buffers: dict[Hashable, dict[str, torch.Tensor]] = {}
        if recalibrate is not None:
            for spec in self.specs:
                with model.subnet(spec):
                    recalibrate(model, spec)
                self._buffers[spec] = {n: b.detach().clone() for n, b in model.named_buffers()}

    def prepare(self, model: nn.Module, spec: Hashable) -> None:
        """Restore ``spec``'s statistics (a :data:`Recalibrate` for ``extract_features``)."""
        saved = self._buffers.get(spec)
        if saved is not None:
            with torch.no_grad():
                for name, buf in model.named_buffers():
                    buf.copy_(saved[name])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> dict[Hashable, torch.Tensor]:
        """``{spec: (B, C_spec)}`` for a transformed batch ``x``; the model stays in eval mode."""
        was_training = self.model.training
        self.model.eval()
        out = {}
        try:
            for spec in self.specs:
                with self.model.subnet(spec):
                    self.prepare(self.model, spec)
                    out[spec] = self.model(x).flatten(1).float()
        finally:
            self.model.train(was_training)
        return out

    def features(self, images, transform, batch_size: int = 256) -> dict[Hashable, torch.Tensor]:
        """Features of a whole image tensor, once per member (CPU tensors)."""
        return features_per_subnet(self.model, self.specs, images, transform, batch_size,
                                   recalibrate=self.prepare)


def train_probe_set(probes: ProbeSet, epoch_batches: Callable[[int], Batches], epochs: int,
                    steps_per_epoch: int, recipe: ProbeRecipe, distill: bool = False,
                    log: Log | None = None) -> list[float]:
    """SGD over ``epochs`` x ``steps_per_epoch`` batches from ``epoch_batches(epoch)``; the
    learning rate follows ``recipe.lr_at`` per step. Returns the mean loss of each epoch."""
    opt = torch.optim.SGD(probes.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    total = max(1, epochs * steps_per_epoch)
    step, history = 0, []
    probes.train()
    start = time.perf_counter()
    for epoch in range(epochs):
        losses = []
        for feats, y in epoch_batches(epoch):
            lr = recipe.lr_at(step, total)
            set_lr(opt, lr)
            loss = probes.loss(feats, y, distill)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        history.append(sum(losses) / max(1, len(losses)))
        if log is not None and ((epoch + 1) % max(1, epochs // 10) == 0 or epoch + 1 == epochs):
            log(f"probe epoch {epoch + 1}/{epochs} loss {history[-1]:.4f} lr {lr:.4g} "
                f"({time.perf_counter() - start:.0f} s)")
    probes.eval()
    return history


def _cached_batches(feats: Mapping[Hashable, torch.Tensor], y: torch.Tensor, batch_size: int,
                    seed: int) -> Callable[[int], Iterator]:
    n = y.shape[0]

    def epoch_batches(epoch: int) -> Iterator:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        order = order.to(y.device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield {k: x[idx] for k, x in feats.items()}, y[idx]

    return epoch_batches


def _seeded_probes(dims: Mapping[Hashable, int], num_classes: int, kinds: Sequence[ProbeKind],
                   bn: bool, seed: int, device: torch.device) -> ProbeSet:
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
        torch.manual_seed(seed)
        return ProbeSet(dims, num_classes, kinds, bn).to(device)


def linear_eval_cached(feats_train: Mapping[Hashable, torch.Tensor], y_train: torch.Tensor,
                       feats_test: Mapping[Hashable, torch.Tensor], y_test: torch.Tensor,
                       num_classes: int, recipe: ProbeRecipe = RECIPES["dspnet"],
                       kinds: Sequence[ProbeKind] = PROBE_KINDS, distill: bool = False,
                       seed: int = 0, device: torch.device | str = "cpu",
                       log: Log | None = None) -> dict[str, dict[Hashable, dict[str, float]]]:
    """Fast mode: train every kind of probe for every member on cached features.

    Returns ``{kind: {member: {"top1", "top5"}}}`` on the test features."""
    if set(feats_train) != set(feats_test):
        raise ValueError("train and test features must cover the same members")
    dev = torch.device(device)
    xs = {k: x.to(dev, torch.float32) for k, x in feats_train.items()}
    y = y_train.to(dev, torch.long)
    n = y.shape[0]
    bs = max(1, min(recipe.batch_size, n))
    probes = _seeded_probes({k: x.shape[1] for k, x in xs.items()}, num_classes, kinds,
                            recipe.bn, seed, dev)
    train_probe_set(probes, _cached_batches(xs, y, bs, seed), recipe.epochs, math.ceil(n / bs),
                    recipe, distill, log)
    return probes.evaluate(feats_test, y_test)


def _augmented_batches(family: FrozenFamily, train_set, recipe: ProbeRecipe, image_size: int,
                       seed: int, device: torch.device) -> tuple[Callable[[int], Iterator], int]:
    loader = make_loader(train_set, recipe.batch_size, shuffle=True, drop_last=False, seed=seed,
                         device=device)
    view = linear_view(image_size, train_set.mean, train_set.std)
    gen = torch.Generator(device=device).manual_seed(seed)

    def epoch_batches(epoch: int) -> Iterator:
        loader.set_epoch(epoch)
        for x, y in loader:
            yield family(view(x.to(device), gen)), y.to(device)

    return epoch_batches, len(loader)


def linear_eval(model: nn.Module, specs: Sequence[Hashable], train_set, test_set,
                num_classes: int, recipe: ProbeRecipe = RECIPES["dspnet"], mode: Mode = "fast",
                kinds: Sequence[ProbeKind] = PROBE_KINDS, distill: bool = False,
                recalibrate: Recalibrate | None = None, image_size: int | None = None,
                batch_size: int = 256, seed: int = 0,
                log: Log | None = None) -> dict[str, dict[Hashable, dict[str, float]]]:
    """Linear evaluation of every member of ``model`` (frozen) in one pass.

    ``train_set``/``test_set`` are labelled datasets with ``images`` (uint8), ``labels``,
    ``mean``, ``std``; the test set is never augmented. ``image_size`` is the crop size of
    augment mode (default: the stored size). ``batch_size`` is for feature extraction only.
    Returns ``{kind: {spec: {"top1", "top5"}}}``.
    """
    if mode not in ("fast", "augment"):
        raise ValueError(f"unknown linear-eval mode {mode!r} (expected 'fast' or 'augment')")
    if train_set.labels is None or test_set.labels is None:
        raise ValueError("linear evaluation needs labels for the train and test splits")
    device = next(model.parameters()).device
    family = FrozenFamily(model, specs, recalibrate)
    transform = eval_transform(train_set.mean, train_set.std, image_size)
    feats_test = family.features(test_set.images, transform, batch_size)
    if mode == "fast":
        feats_train = family.features(train_set.images, transform, batch_size)
        return linear_eval_cached(feats_train, train_set.labels, feats_test, test_set.labels,
                                  num_classes, recipe, kinds, distill, seed, device, log)
    size = image_size or int(train_set.images.shape[-1])
    probes = _seeded_probes({k: x.shape[1] for k, x in feats_test.items()}, num_classes, kinds,
                            recipe.bn, seed, device)
    epoch_batches, steps = _augmented_batches(family, train_set, recipe, size, seed, device)
    train_probe_set(probes, epoch_batches, recipe.epochs, steps, recipe, distill, log)
    return probes.evaluate(feats_test, test_set.labels)


def result_rows(results: Mapping[str, Mapping[Hashable, Mapping[str, float]]],
                prefix: str = "linear") -> dict[Hashable, dict[str, float]]:
    """``{member: {"{prefix}_{kind}_top1": .., "{prefix}_{kind}_top5": .., "feature_dim": ..}}``
    -- the keys of :data:`slimssl.eval.report.COLUMNS` for ``prefix="linear"``."""
    rows: dict[Hashable, dict[str, float]] = {}
    for kind, per_member in results.items():
        for member, acc in per_member.items():
            row = rows.setdefault(member, {})
            row.update({name if name == "feature_dim" else f"{prefix}_{kind}_{name}": value
                        for name, value in acc.items()})
    return rows
