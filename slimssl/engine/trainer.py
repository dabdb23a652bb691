"""The one training loop every recipe runs through (docs/design.md sec. 1, 4, 7).

Per iteration: two augmented views of a uint8 batch (augmented on the training device), the
full-width target once, then each sub-network the recipe samples (the member the recipe names as
online teacher first, :meth:`~slimssl.recipes.base.Recipe.teacher_index`: its detached output
reaches the others' loss terms), one optimizer step, the EMA update, the method's
end-of-iteration hook (MoCo's enqueue). The update mode is the recipe's
(:attr:`~slimssl.recipes.base.Recipe.update_mode`) and is logged:

* ``sum``: the per-sub-network terms are summed and back-propagated once (SlimCLR's code);
* ``accumulate``: one backward per sub-network, one optimizer step (memory of one network;
  DSPNet);
* ``step_per_subnet``: one backward AND one optimizer step per sub-network, each member's loss
  with its own regularization term (the US3L authors' loop; an option, see recipes/us3l.py).

The first two give the same gradient. Under ``torchrun`` gradients are averaged across ranks by one
all-reduce per step (instead of DDP hooks, which do not fit several forwards of one module at
different widths before a backward), and sampling is identical on every rank because every
sampler is seeded only by the config seed.

The loop reads no recipe settings from the config (the recipe object carries them) and prints
nothing: it reports through the ``slimssl`` :mod:`logging` logger (the CLI shows its INFO
messages), the metrics logger and the callbacks.

Resume is exact: the data order is a pure function of (seed, epoch), the step's position in the
epoch is saved, and so are every RNG stream, the optimizer, the scaler and the method's state
(queue included).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimssl.data import balanced_subset, load_split, make_loader, make_views
from slimssl.data.subset import load_subset
from slimssl.dist import (DistInfo, all_reduce_mean_tensors_, get_world_size, init_distributed,
                          is_dist, is_main)
from slimssl.engine.build import build_backbone, build_method, build_recipe
from slimssl.engine.checkpoint import (CheckpointError, capture_rng_state,
                                       check_state_dict_compatible,
                                       list_checkpoints, resolve_resume, restore_rng_state,
                                       save_checkpoint)
from slimssl.engine.config import Config, ConfigError, config_to_dict, save_config
from slimssl.engine.ema import ema_update_
from slimssl.engine.logging import MetricsLogger
from slimssl.engine.amp import autocast_dtype
from slimssl.engine.optim import build_optimizer
from slimssl.engine.prefetch import ViewBatches, prefetch_by_default
from slimssl.engine.progress import Progress
from slimssl.engine.rundir import prepare_run_dir
from slimssl.engine.schedule import build_lr_schedule
from slimssl.engine.seeding import derive_seed, seed_everything
from slimssl.methods.base import SubnetOutput
from slimssl.nn import average_running_stats_
from slimssl.schedule import momentum_schedule, scaled_lr, set_lr


_log = logging.getLogger(__name__)


def read_scalars(logs: dict[str, Any]) -> dict[str, Any]:
    """``logs`` with every tensor value turned into a float by ONE device-to-host read."""
    keys = [k for k, v in logs.items() if torch.is_tensor(v)]
    out = dict(logs)
    if keys:
        out.update(zip(keys, torch.stack([logs[k].float().reshape(()) for k in keys]).tolist()))
    return out


class Callback:
    """Hooks into the loop for monitors and diagnostics (they never change the training).

    ``after_backward`` sees the step's full gradient (all sub-networks, after the cross-rank
    average) before the optimizer uses it; ``state_dict`` travels in checkpoints so a resumed
    run continues a monitor's series. States are saved under :attr:`state_key` (the class name),
    so a resumed run may add, drop or reorder callbacks: each gets its own state back.
    """

    @property
    def state_key(self) -> str:
        """The name this callback's state is saved under (override it to tell apart two
        instances of one class; otherwise the second is saved as ``Name#2``, by order)."""
        return type(self).__name__

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def after_backward(self, trainer: "Trainer", specs: list) -> None: ...
    # between log steps the losses in ``logs`` are 0-dim device tensors (reading one stalls a
    # GPU); at log steps they are floats
    def on_step_end(self, trainer: "Trainer", logs: dict[str, Any]) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> None: ...
    def on_fit_end(self, trainer: "Trainer") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _callback_keys(callbacks: list[Callback]) -> list[str]:
    """Each callback's checkpoint key: its ``state_key``, ``#2``, ``#3``... on repeats."""
    keys: list[str] = []
    for cb in callbacks:
        base, n = cb.state_key, 1
        while (key := base if n == 1 else f"{base}#{n}") in keys:
            n += 1
        keys.append(key)
    return keys


