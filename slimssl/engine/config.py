"""Typed run configuration: YAML -> nested dataclasses, with validation.

Why a typed config: a typo in a YAML key (``recipe.slowstart_epochs``) would otherwise be silently
ignored and the run would train with a default. Every key is therefore checked against the
dataclass fields, every value against the field's type hint, and enumerated strings against their
allowed choices; errors name the full dotted key.

Adding a field: add an annotated attribute with a default to the right section dataclass. For an
enumerated string, use ``choice("default", "a", "b", ...)`` as the default. For a new section, add
a dataclass and a field on :class:`Config`; nothing else needs to change.

Only ``yaml.safe_load`` is used, for files and for ``--set a.b=value`` overrides.

The defaults ARE the built-in default job (``slimssl pretrain`` with no arguments): SlimCLR-MoCov2
on a small slimmable ResNet (CIFAR stem, widths [1, .75, .5, .25]) pre-trained on scikit-learn's
embedded digits at 16x16, sized to finish in a few minutes on a 2-core laptop CPU. The paper
recipes live in ``configs/*.yaml`` (shipped in the package as ``slimssl/configs``; a bare name
such as ``slimclr_mocov2_cifar10`` finds one, :func:`resolve_config`).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence
from typing import Any, Optional, Union

import yaml

__all__ = [
    "ConfigError",
    "choice",
    "DataConfig",
    "ModelConfig",
    "MethodConfig",
    "RecipeConfig",
    "OptimConfig",
    "TrainConfig",
    "EvalConfig",
    "DiagnosticsConfig",
    "LogConfig",
    "Config",
    "default_distill_temperature",
    "load_config",
    "resolve_config",
    "packaged_configs",
    "apply_overrides",
    "config_to_dict",
    "save_config",
]


_SCI_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the dotted key."""


def choice(default: Optional[str], *choices: str) -> Any:
    """A dataclass field whose value must be one of ``choices`` (``None`` allowed iff default is None
    or the type hint is Optional)."""
    allowed = tuple(choices) if default is None or default in choices else (default, *choices)
    return field(default=default, metadata={"choices": allowed})


class _RegisteredNames(Sequence):
    """The names in a registry, read when asked (so a user's own registered method or recipe is
    a valid config value, and reading a config file imports no model code until validation)."""

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr

    def _names(self) -> list[str]:
        return getattr(importlib.import_module(self.module), self.attr).names()

    def __getitem__(self, i):  # type: ignore[override]
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._names()


