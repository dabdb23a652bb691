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

from slimssl.data import (BatchAugment, ImageTensorDataset, eval_transform, make_loader,
                          ordered_batches)
from slimssl.data.views import SUPERVISED_VIEW
from slimssl.dist import concat_all_gather, get_rank, get_world_size
from slimssl.eval.feature_store import FeatureStore, ShardedFeatures
from slimssl.eval.features import Recalibrate
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
    "ProbeCheckpoint",
    "train_probe_set",
    "evaluate_features",
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

    @torch.no_grad()
    def features(self, data, transform, batch_size: int = 256, num_workers: int = 0,
                 max_images_held: int | None = None) -> dict[Hashable, torch.Tensor]:
        """In-memory features ``{spec: (N, C)}`` (CPU) of a uint8 image tensor or a dataset (in
        memory or streamed), every member from one pass over the images."""
        device = next(self.model.parameters()).device
        if isinstance(data, torch.Tensor):
            batches: Iterable = (data[i:i + batch_size] for i in range(0, data.shape[0], batch_size))
        else:
            batches = (x for x, _ in ordered_batches(data, None, batch_size, num_workers,
                                                     max_images_held))
        parts: dict[Hashable, list[torch.Tensor]] = {spec: [] for spec in self.specs}
        for x in batches:
            for spec, f in self(transform(x.to(device))).items():
                parts[spec].append(f.cpu())
        if not any(parts.values()):
            raise ValueError("no images to extract features from")
        return {spec: torch.cat(p) for spec, p in parts.items()}


#: Features of one member: in memory, or shards on disk (:class:`ShardedFeatures`).
Features = torch.Tensor | ShardedFeatures


def _rows(feats: Features, idx: torch.Tensor) -> torch.Tensor:
    return feats.rows(idx.cpu()) if isinstance(feats, ShardedFeatures) else feats[idx.to(feats.device)]


@dataclass
class ProbeCheckpoint:
    """Where a long probe training saves itself after every epoch, and the state it resumes
    from (both optional). ``save(state)`` must write atomically (the CLI uses the engine's
    checkpoints); ``state`` is what an earlier ``save`` received."""

    save: Callable[[dict], None] | None = None
    state: dict | None = None