def callback_states(callbacks: list[Callback]) -> dict[str, dict[str, Any]]:
    """``{key: state}`` of every callback, as checkpoints store them."""
    return {key: cb.state_dict() for key, cb in zip(_callback_keys(callbacks), callbacks)}


def restore_callback_states(callbacks: list[Callback], saved: dict | list) -> None:
    """Give every callback the state saved under its key; warn (once, naming them) about
    stateful callbacks the checkpoint has no state for (they start afresh) and saved states no
    callback of this run claims (dropped). ``saved`` as a list is the position-keyed format of
    checkpoints written before states were named: restored by position, with a warning."""
    if isinstance(saved, list):
        if saved and any(saved):
            warnings.warn("this checkpoint stores callback states by position (an older format): "
                          "restoring them in order; resume with the same callbacks in the same "
                          "order as the run that wrote it", stacklevel=2)
        for cb, state in zip(callbacks, saved):
            cb.load_state_dict(state)
        return
    keys = _callback_keys(callbacks)
    for key, cb in zip(keys, callbacks):
        if key in saved:
            cb.load_state_dict(saved[key])
    # stateless callbacks (an empty state) lose nothing either way: not worth a warning
    missing = [k for k, cb in zip(keys, callbacks) if k not in saved and cb.state_dict()]
    extra = [k for k, state in saved.items() if k not in keys and state]
    if (missing or extra) and is_main():
        parts = ([f"no saved state for {', '.join(missing)} (starts afresh)"] if missing else []) \
            + ([f"saved state of {', '.join(extra)} not used (no such callback in this run)"]
               if extra else [])
        warnings.warn(f"resuming with other callbacks than the checkpoint's: {'; '.join(parts)}",
                      stacklevel=2)


def _refuse_to_overwrite(run_dir: Path) -> None:
    """A new run never mixes its checkpoints and metrics with an earlier run's."""
    if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
        raise ConfigError(f"{run_dir} already holds a run with checkpoints: pass --resume auto to "
                          "continue it, or choose another --out-dir")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN/Inf; names the step, the sub-network and the term.

    Raised before the optimizer step, so the weights (and every checkpoint on disk) are the last
    good ones; under ``torchrun`` every rank raises at the same step (the flag rides on the
    gradient all-reduce), so no rank is left waiting in a collective.
    """


class PeerFailureError(RuntimeError):
    """A collective failed under ``torchrun``: another rank died (crash, kill, out of memory)."""


def _raised_in_collective(err: BaseException) -> bool:
    """Whether ``err`` came out of ``torch.distributed`` (the innermost Python frame is there)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"torch{os.sep}distributed" in tb.tb_frame.f_code.co_filename


@dataclass
class TrainState:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    skipped_nonfinite: int = 0  # steps skipped under train.skip_nonfinite
    history: list[dict[str, Any]] = field(default_factory=list)


def _check_same_model(saved: dict[str, Any], cfg: Config, path: Path) -> None:
    """Name the model settings that differ from the checkpoint's, before any shape error."""
    current = config_to_dict(cfg)["model"]
    # checkpoints written before building resolved them keep None for "the default"
    resolved = ("base_width", "width_range")
    diff = [f"model.{k}: checkpoint {saved[k]!r}, this run {current[k]!r}"
            for k in current if k in saved and saved[k] != current[k]
            and not (k in resolved and saved[k] is None)]
    if diff:
        raise CheckpointError(
            f"checkpoint {path} is from another model ({'; '.join(diff)}); resume with the "
            "checkpoint's model settings (its config.yaml) or start a new --out-dir")