def registered(default: str, module: str, attr: str) -> Any:
    """A dataclass field naming an entry of the :class:`slimssl.registry.Registry` ``attr`` of
    ``module``: its allowed values are the registered names (one list, the registry's)."""
    return field(default=default, metadata={"choices": _RegisteredNames(module, attr)})


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Dataset and loader settings (consumed by ``slimssl.data``)."""

    path: Optional[str] = None  # None / "digits": the embedded default; a folder; "synthetic"
    image_size: int = 16  # images are decoded and resized to this square size (pixels)
    # augmentation recipe (data/views.py): mocov2, mocov3, byol, simclr (each also *_cifar: no
    # blur), digits, supervised
    views: str = "digits"
    # train on this class-balanced, seeded fraction of the train split (1 = all)
    train_fraction: float = 1.0
    # train only on these indices of the train split (a saved labelled subset, e.g.
    # RUN/subsets/labelled_10pct_seed0.json of `slimssl finetune --slimmable`)
    subset_file: Optional[str] = None
    # images per step and process (the global batch is batch_size x processes)
    batch_size: int = 128
    num_workers: int = 4  # DataLoader worker processes
    # stop on the first unreadable image (default: skip it and report how many)
    strict: bool = False
    cache_dir: Optional[str] = None  # folder for decoded-image caches (None: no cache)
    # auto: a folder is decoded into memory unless it has more than max_images_held images
    # (or over 8 GiB decoded), else streamed by DataLoader workers; memory / stream force one
    # path, for pre-training and every evaluation command
    mode: str = choice("auto", "auto", "memory", "stream")
    # most decoded images a streamed loader holds at once (its workers' queues and the batches
    # in use; a configuration that cannot stay under it is an error naming the fix)
    max_images_held: int = 100_000
    # draw the next batch's views on a background thread while the current step computes
    # (engine/prefetch.py; same views, same bits, exact resume); None (null) = auto: off on
    # every device for now (it saved nothing measurable: prefetch_by_default gives the figures)
    prefetch_views: Optional[bool] = None


@dataclass
class ModelConfig:
    """Backbone and sub-network family."""

    # registered backbone (models/registry.py): resnet10_narrow, resnet18/34/50/101,
    # mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small, vit_tiny, vit_small
    arch: str = "resnet10_narrow"
    # ResNet stem: cifar (3x3 conv, no max-pool) or imagenet (7x7 conv + max-pool)
    stem: str = choice("cifar", "cifar", "imagenet")
    # the family's width multipliers, largest first (switchable BN: one BN per width)
    widths: list[float] = field(default_factory=lambda: [1.0, 0.75, 0.5, 0.25])
    # switchable: one BatchNorm per width (SlimCLR, DSPNet); universal: any width in
    # width_range (US3L)
    norm: str = choice("switchable", "switchable", "universal")
    # per-stage block counts of the depth-elastic members (DSPNet), e.g.
    # [[2, 2, 2, 2], [1, 1, 1, 1]]; None: full depth only
    depths: Optional[list[list[int]]] = None
    # [w_min, w_max] of universally slimmable models (norm: universal)
    width_range: Optional[list[float]] = None
    base_width: Optional[int] = None  # ResNet stem width (64); DSPNet's expanded ResNet-34: 96
    # start every member from one network's weights, e.g. a supervised torchvision / timm
    # checkpoint (.safetensors or .pt/.pth state_dict with their layer names): the full width is
    # that network, narrower members its leading channels (models/convert.py); None: random
    init_from: Optional[str] = None


@dataclass
class MethodConfig:
    """SSL framework and its heads."""

    # SSL framework (one file each in slimssl/methods/; any name registered with
    # slimssl.methods.register_method)
    name: str = registered("mocov2", "slimssl.methods.registry", "METHODS")
    # projector hidden size at full width; None: the method's default (MoCo v2: the backbone's
    # feature size)
    proj_hidden: Optional[int] = None
    # embedding size of the projector output; None: the method's own (MoCo v2 128; MoCo v3,
    # BYOL, SimCLR 256; SimSiam 2048), written back into the run's config
    proj_dim: Optional[int] = None
    # predictor hidden size (MoCo v3, BYOL, SimSiam, simclr_momentum); None: the method's
    # default
    pred_hidden: Optional[int] = None
    queue_size: int = 1024  # MoCo v2 negative keys in the queue
    # InfoNCE temperature tau; None: the method's own (MoCo v2 0.2, MoCo v3 1.0, SimCLR 0.5)
    temperature: Optional[float] = None
    # EMA momentum of the key/target encoder (start value under the cosine schedule)
    momentum: float = 0.99
    # constant, or cosine from momentum to 1 (BYOL)
    momentum_schedule: str = choice("constant", "constant", "cosine")
    bn_splits: int = 1  # MoCo v2 split-BN groups within one process (1 = off)
    # momentum BN in the momentum target (DSPNet Sec. 5.1.1 -> Momentum^2 Teacher): the target's
    # BatchNorms blend batch and their own running statistics, alpha 1 -> 0 by cosine
    momentum_bn: bool = False
    # the predictor keeps the base learning rate (no warm-up, no cosine): SimSiam Sec. 4.2 /
    # Table 1c and its released --fix-pred-lr; None = on for simsiam, off otherwise
    fix_pred_lr: Optional[bool] = None
    # simclr_momentum (US3L): sub-networks distil the momentum teacher through an auxiliary
    # head (distill_head) with a cosine loss (the adopted configuration: the slides' second
    # ablation table's baseline row equals Table 1 case 13, "MSE" distillation + auxiliary
    # head; authors' code: CosineSimilarity) or a relative one (infonce, case 17)
    distill_head: bool = True
    # simclr_momentum's distillation loss
    distill_loss: str = choice("cosine", "cosine", "infonce")
    # simclr_momentum: weight of US3L's intermediate-feature distillation of every sub-network
    # from the momentum teacher (methods/feature_distill.py); 0 = off, authors' R-50: 1
    feature_distill_weight: float = 0.0
    # backbone modules whose outputs are distilled: stages 2-4 by default; the authors' R-50
    # points are layer2.3.bn2, layer3.5.bn2, layer4.2.bn2
    feature_distill_layers: list[str] = field(default_factory=lambda: ["layer2", "layer3",
                                                                       "layer4"])
    # how a narrower student meets the teacher's channels: projection (learned 1x1, authors')
    # or leading (the teacher's leading channels)
    feature_distill_align: str = choice("projection", "projection", "leading")
    # supervised (slimmable fine-tuning on labels, DSPNet appendix 0.B)
    num_classes: Optional[int] = None
    label_smoothing: float = 0.0  # supervised: label smoothing of the cross-entropy


@dataclass
class RecipeConfig:
    """How sub-networks are trained together (``slimssl.recipes``)."""

    # how the sub-networks train together (slimssl/recipes/; any name registered with
    # slimssl.recipes.register_recipe)
    name: str = registered("slimclr", "slimssl.recipes.registry", "RECIPES")
    slow_start_epochs: Optional[float] = None  # None = half the epochs (SlimCLR)
    # slimclr online distillation of the full network's contrastive logits into each
    # sub-network: ce (SlimCLR), mse / kl_emb on embeddings, atkd / dkd (Table 3c), none
    distill: str = choice("ce", "ce", "mse", "kl_emb", "atkd", "dkd", "none")
    # temperature of the distillation targets (SlimCLR tau_2); None = the method's: 5.0 for
    # mocov2, 1.0 for mocov3 and the rest (SlimCLR Sec. 4.1); atkd / dkd: their own 4.0 / 1.0
    # (the SlimCLR authors' code); the saved config shows the value
    distill_temperature: Optional[float] = None
    # per-width loss weights (SlimCLR Sec. 3.4, Table 3e; recipes/loss_weights.py)
    weights: str = choice("sum_others", "sum_others", "max_other", "proportional", "cumulative",
                          "uniform")
    # networks per step under sandwich sampling (dspnet, us3l, usnet; largest and smallest
    # included)
    num_sampled: int = 4
    # None = the recipe's own: accumulate for dspnet (DSPNet Sec. 4.1), sum otherwise;
    # step_per_subnet: an optimizer step after each sub-network (the US3L authors' loop)
    update_mode: Optional[str] = choice(None, "sum", "accumulate", "step_per_subnet")
    # dspnet: epochs during which only the largest network trains (the paper uses 10)
    warmup_full_epochs: float = 0.0
    # dspnet: the step's DN losses summed (DSPNet Eq. 5) or averaged (each / K; not the
    # paper's: a control for the lr the shared weights see, recipes/dspnet.py)
    loss_reduction: str = choice("sum", "sum", "mean")
    # us3l: the sampled width range grows in stages towards the smallest width (US3L dynamic
    # sampling)
    dynamic_sampling: bool = False
    group_reg: float = 0.0  # US3L lambda (5e-5); > 0 replaces weight decay (optim.weight_decay=0)
    # us3l: final alpha of the group regularization (ramps up over half the epochs)
    group_reg_alpha: float = 0.05
    group_reg_groups: int = 8  # us3l: channel groups of the group regularization
    # us3l: epochs of plain L2 (alpha = 0) before alpha ramps up
    group_reg_warmup_epochs: float = 0.0
    # snet / usnet baselines: none, cosine, infonce; supervised: none or kl (soft labels)
    inplace_distill: str = choice("none", "none", "cosine", "infonce", "kl")
    # supervised + kl: weight of each student's own label CE next to its distillation term
    # (0 = US-Nets' pure inplace distillation; `finetune --slimmable` sets 1, and
    # recipes/supervised.py says why)
    kd_label_weight: float = 0.0


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (``engine.optim``, ``engine.schedule``)."""

    name: str = choice("sgd", "sgd", "lars")  # sgd (momentum) or lars (MoCo v3, BYOL)
    lr: float = 0.1  # base learning rate (per 256 images under lr_scaling: linear)
    lr_scaling: str = choice("linear", "linear", "none")  # linear: lr * batch / 256
    weight_decay: float = 5e-4  # L2 weight decay
    # weight decay on biases and BN/LN affine parameters too; None = the authors' rule for the
    # optimizer: SGD decays every parameter (MoCo v2, SimSiam and SimCLR-CIFAR code), LARS
    # leaves 1-D parameters alone (BYOL, MoCo v3)
    decay_norm_bias: Optional[bool] = None
    momentum: float = 0.9  # SGD / LARS momentum
    warmup_epochs: float = 3.0  # lets the queue fill with real keys before large steps
    min_lr: float = 0.0  # final learning rate of the cosine schedule (absolute)
    # optional: from this epoch on the lr is lr_change_to (set both or neither)
    lr_change_epoch: Optional[float] = None
    lr_change_to: Optional[float] = None  # the base lr after lr_change_epoch (scaled like lr)