def train_probe_set(probes: ProbeSet, epoch_batches: Callable[[int], Batches], epochs: int,
                    steps_per_epoch: int, recipe: ProbeRecipe, distill: bool = False,
                    log: Log | None = None, images_per_step: int | None = None,
                    checkpoint: ProbeCheckpoint | None = None) -> list[float]:
    """SGD over ``epochs`` x ``steps_per_epoch`` batches from ``epoch_batches(epoch)``; the
    learning rate follows ``recipe.lr_at`` per step. Returns the mean loss of each epoch.

    ``epoch_batches(epoch)`` must depend on ``epoch`` alone (seeded per epoch), so that a run
    resumed from ``checkpoint.state`` (probes, optimizer, epochs done) continues exactly as
    an uninterrupted one. ``log`` gets a line about every tenth of an epoch (long epochs) and
    after every tenth epoch, with img/s and the time left."""
    opt = torch.optim.SGD(probes.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    total = max(1, epochs * steps_per_epoch)
    step, history, first = 0, [], 0
    if checkpoint is not None and checkpoint.state is not None:
        state = checkpoint.state
        probes.load_state_dict(state["probes"])
        opt.load_state_dict(state["optimizer"])
        first, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
        if log is not None:
            log(f"probe: resumed after epoch {first}/{epochs}")
    probes.train()
    start, start_step, seen = time.perf_counter(), step, 0
    every = max(1, steps_per_epoch // 10) if steps_per_epoch >= 100 else 0
    lr = recipe.lr_at(step, total)

    def status() -> str:
        elapsed = time.perf_counter() - start
        rate = (step - start_step) / max(elapsed, 1e-9)
        eta = (total - step) / rate if rate > 0 else float("nan")
        images = f", {seen / max(elapsed, 1e-9):.0f} img/s" if seen else ""
        return f"lr {lr:.4g} ({elapsed:.0f} s{images}, ETA {eta / 60:.1f} min)"

    for epoch in range(first, epochs):
        losses = []
        for i, (feats, y) in enumerate(epoch_batches(epoch)):
            lr = recipe.lr_at(step, total)
            set_lr(opt, lr)
            loss = probes.loss(feats, y, distill)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            seen += int(y.shape[0]) if images_per_step is None else images_per_step
            if log is not None and every and (i + 1) % every == 0 and i + 1 < steps_per_epoch:
                log(f"probe epoch {epoch + 1}/{epochs} step {i + 1}/{steps_per_epoch} loss "
                    f"{losses[-1]:.4f} {status()}")
        history.append(sum(losses) / max(1, len(losses)))
        if checkpoint is not None and checkpoint.save is not None:
            checkpoint.save({"probes": probes.state_dict(), "optimizer": opt.state_dict(),
                             "epoch": epoch + 1, "step": step, "history": history})
        if log is not None and ((epoch + 1) % max(1, epochs // 10) == 0 or epoch + 1 == epochs):
            log(f"probe epoch {epoch + 1}/{epochs} loss {history[-1]:.4f} {status()}")
    probes.eval()
    return history


def _cached_batches(feats: Mapping[Hashable, Features], y: torch.Tensor, batch_size: int,
                    seed: int) -> Callable[[int], Iterator]:
    """Epoch ``e``: the rows in the order ``randperm(n, seed + e)``, in batches."""
    n = y.shape[0]

    def epoch_batches(epoch: int) -> Iterator:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            yield ({k: _rows(x, idx).to(y.device, torch.float32) for k, x in feats.items()},
                   y[idx.to(y.device)])

    return epoch_batches


def _seeded_probes(dims: Mapping[Hashable, int], num_classes: int, kinds: Sequence[ProbeKind],
                   bn: bool, seed: int, device: torch.device) -> ProbeSet:
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
        torch.manual_seed(seed)
        return ProbeSet(dims, num_classes, kinds, bn).to(device)


def _dims(feats: Mapping[Hashable, Features]) -> dict[Hashable, int]:
    return {k: (x.dim if isinstance(x, ShardedFeatures) else x.shape[1]) for k, x in feats.items()}


def evaluate_features(probes: ProbeSet, feats: Mapping[Hashable, Features], y: torch.Tensor
                      ) -> dict[str, dict[Hashable, dict[str, float]]]:
    """:meth:`ProbeSet.evaluate` on in-memory features, or shard by shard on feature shards
    (accuracies weighted by shard size: the same numbers, bounded memory)."""
    if not any(isinstance(x, ShardedFeatures) for x in feats.values()):
        return probes.evaluate(feats, y)
    first = next(iter(feats.values()))
    total: dict = {}
    n_all = sum(first.counts)
    dev = y.device
    for s, n in enumerate(first.counts):
        shards = {k: next(x.shards([s])) for k, x in feats.items()}
        labels = next(iter(shards.values()))[1].to(dev)  # the shard's own labels
        block = {k: f.to(dev) for k, (f, _) in shards.items()}
        for kind, per in probes.evaluate(block, labels).items():
            for m, acc in per.items():
                row = total.setdefault(kind, {}).setdefault(m, {"top1": 0.0, "top5": 0.0})
                row["top1"] += acc["top1"] * n / n_all
                row["top5"] += acc["top5"] * n / n_all
                row["feature_dim"] = acc["feature_dim"]
    return total


def linear_eval_cached(feats_train: Mapping[Hashable, Features], y_train: torch.Tensor,
                       feats_test: Mapping[Hashable, Features], y_test: torch.Tensor,
                       num_classes: int, recipe: ProbeRecipe = RECIPES["dspnet"],
                       kinds: Sequence[ProbeKind] = PROBE_KINDS, distill: bool = False,
                       seed: int = 0, device: torch.device | str = "cpu",
                       log: Log | None = None, checkpoint: ProbeCheckpoint | None = None
                       ) -> dict[str, dict[Hashable, dict[str, float]]]:
    """Fast mode: train every kind of probe for every member on cached features (in memory or
    shards on disk, read a batch of rows at a time). Returns ``{kind: {member: {"top1",
    "top5"}}}`` on the test features."""
    if set(feats_train) != set(feats_test):
        raise ValueError("train and test features must cover the same members")
    dev = torch.device(device)
    xs = {k: (x if isinstance(x, ShardedFeatures) else x.to(dev, torch.float32))
          for k, x in feats_train.items()}
    y = y_train.to(dev, torch.long)
    n = y.shape[0]
    bs = max(1, min(recipe.batch_size, n))
    probes = _seeded_probes(_dims(xs), num_classes, kinds, recipe.bn, seed, dev)
    train_probe_set(probes, _cached_batches(xs, y, bs, seed), recipe.epochs,
                    math.ceil(n / bs), recipe, distill, log, checkpoint=checkpoint)
    return evaluate_features(probes, feats_test, y_test.to(dev))


def _interleave(t: torch.Tensor, world: int) -> torch.Tensor:
    """Rows gathered rank after rank -> the order of the global batch (rank ``r`` holds its
    rows ``r, r + world, ...``, as a DistributedSampler hands them out)."""
    return t.reshape(world, -1, *t.shape[1:]).transpose(0, 1).reshape(-1, *t.shape[1:])


def sharded_batches(train_set, batch_size: int, seed: int, device: torch.device,
                    num_workers: int = 0, max_images_held: int | None = None):
    """This rank's share of every global batch of ``batch_size`` (the order of one process):
    ``(loader, batches)`` where ``batches(epoch)`` yields ``(x, y, n, width, real)`` -- this
    rank's rows ``r, r + world, ...`` of a global batch of ``n`` images, of which the first
    ``real`` are real (the sampler pads the last batch by repeating images; a rank left without
    a real row keeps one padding row, to be weighted 0, so every rank runs the same graph) and
    ``width``, the rows every rank's slot has (for gathering)."""
    world, rank = get_world_size(), get_rank()
    if batch_size % world:
        raise ValueError(f"the batch {batch_size} must split evenly over {world} processes; "
                         "pass --batch-size divisible by the number of processes")
    loader = make_loader(train_set, batch_size // world, shuffle=True, drop_last=False, seed=seed,
                         rank=rank, world_size=world, num_workers=num_workers, device=device,
                         max_images_held=max_images_held)
    total = len(train_set)

    def batches(epoch: int) -> Iterator:
        loader.set_epoch(epoch)
        for b, (x, y) in enumerate(loader):
            n = min(x.shape[0] * world, total - b * batch_size)
            real = max(0, -(-(n - rank) // world))  # this rank's rows below n
            keep = max(real, 1)
            yield x[:keep].to(device), y[:keep].to(device), n, x.shape[0], real

    return loader, batches


def rank_view(view: BatchAugment, x: torch.Tensor, generator: torch.Generator,
              n: int) -> torch.Tensor:
    """``view`` of this rank's rows ``x`` of a global batch of ``n`` images, with the crops one
    process would draw: the parameters are drawn for all ``n`` rows on every rank (the other
    ranks' rows stay blank and are dropped)."""
    world, rank = get_world_size(), get_rank()
    if world == 1:
        return view(x, generator)
    full = x.new_zeros((n, *x.shape[1:]))
    if rank >= n:  # only a padding row here: crop it in row 0's place, same draws as the others
        full[0] = x[0]
        return view(full, generator)[:1]
    full[rank::world] = x
    return view(full, generator)[rank::world]


def gather_rows(t: torch.Tensor, n: int, width: int) -> torch.Tensor:
    """Every rank's rows of a global batch of ``n``, in the order of one process (each rank's
    ``t`` padded to ``width`` rows for the all-gather, the padding dropped again)."""
    world = get_world_size()
    if world == 1:
        return t
    padded = torch.cat([t, t.new_zeros((width - t.shape[0], *t.shape[1:]))])
    return _interleave(concat_all_gather(padded), world)[:n]


def _augmented_batches(family: FrozenFamily, train_set, recipe: ProbeRecipe, image_size: int,
                       seed: int, device: torch.device, num_workers: int = 0,
                       max_images_held: int | None = None
                       ) -> tuple[Callable[[int], Iterator], int]:
    """Augmented batches through the frozen family. Epoch ``e`` draws the order and the crops
    from ``seed + e`` alone (so a resumed run repeats them). Under ``torchrun`` every rank
    decodes and embeds ``1 / world`` of each batch (:func:`sharded_batches`, :func:`rank_view`)
    and the features are gathered (:func:`gather_rows`), so every rank trains identical probes
    on the global batch -- the batch, crops and BatchNorm statistics of one process."""
    loader, batches = sharded_batches(train_set, recipe.batch_size, seed, device, num_workers,
                                      max_images_held)
    view = linear_view(image_size, train_set.mean, train_set.std)

    def epoch_batches(epoch: int) -> Iterator:
        gen = torch.Generator(device=device).manual_seed(seed + epoch)
        for x, y, n, width, real in batches(epoch):
            feats = family(rank_view(view, x, gen, n))
            yield ({k: gather_rows(f[:real], n, width) for k, f in feats.items()},
                   gather_rows(y[:real], n, width))

    return epoch_batches, len(loader)


def stored_size(dataset) -> int:
    """Side of the (square) images a dataset yields: the crop size augment modes default to."""
    if isinstance(dataset, ImageTensorDataset):
        return int(dataset.images.shape[-1])
    if getattr(dataset, "image_size", None):
        return int(dataset.image_size)
    raise ValueError(f"images of '{dataset.source}' keep their own sizes; set data.image_size "
                     "(or pass image_size) so that they can be batched and cropped")


def linear_eval(model: nn.Module, specs: Sequence[Hashable], train_set, test_set,
                num_classes: int, recipe: ProbeRecipe = RECIPES["dspnet"], mode: Mode = "fast",
                kinds: Sequence[ProbeKind] = PROBE_KINDS, distill: bool = False,
                recalibrate: Recalibrate | None = None, image_size: int | None = None,
                batch_size: int = 256, seed: int = 0, log: Log | None = None,
                store: FeatureStore | None = None, num_workers: int = 0,
                max_images_held: int | None = None, checkpoint: ProbeCheckpoint | None = None,
                train_split: str = "train") -> dict[str, dict[Hashable, dict[str, float]]]:
    """Linear evaluation of every member of ``model`` (frozen) in one pass.

    ``train_set``/``test_set`` are labelled datasets (in memory, or folders streamed by
    ``num_workers`` DataLoader workers holding at most ``max_images_held`` decoded images);
    the test set is never augmented. With a :class:`FeatureStore` the un-augmented features
    (test set; train set in fast mode) come from / go to its shards on disk, under the names
    ``train_split``/``"test"``. ``image_size`` is the crop
    size of augment mode (default: the stored size). ``batch_size`` is for feature extraction
    only. ``checkpoint`` makes a long training resumable. Returns ``{kind: {spec: {"top1",
    "top5"}}}``.
    """
    if mode not in ("fast", "augment"):
        raise ValueError(f"unknown linear-eval mode {mode!r} (expected 'fast' or 'augment')")
    if train_set.labels is None or test_set.labels is None:
        raise ValueError("linear evaluation needs labels for the train and test splits")
    device = next(model.parameters()).device
    transform = eval_transform(train_set.mean, train_set.std, image_size)
    built: list[FrozenFamily] = []

    def family() -> FrozenFamily:  # built (and recalibrated) only when some features are needed
        if not built:
            built.append(FrozenFamily(model, specs, recalibrate))
        return built[0]

    loading = dict(num_workers=num_workers, max_images_held=max_images_held)

    def features(dataset, split: str) -> dict[Hashable, Features]:
        if store is None:
            return family().features(dataset, transform, batch_size, **loading)
        return store.extract(family, specs, dataset, split, transform, batch_size, device=device,
                             log=log, **loading)

    feats_test = features(test_set, "test")
    if mode == "fast":
        return linear_eval_cached(features(train_set, train_split), train_set.labels, feats_test,
                                  test_set.labels, num_classes, recipe, kinds, distill, seed,
                                  device, log, checkpoint)
    size = image_size or stored_size(train_set)
    probes = _seeded_probes(_dims(feats_test), num_classes, kinds, recipe.bn, seed, device)
    epoch_batches, steps = _augmented_batches(family(), train_set, recipe, size, seed, device,
                                              **loading)
    train_probe_set(probes, epoch_batches, recipe.epochs, steps, recipe, distill, log,
                    checkpoint=checkpoint)
    return evaluate_features(probes, feats_test, test_set.labels.to(device))


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