class Trainer:
    """Builds everything from a :class:`Config` and trains; ``fit()`` returns the history."""

    def __init__(self, cfg: Config, run_dir: str | Path, resume: str | None = None,
                 progress: str = "auto", callbacks: list[Callback] | None = None) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.callbacks = list(callbacks or [])
        self.dist: DistInfo = init_distributed(cfg.train.device)
        self.device = self.dist.device
        if is_main():
            prepare_run_dir(self.run_dir)  # fail before any work, not at the first checkpoint
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        self.progress_mode = progress

        d = cfg.data
        if resume is None and is_main():
            _refuse_to_overwrite(self.run_dir)
        self.train_set = load_split(d, "train", cfg.train.seed)
        if d.train_fraction < 1.0 or d.subset_file is not None:
            keep = (load_subset(d.subset_file) if d.subset_file is not None else
                    balanced_subset(self.train_set.labels, fraction=d.train_fraction,
                                    seed=cfg.train.seed, num_samples=len(self.train_set)))
            self.train_set = self.train_set.subset(keep)
        self.loader = make_loader(self.train_set, d.batch_size, shuffle=True, drop_last=True,
                                  seed=cfg.train.seed, rank=self.dist.rank,
                                  world_size=self.dist.world_size, num_workers=d.num_workers,
                                  device=self.device, max_images_held=d.max_images_held)
        self.views = make_views(d.views, d.image_size, self.train_set.mean, self.train_set.std)
        self.aug_generator = torch.Generator(device=self.device)
        self.aug_generator.manual_seed(derive_seed(cfg.train.seed, self.dist.rank, 7))
        # the next batch's views drawn on a thread during the step (engine/prefetch.py)
        self.prefetch_views = (prefetch_by_default(self.device) if d.prefetch_views is None
                               else d.prefetch_views)
        self._batches: ViewBatches | None = None  # the epoch being trained, in fit()

        self.backbone = build_backbone(cfg, init_weights=True)  # model.init_from, if set
        self.method = build_method(cfg, self.backbone).to(self.device)
        if cfg.train.channels_last:
            self.method.to(memory_format=torch.channels_last)
        self.recipe = build_recipe(cfg, self.backbone)
        global_batch = d.batch_size * self.dist.world_size
        # the scaled base rate: the initial value of the scheduled groups and the constant one
        # of fixed-rate groups (SimSiam's predictor)
        base_lr = scaled_lr(cfg.optim.lr, global_batch, cfg.optim.lr_scaling)
        self.optimizer = build_optimizer(self.method.online, cfg.optim.name, base_lr,
                                         cfg.optim.weight_decay, cfg.optim.momentum,
                                         fixed_lr_params=self.method.fixed_lr_parameters(),
                                         decay_norm_bias=bool(cfg.optim.decay_norm_bias))
        self.steps_per_epoch = len(self.loader)
        self.total_steps = self.steps_per_epoch * cfg.train.epochs
        self.lr_at = build_lr_schedule(cfg.optim, global_batch, self.steps_per_epoch,
                                       cfg.train.epochs)
        self.amp_dtype = autocast_dtype(cfg.train.amp, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if cfg.train.compile:
            self.method.online.compile()  # in place: keeps .subnet() and state_dict keys
        self.state = TrainState()
        wandb = (dict(project=cfg.log.wandb_project, entity=cfg.log.wandb_entity,
                      name=cfg.log.wandb_name, config=cfg.to_dict()) if cfg.log.wandb else None)
        self.logger = MetricsLogger(self.run_dir, tensorboard=cfg.train.tensorboard, wandb=wandb)
        if is_main():
            save_config(cfg, self.run_dir / "config.yaml")
        if resume:
            self._resume(resume)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": "slimssl-checkpoint-v1",
            "config": config_to_dict(self.cfg),
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "recipe": self.recipe.state_dict(),
            # during an epoch the generator may have drawn the next batch's views already
            "aug_generator": (self.aug_generator.get_state() if self._batches is None
                              else self._batches.trained_state),
            "rng": capture_rng_state(),
            "epoch": self.state.epoch,
            "step_in_epoch": self.state.step_in_epoch,
            "global_step": self.state.global_step,
            "skipped_nonfinite": self.state.skipped_nonfinite,
            "callbacks": callback_states(self.callbacks),
        }

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0); every rank calls it, for the BN statistics' average."""
        average_running_stats_(self.method)
        if not is_main():
            return None
        return save_checkpoint(self.run_dir / "checkpoints", self.state_dict(),
                                self.state.epoch, self.state.global_step,
                                keep=self.cfg.train.keep_checkpoints)

    def _resume(self, resume: str) -> None:
        """``auto``: the run's newest valid checkpoint, or a fresh start while it has none (so
        one command line serves the first launch and every ``torchrun`` elastic restart); a
        path must hold a valid checkpoint."""
        source = self.run_dir / "checkpoints" if resume == "auto" else Path(resume)
        if resume == "auto" and not list_checkpoints(source):
            if is_main():
                _log.info(f"--resume auto: no checkpoint in {source} yet; starting from scratch")
            return
        path, ckpt = resolve_resume(source)
        _check_same_model(ckpt.get("config", {}).get("model", {}), self.cfg, path)
        check_state_dict_compatible(self.method.state_dict(), ckpt["method"], "model")
        self.method.load_state_dict(ckpt["method"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.recipe.load_state_dict(ckpt["recipe"])
        self.aug_generator.set_state(ckpt["aug_generator"])
        restore_rng_state(ckpt["rng"])
        self.state = TrainState(ckpt["epoch"], ckpt["step_in_epoch"], ckpt["global_step"],
                                ckpt.get("skipped_nonfinite", 0))
        restore_callback_states(self.callbacks, ckpt.get("callbacks", {}))
        self.logger.drop_after(self.state.global_step)
        if is_main():
            _log.info(f"resumed from {path} (epoch {self.state.epoch}, step "
                      f"{self.state.global_step})")

    # ---------------------------------------------------------------- the step
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype,
                              enabled=self.amp_dtype is not None)

    def _nonfinite(self, value: torch.Tensor, spec_label: str, term: str) -> str | None:
        """None if ``value`` is finite, else the problem in words (step numbers as in logs)."""
        if torch.isfinite(value).all():
            return None
        return (f"non-finite {term} ({value.detach().float().sum().item()}) at step "
                f"{self.state.global_step + 1} (epoch {self.state.epoch}) for sub-network "
                f"{spec_label}")

    def _handle_nonfinite(self, problem: str | None) -> None:
        """Count a skipped step within ``train.skip_nonfinite``, else stop naming the last good
        checkpoint (nothing is saved: the optimizer has not stepped)."""
        budget = self.cfg.train.skip_nonfinite
        if self.state.skipped_nonfinite < budget:
            self.state.skipped_nonfinite += 1
            if is_main():
                _log.warning(f"skipping step {self.state.global_step + 1}: "
                             f"{problem or 'non-finite loss on another rank'} "
                             f"({self.state.skipped_nonfinite}/{budget} skips used)")
            return
        raise NonFiniteLossError(
            f"{problem or 'non-finite loss on another rank'}; training stopped, "
            f"{self._last_checkpoint()} — resume "
            "with --resume auto after lowering optim.lr (or use train.amp=bf16 instead of fp16), "
            f"or set train.skip_nonfinite (now {budget}) to skip up to that many such steps")

    def _last_checkpoint(self) -> str:
        saved = list_checkpoints(self.run_dir / "checkpoints")
        return f"the last good checkpoint is {saved[-1]}" if saved else "no checkpoint yet"

    def _step(self, images: torch.Tensor, epoch_f: float,
              labels: torch.Tensor | None = None, read_logs: bool = True,
              views: tuple[torch.Tensor, ...] | None = None) -> dict[str, Any]:
        """:meth:`train_step`, turning a failed collective into a message that says what
        happened (gloo/NCCL only report a reset connection or a timeout)."""
        try:
            return self.train_step(images, epoch_f, labels, read_logs=read_logs, views=views)
        except RuntimeError as err:
            if not (is_dist() and _raised_in_collective(err)):
                raise
            backend = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise PeerFailureError(
                f"rank {self.dist.rank}: exchanging data with the other ranks failed at step "
                f"{self.state.global_step + 1}: another rank stopped (crashed, was killed or ran "
                "out of memory; its log or torchrun's summary names it). The run stops; "
                f"{self._last_checkpoint()} — resume with --resume auto (torchrun --max-restarts "
                f"does this by itself). Backend: {backend}") from err

    def _sync_gradients(self, finite: bool) -> bool:
        """Average gradients across ranks; returns whether the loss was finite on EVERY rank.

        The flag rides on the same all-reduce as the gradients, so ranks agree on stopping or
        skipping without an extra collective.
        """
        if not (is_dist() and get_world_size() > 1):
            return finite
        grads = [p.grad for p in self.method.online.parameters() if p.grad is not None]
        flag = torch.tensor([0.0 if finite else 1.0], device=self.device)
        all_reduce_mean_tensors_([*grads, flag])
        return bool(flag == 0)

    def _optimizer_step(self, specs: list, problem: str | None) -> bool:
        """Average the gradients across ranks and step, or, if a loss was non-finite on any
        rank, skip (within ``train.skip_nonfinite``) or stop; returns whether it stepped."""
        if not self._sync_gradients(problem is None):
            self._handle_nonfinite(problem)
            self.optimizer.zero_grad(set_to_none=True)  # no step, no EMA, nothing enqueued
            return False
        for cb in self.callbacks:
            cb.after_backward(self, specs)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return True

    def _skipped_step(self, lr: float, specs: list) -> dict[str, float]:
        return {"loss": float("nan"), "lr": lr, "num_subnets": len(specs),
                "skipped_nonfinite": self.state.skipped_nonfinite}

    def _first_problem(self, checks: list[tuple[torch.Tensor, str, str]]) -> str | None:
        """None if every checked term is finite, else the first non-finite one in words.

        The one device-to-host read of a step (the flag decides whether the optimizer may
        step, as GradScaler's found-inf flag does); the terms are only looked at one by one
        when something is wrong."""
        if not checks:
            return None
        if bool(torch.stack([torch.isfinite(v).all() for v, _, _ in checks]).all()):
            return None
        return next(p for p in (self._nonfinite(v, label, term) for v, label, term in checks) if p)

    def draw_views(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The two augmented views of a uint8 batch, on the training device (draws from
        :attr:`aug_generator`)."""
        return self.views(images.to(self.device, non_blocking=True), self.aug_generator)

    def epoch_batches(self) -> ViewBatches:
        """``(images, labels, views)`` of the loader's epoch (as :meth:`set_epoch
        <slimssl.data.loaders.TensorBatchLoader.set_epoch>` left it), the views drawn ahead on
        a thread under ``data.prefetch_views``; close it when done (:meth:`fit` does)."""
        return ViewBatches(self.loader, self.draw_views, self.aug_generator,
                           background=self.prefetch_views)

    def train_step(self, images: torch.Tensor, epoch_f: float,
                   labels: torch.Tensor | None = None, read_logs: bool = True,
                   views: tuple[torch.Tensor, ...] | None = None) -> dict[str, Any]:
        """One iteration; ``labels`` reach only a method that ``needs_labels`` (supervised).
        ``views``: the batch's views drawn already (:meth:`epoch_batches`), else drawn here.

        Returns the step's log values. With ``read_logs=False`` the losses stay 0-dim device
        tensors (no device-to-host read: the loop reads them only at log steps, all at once,
        :func:`read_scalars`); otherwise they are Python floats."""
        cfg, method, recipe = self.cfg, self.method, self.recipe
        lr = self.lr_at(self.state.global_step)
        set_lr(self.optimizer, lr)
        method.train()
        if views is None:
            views = self.draw_views(images)
        if cfg.train.channels_last:
            views = tuple(v.contiguous(memory_format=torch.channels_last) for v in views)
        # momentum BN (DSPNet): weight of the batch statistics 1 -> 0 by cosine over the run
        # (Momentum^2 Teacher), i.e. 1 - the EMA-momentum cosine started at 0
        bn_alpha = 1.0 - momentum_schedule(self.state.global_step, self.total_steps, 0.0, "cosine")
        with self._autocast(), method.target_statistics(bn_alpha):
            if method.needs_labels:
                labels = None if labels is None else labels.to(self.device, non_blocking=True)
                target = method.target_forward(views, labels)
            else:
                target = method.target_forward(views)
        specs = recipe.sample(epoch_f)
        accumulate = recipe.update_mode == "accumulate"
        per_subnet = recipe.update_mode == "step_per_subnet"
        teacher_at = recipe.teacher_index(specs)
        order = list(range(len(specs)))
        if teacher_at is not None:  # the teacher runs first: the others' terms need its output
            order.insert(0, order.pop(teacher_at))
        teacher: SubnetOutput | None = None
        total = None
        offset = None  # the terms' constants (Recipe.report), left out of the logged objective
        checks: list[tuple[torch.Tensor, str, str]] = []  # read once, before stepping
        logs: dict[str, torch.Tensor] = {}
        for i in order:
            spec = specs[i]
            with self._autocast():
                out = method.subnet_forward(views, spec, target)
                term = recipe.subnet_loss(i, specs, out, teacher)
            checks += [(out.loss.detach(), spec.label, f"{cfg.method.name} loss"),
                       (term.detach(), spec.label, f"weighted loss term of recipe {recipe.name}")]
            logs[f"loss/{spec.label}"] = out.loss.detach()
            report = recipe.report(i, specs, out, teacher)
            if "kd" in report:
                logs[f"kd/{spec.label}"] = report["kd"]
            if "offset" in report:
                offset = report["offset"] if offset is None else offset + report["offset"]
            if read_logs:  # the collapse monitor, only when it is logged
                logs[f"std/{spec.label}"] = out.embedding.detach().float().std(0).mean()
            if i == teacher_at:
                teacher = out.detach()
            if per_subnet:
                # the US3L authors' loop: this member's loss plus its regularization, one
                # optimizer step each (the later members see the updated weights)
                reg = recipe.regularization(method.online, epoch_f, [spec])
                if reg is not None:
                    term = term + reg
                    logs["loss/reg"] = reg.detach() + logs.get("loss/reg", 0.0)
                    checks.append((reg.detach(), spec.label, "weight regularization"))
                self.scaler.scale(term).backward()
                total = term.detach() if total is None else total + term.detach()
                if not self._optimizer_step([spec], self._first_problem(checks)):
                    return self._skipped_step(lr, specs)
                checks = []
            elif accumulate:
                self.scaler.scale(term).backward()
                total = term.detach() if total is None else total + term.detach()
            else:
                total = term if total is None else total + term
        if not per_subnet:
            # the recipe's penalty for every member of this step (US3L: one per sub-network)
            reg = recipe.regularization(method.online, epoch_f, specs)
            if reg is not None:
                total = total + reg
                logs["loss/reg"] = reg.detach()
                checks.append((reg.detach(), "(all)", "weight regularization"))
            if not accumulate:
                self.scaler.scale(total).backward()
            elif reg is not None:
                self.scaler.scale(reg).backward()
            if not self._optimizer_step(specs, self._first_problem(checks)):
                return self._skipped_step(lr, specs)
        m = momentum_schedule(self.state.global_step, self.total_steps, cfg.method.momentum,
                              cfg.method.momentum_schedule)
        for target_part, online_part in method.ema_pairs():
            ema_update_(target_part, online_part, m, copy_buffers=not method.momentum_bn)
        method.end_iteration(target)
        # for people: the sum of the members' own losses, the distillation as a divergence (0 at
        # agreement), and the objective trained (same gradient) without the terms' constants
        logs["loss"] = sum(logs[f"loss/{spec.label}"].float() for spec in specs)
        kd = [v.float() for k, v in logs.items() if k.startswith("kd/")]
        if kd:
            logs["kd"] = sum(kd)
        logs["objective"] = total.detach() - (0.0 if offset is None else offset)
        out_logs: dict[str, Any] = read_scalars(logs) if read_logs else dict(logs)
        out_logs.update(lr=lr, momentum=m, num_subnets=len(specs),
                        skipped_nonfinite=self.state.skipped_nonfinite)
        return out_logs

    # ---------------------------------------------------------------- the loop
    def fit(self) -> list[dict[str, Any]]:
        try:
            return self._fit()
        finally:  # stopped by an exception: end the views thread, generator as last trained
            if self._batches is not None:
                self._batches.close()
                self._batches = None

    def _fit(self) -> list[dict[str, Any]]:
        cfg, st = self.cfg, self.state
        if is_main():
            _log.info(f"slimssl: {self.recipe.name}/{cfg.method.name} on {cfg.model.arch} widths "
                      f"{list(self.backbone.widths)} | update mode: {self.recipe.update_mode} | "
                      f"{len(self.train_set)} images, {self.steps_per_epoch} steps/epoch, "
                      f"{cfg.train.epochs} epochs | device {self.device} x{self.dist.world_size}"
                      f"{' | views prefetched on a thread' if self.prefetch_views else ''}")
        for cb in self.callbacks:
            cb.on_fit_start(self)
        desc = "finetune" if self.method.needs_labels else "pretrain"
        progress = Progress(self.total_steps, desc=desc, initial=st.global_step,
                            print_every=cfg.train.log_every, mode=self.progress_mode)
        batch = cfg.data.batch_size * self.dist.world_size
        epoch_loss, epoch_steps = None, 0  # summed on the device, read once per epoch
        epoch_kd, kd_steps = None, 0  # the distillation's, over the steps that have one
        while st.epoch < cfg.train.epochs:
            # resumed mid-epoch: the loader starts at the first untrained batch (the order is a
            # function of seed and epoch alone), without reading the trained ones
            self.loader.set_epoch(st.epoch, start_batch=st.step_in_epoch)
            t0 = time.perf_counter()
            self._batches = self.epoch_batches()
            for i, (images, labels, views) in enumerate(self._batches, start=st.step_in_epoch):
                log_now = (st.global_step + 1) % cfg.train.log_every == 0 or st.global_step == 0
                logs = self._step(images, st.epoch + i / self.steps_per_epoch, labels,
                                  read_logs=log_now, views=views)
                st.global_step += 1
                st.step_in_epoch = i + 1
                loss = logs["loss"]
                if torch.is_tensor(loss) or math.isfinite(loss):  # a skipped step has no loss
                    epoch_loss = loss if epoch_loss is None else epoch_loss + loss
                    epoch_steps += 1
                if "kd" in logs:
                    epoch_kd = logs["kd"] if epoch_kd is None else epoch_kd + logs["kd"]
                    kd_steps += 1
                for cb in self.callbacks:
                    cb.on_step_end(self, logs)
                if log_now:
                    kd = {"kd": f"{logs['kd']:.3f}"} if "kd" in logs else {}
                    progress.update(1, images=batch, loss=f"{logs['loss']:.3f}", **kd,
                                    lr=f"{logs['lr']:.3g}")
                    self.logger.log(logs, st.global_step, st.epoch + (i + 1) / self.steps_per_epoch)
                else:
                    progress.update(1, images=batch)
                if cfg.train.ckpt_every_steps and st.global_step % cfg.train.ckpt_every_steps == 0:
                    self.save()
            self._batches.close()  # ran out: closed already; the thread is gone
            self._batches = None
            st.epoch += 1
            st.step_in_epoch = 0
            summary = {"loss": float(epoch_loss) / epoch_steps if epoch_steps else 0.0,
                       **({"kd": float(epoch_kd) / kd_steps} if kd_steps else {}),
                       "epoch_time_s": time.perf_counter() - t0}
            epoch_loss, epoch_steps, epoch_kd, kd_steps = None, 0, None, 0
            self.logger.log(summary, st.global_step, st.epoch, kind="epoch")
            st.history.append({"epoch": st.epoch, **summary})
            average_running_stats_(self.method)  # monitors evaluate every rank's statistics
            for cb in self.callbacks:
                cb.on_epoch_end(self, st.epoch)
            if st.epoch % cfg.train.ckpt_every_epochs == 0 or st.epoch == cfg.train.epochs:
                self.save()
        progress.close()
        for cb in self.callbacks:
            cb.on_fit_end(self)
        self.logger.close()
        return st.history