@dataclass
class TrainConfig:
    """Loop-level settings (``engine``)."""

    epochs: int = 16  # training epochs
    seed: int = 0  # seeds weights, data order, augmentations and width sampling
    # mixed precision: bf16 or fp16 autocast on a GPU; on a CPU bf16 only where it is native
    # (AVX512-BF16 / AMX), else float32 with a warning; none: float32
    amp: str = choice("none", "none", "bf16", "fp16")
    # NHWC memory format for the model and the views (faster convolutions on GPUs). Off
    # unless set: on a CPU (AMD EPYC, torch 2.14.1) it made every recipe's step 13-28 %
    # faster, but the narrow ResNet-18's float32 gradients then differ from float64 by
    # 4.3e-3 (NCHW: 2.8e-6) and two peer-protocol runs ended 1.2 kNN points lower on
    # average (BENCHMARKS.md 1c); the ImageNet configs set it for GPUs
    channels_last: bool = False
    # torch.compile the online network (in place: state-dict keys unchanged). Off unless set:
    # on a CPU it made the step 16-27 % cheaper at float32 precision (and makes channels_last
    # precise too: inductor writes its own BN), but compiling takes 1-4 min, one graph per
    # width (BENCHMARKS.md 1d); worth it for long fixed-width runs
    compile: bool = False
    log_every: int = 20  # steps between progress lines and train metrics records
    ckpt_every_epochs: int = 5  # epochs between checkpoints (and one at the end)
    ckpt_every_steps: int = 0  # 0 = off; extra mid-epoch checkpoints for long epochs
    keep_checkpoints: int = 3  # newest checkpoints kept in RUN/checkpoints
    # online weights (safetensors, RUN/snapshots/) every N epochs, at the start and at the end,
    # for `slimssl diagnose trajectory/landscape` (SlimCLR Fig. 5, Li et al. 2018); 0 = off
    snapshot_every_epochs: int = 0
    keep_snapshots: int = 50  # at most this many, thinned to stay evenly spread over the run
    skip_nonfinite: int = 0  # NaN/Inf loss steps that may be skipped before stopping (0: stop)
    device: str = "auto"  # auto (cuda when available), cpu or cuda
    # ask PyTorch for deterministic kernels (slower; warns where none exists)
    deterministic: bool = False
    tensorboard: bool = True  # also write TensorBoard scalars to RUN/tb


@dataclass
class EvalConfig:
    """Evaluation settings (``slimssl.eval``)."""

    knn_k: int = 200  # neighbours of the weighted kNN classifier (InstDisc; k = 200)
    knn_t: float = 0.1  # temperature of the kNN vote weights exp(sim / t)
    # majority: also score every member with DSPNet's majority vote (App. 0.A.2, K = 20) into
    # knn_top1_k{k}_majority columns; weighted: the InstDisc columns only. None = majority for
    # dspnet runs, weighted otherwise (the weighted columns are always written)
    knn_vote: Optional[str] = choice(None, "weighted", "majority")
    # Online per-width kNN monitor (cli.monitors.KnnMonitor): at initialisation, every N epochs
    # and at the end, on a seeded bank of the train split and queries of the held-out split;
    # 0 = off; None = a curve of about 4 checks after initialisation: max(1, epochs // 4) (4 for
    # the default job: 5 points; every 2 epochs cost 22-24% of the training time between checks)
    knn_every_epochs: Optional[int] = None
    knn_monitor_bank: int = 5000  # monitor: train images in its kNN bank
    knn_monitor_queries: int = 1000  # monitor: held-out images it classifies
    knn_monitor_batch: int = 256  # monitor: images per forward pass
    # images that recompute BatchNorm statistics of universal-BN members before evaluation
    recalib_images: int = 2000
    random_init_baseline: bool = True  # also report kNN of a randomly initialised network


@dataclass
class DiagnosticsConfig:
    """Interference diagnostics (SlimCLR Fig. 3-4; ``slimssl.diagnostics``); 0 = off."""

    grad_every: int = 0  # gradient-norm ratios every N steps
    direction_every: int = 0  # last-linear-layer gradient snapshot every N steps
    direction_layer: Optional[str] = None  # module name; None = the last linear layer


@dataclass
class LogConfig:
    """Metric sinks beside RUN/metrics.jsonl, metrics.csv and TensorBoard (``engine.logging``)."""

    # also log every metric to Weights & Biases (pip install 'slimssl[wandb]'); the environment
    # variable WANDB_MODE=offline logs without an account (wandb sync uploads later)
    wandb: bool = False
    wandb_project: str = "slimssl"  # W&B project
    wandb_entity: Optional[str] = None  # W&B team or user; None: the account's default
    wandb_name: Optional[str] = None  # W&B run name; None: the run directory's name


@dataclass
class Config:
    """The whole run configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    out_dir: str = "runs/slimclr-digits"  # the run directory (config, metrics, checkpoints, results)

    def __post_init__(self) -> None:
        _resolve_defaults(self)

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Config":
        """Build and validate a Config from a plain (YAML-like) dict; missing keys keep defaults."""
        cfg = _build(cls, d or {}, "")
        _validate_ranges(cfg)
        return cfg

    def to_dict(self) -> dict:
        return config_to_dict(self)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        return f"list[{_type_name(arg)}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type hint ``tp``; return it (ints widened to float where asked)."""

    def bad() -> ConfigError:
        return ConfigError(
            f"config key '{key}': expected {_type_name(tp)}, got {value!r} ({type(value).__name__})"
        )

    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError:
                continue
        raise bad()
    if origin is list:
        (arg,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise bad()
        try:
            return [_coerce(arg, v, f"{key}[{i}]") for i, v in enumerate(value)]
        except ConfigError:
            raise bad() from None
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _SCI_FLOAT.match(value.strip()):
            # PyYAML (YAML 1.1) reads "1e-4" (no dot) as a string; accept it for float fields
            return float(value)
        raise bad()
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, dict):
            return _build(tp, value, key + ".")
        raise bad()
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad()


def _unknown_key(cls: type, prefix: str, name: str) -> ConfigError:
    valid = [f.name for f in dataclasses.fields(cls)]
    msg = f"unknown config key '{prefix}{name}'"
    close = difflib.get_close_matches(str(name), valid, n=1)
    if close:
        msg += f" (did you mean '{prefix}{close[0]}'?)"
    section = prefix.rstrip(".") or "<top level>"
    msg += f"; valid keys of {section}: {', '.join(valid)}"
    return ConfigError(msg)


def _build(cls: type, d: Any, prefix: str) -> Any:
    if not isinstance(d, dict):
        where = prefix.rstrip(".") or "<top level>"
        raise ConfigError(f"config section '{where}': expected a mapping, got {d!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for name, value in d.items():
        if name not in fields:
            raise _unknown_key(cls, prefix, name)
        key = prefix + name
        v = _coerce(hints[name], value, key)
        choices = fields[name].metadata.get("choices")
        if choices is not None and v is not None and v not in choices:
            raise ConfigError(
                f"config key '{key}': {v!r} is not one of {', '.join(map(repr, choices))}"
            )
        kwargs[name] = v
    return cls(**kwargs)


def _validate_ranges(cfg: Config) -> None:
    """Cross-field checks that types cannot express."""
    if any(not (0 < w <= 1) for w in cfg.model.widths):
        raise ConfigError(f"config key 'model.widths': every width must be in (0, 1], got {cfg.model.widths}")
    if cfg.model.width_range is not None:
        wr = cfg.model.width_range
        if len(wr) != 2 or not (0 < wr[0] <= wr[1] <= 1):
            raise ConfigError(f"config key 'model.width_range': expected [w_min, w_max] in (0, 1], got {wr}")
    if (cfg.optim.lr_change_epoch is None) != (cfg.optim.lr_change_to is None):
        raise ConfigError("config keys 'optim.lr_change_epoch' and 'optim.lr_change_to' must be set together")
    for key, v in [("train.epochs", cfg.train.epochs), ("data.batch_size", cfg.data.batch_size),
                   ("method.bn_splits", cfg.method.bn_splits),
                   ("train.keep_checkpoints", cfg.train.keep_checkpoints),
                   ("data.max_images_held", cfg.data.max_images_held)]:
        if v < 1:
            raise ConfigError(f"config key '{key}': must be >= 1, got {v}")
    for key, v in [("eval.knn_every_epochs", cfg.eval.knn_every_epochs),
                   ("diagnostics.grad_every", cfg.diagnostics.grad_every),
                   ("diagnostics.direction_every", cfg.diagnostics.direction_every),
                   ("train.snapshot_every_epochs", cfg.train.snapshot_every_epochs)]:
        if v < 0:
            raise ConfigError(f"config key '{key}': must be >= 0 (0 = off), got {v}")
    for key, v in [("eval.knn_monitor_bank", cfg.eval.knn_monitor_bank),
                   ("eval.knn_monitor_queries", cfg.eval.knn_monitor_queries),
                   ("eval.knn_monitor_batch", cfg.eval.knn_monitor_batch)]:
        if v < 1:
            raise ConfigError(f"config key '{key}': must be >= 1, got {v}")
    if cfg.train.keep_snapshots < 2:
        raise ConfigError(f"config key 'train.keep_snapshots': must be >= 2 (a trajectory needs "
                          f"its start and its end), got {cfg.train.keep_snapshots}")
    if cfg.data.batch_size % cfg.method.bn_splits:
        raise ConfigError(f"config key 'method.bn_splits': the batch of {cfg.data.batch_size} must "
                          f"split into {cfg.method.bn_splits} equal groups; choose a divisor")
    if cfg.train.skip_nonfinite < 0:
        raise ConfigError(f"config key 'train.skip_nonfinite': must be >= 0, got "
                          f"{cfg.train.skip_nonfinite}")
    if cfg.data.subset_file is not None and cfg.data.train_fraction < 1.0:
        raise ConfigError("config keys 'data.subset_file' and 'data.train_fraction' both choose "
                          "the training images: set only one")
    if (cfg.method.name == "supervised") != (cfg.recipe.name == "supervised"):
        raise ConfigError(f"method 'supervised' and recipe 'supervised' go together (labels, "
                          f"cross-entropy); got method {cfg.method.name!r}, recipe "
                          f"{cfg.recipe.name!r}")
    if cfg.method.name == "supervised" and (cfg.method.num_classes or 0) < 2:
        raise ConfigError("config key 'method.num_classes': method 'supervised' needs the "
                          f"number of classes (>= 2), got {cfg.method.num_classes}")
    if cfg.method.feature_distill_weight < 0 or (cfg.method.feature_distill_weight > 0 and
                                                 cfg.method.name != "simclr_momentum"):
        raise ConfigError(f"config key 'method.feature_distill_weight': a weight >= 0 of US3L's "
                          f"intermediate-feature distillation, method 'simclr_momentum' only; "
                          f"got {cfg.method.feature_distill_weight} with method "
                          f"{cfg.method.name!r}")
    if cfg.recipe.kd_label_weight < 0 or (cfg.recipe.kd_label_weight
                                          and cfg.recipe.inplace_distill != "kl"):
        raise ConfigError(f"config key 'recipe.kd_label_weight': a weight >= 0 of the students' "
                          f"label loss under recipe 'supervised' with inplace_distill=kl; got "
                          f"{cfg.recipe.kd_label_weight} with recipe {cfg.recipe.name!r}, "
                          f"inplace_distill={cfg.recipe.inplace_distill!r}")
    if not 0.0 <= cfg.method.label_smoothing < 1.0:
        raise ConfigError(f"config key 'method.label_smoothing': must be in [0, 1), got "
                          f"{cfg.method.label_smoothing}")
    if not (0.0 < cfg.data.train_fraction <= 1.0):
        raise ConfigError(f"config key 'data.train_fraction': must be in (0, 1], got {cfg.data.train_fraction}")
    if cfg.recipe.distill_temperature is not None and cfg.recipe.distill_temperature <= 0:
        raise ConfigError(f"config key 'recipe.distill_temperature': must be > 0 (or null for the "
                          f"method's default), got {cfg.recipe.distill_temperature}")
    if cfg.recipe.group_reg > 0 and cfg.optim.weight_decay != 0:
        raise ConfigError(
            f"config keys 'recipe.group_reg' ({cfg.recipe.group_reg}) and 'optim.weight_decay' "
            f"({cfg.optim.weight_decay}): group regularization replaces weight decay on every "
            "online parameter (US3L); set optim.weight_decay=0")


def default_distill_temperature(method: str, distill: str = "ce") -> float:
    """SlimCLR's online-distillation temperature tau_2 for ``method`` (Sec. 4.1, "Pre-training
    of SlimCLR-MoCov2": tau_2 = 5.0; "... SlimCLR-MoCov3": tau_2 = 1.0). Methods the paper does
    not train take MoCo v3's 1.0: their similarities are in-batch ones, like MoCo v3's. The
    Table 3c alternatives ATKD and DKD keep the temperatures the authors' code runs them at
    (4.0 and 1.0, ``slimssl.recipes.distillation``)."""
    if distill == "atkd":
        return 4.0
    if distill == "dkd":
        return 1.0
    return 5.0 if method == "mocov2" else 1.0


def _resolve_defaults(cfg: Config) -> None:
    """Fill settings whose default depends on another key (the saved config shows the value)."""
    if cfg.recipe.update_mode is None:  # the recipe class's own default
        from slimssl.recipes.registry import RECIPES

        if cfg.recipe.name in RECIPES:
            cfg.recipe.update_mode = RECIPES.get(cfg.recipe.name).update_mode
    if cfg.method.fix_pred_lr is None:
        cfg.method.fix_pred_lr = cfg.method.name == "simsiam"
    if cfg.recipe.distill_temperature is None:
        cfg.recipe.distill_temperature = default_distill_temperature(cfg.method.name,
                                                                     cfg.recipe.distill)
    if cfg.optim.decay_norm_bias is None:
        cfg.optim.decay_norm_bias = cfg.optim.name == "sgd"
    if cfg.eval.knn_vote is None:
        cfg.eval.knn_vote = "majority" if cfg.recipe.name == "dspnet" else "weighted"
    if cfg.eval.knn_every_epochs is None:
        cfg.eval.knn_every_epochs = max(1, cfg.train.epochs // 4)


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=value`` strings to a nested dict (in place; returned). Values are parsed with
    ``yaml.safe_load`` so ``0.5`` is a float, ``[1, 0.5]`` a list, ``null`` None."""
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r}: expected KEY=VALUE, e.g. optim.lr=0.1")
        key, raw = ov.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {ov!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"override {ov!r}: cannot parse value: {e}") from None
        parts = key.split(".")
        node = d
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            elif not isinstance(nxt, dict):
                raise ConfigError(f"override {ov!r}: '{'.'.join(parts[: i + 1])}' is not a section")
            node = nxt
        node[parts[-1]] = value
    return d


def packaged_configs() -> dict[str, Path]:
    """The paper recipes shipped inside the package (``slimssl/configs/*.yaml``), by name."""
    folder = Path(__file__).resolve().parent.parent / "configs"
    return {f.stem: f for f in sorted(folder.glob("*.yaml"))}


def resolve_config(name_or_path: str) -> Path:
    """A config file: ``name_or_path`` itself when that file exists, else the packaged config of
    that name (``slimclr_mocov2_cifar10``, with or without ``.yaml``), so the recipes work from a
    wheel install anywhere."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    packaged = packaged_configs()
    name = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if name in packaged and path.parent == Path("."):
        return packaged[name]
    msg = f"config {name_or_path!r}: no such file"
    if name in packaged:
        msg += f"; a packaged config has that name: pass --config {name}"
    else:
        close = difflib.get_close_matches(name, list(packaged), n=1)
        msg += (f" and no packaged config of that name"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; packaged configs: {', '.join(packaged)} (slimssl config list)")
    raise ConfigError(msg)


def load_config(path: Optional[str], overrides: Optional[list[str]] = None) -> Config:
    """Load YAML at ``path`` (None: all defaults; a packaged config's name: that config, see
    :func:`resolve_config`), apply ``overrides`` and validate."""
    d: dict = {}
    if path is not None:
        text = resolve_config(str(path)).read_text()
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(loaded).__name__}")
        d = loaded
    apply_overrides(d, list(overrides or []))
    return Config.from_dict(d)


def config_to_dict(cfg: Any) -> dict:
    """Plain nested dict (lists, not tuples) that round-trips through ``Config.from_dict``."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config as YAML (the run dir's record of exactly what ran)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    tmp.replace(path)
    return path
