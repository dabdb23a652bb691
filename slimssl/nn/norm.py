"""Normalisation for slimmable networks, in the two modes of docs/design.md sec. 2.

* ``switchable`` (S-Net, Yu et al. 2019; used by SlimCLR and DSPNet with a fixed list of widths):
  a private BatchNorm (affine + running statistics) per width in the list. Widths outside the
  list have no statistics and are refused.
* ``universal`` (US-Net, Yu & Huang 2019; used by US3L for any width in [w_min, 1]): one shared
  affine sliced to the active channels; training normalises with batch statistics; before a width
  is evaluated its running statistics are *recalibrated* exactly (:mod:`slimssl.nn.calibrate`).
  The buffers record which width their statistics belong to, so evaluating a width with another
  width's statistics is an error instead of a silently wrong number.

**Momentum BN** (:func:`momentum_statistics`; DSPNet Sec. 5.1.1 "we also adopt momentum BN [44]",
[44] = Momentum^2 Teacher, Li, Liu, Sun 2021): inside the context, a BatchNorm in training mode
normalises with a blend of the batch's statistics and its own running statistics,

    mu = alpha mu_B + (1 - alpha) mu_run,    var = alpha var_B + (1 - alpha) var_run,

and the running statistics move once per context by ``alpha`` towards the mean of the batch
statistics it saw (the two views of one iteration): ``run = alpha mean(mu_B) + (1 - alpha) run``
(variance: unbiased batch variances). ``alpha = 1`` is ordinary training-mode BatchNorm; the
Momentum^2 Teacher code decays ``alpha`` from 1 to 0 by cosine over the iterations, so late in
training the teacher normalises with statistics averaged over many batches, which is what lets
it drop cross-GPU SyncBN ("for further accelerating"). The batch statistics are detached (the
teacher has no gradient). Differences from that code, on purpose: the normalising blend uses the
biased batch variance (so ``alpha = 1`` equals BatchNorm exactly; the code applies Bessel's
correction twice there) and statistics are computed in float32 under AMP.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimssl.nn.ops import WidthSwitched
from slimssl.nn.spec import WIDTH_TOL, channels_at

NormMode = Literal["switchable", "universal"]


def width_index(widths: Sequence[float], width: float) -> int:
    """Index of ``width`` in a switchable model's list, or a clear error naming the list."""
    for i, w in enumerate(widths):
        if abs(w - width) <= WIDTH_TOL:
            return i
    raise ValueError(
        f"width {width:g} is not one of this model's trained widths "
        f"{[float(w) for w in widths]}: switchable BatchNorm keeps statistics only for those; "
        "pick one of them (or train a universal model, norm='universal', for arbitrary widths)"
    )


class _Calibration:
    """State of an exact, cumulative re-estimation of BN statistics (Once-for-All style)."""

    def __init__(self) -> None:
        self.count = 0


def _accumulate_stats(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                      state: _Calibration) -> None:
    """Cumulative average of batch mean and unbiased batch variance: after N equal batches the
    buffers hold exactly what ``nn.BatchNorm`` with ``momentum=None`` holds (the mean over all
    batches), independent of the initial values."""
    dims = [0] + list(range(2, x.dim()))
    x32 = x.detach().float()
    batch_mean = x32.mean(dims)
    n = x32.numel() // x32.shape[1]
    batch_var = x32.var(dims, unbiased=n > 1)
    state.count += 1
    factor = 1.0 / state.count
    mean.mul_(1 - factor).add_(batch_mean.to(mean.dtype), alpha=factor)
    var.mul_(1 - factor).add_(batch_var.to(var.dtype), alpha=factor)


class _MomentumStats:
    """One layer's state inside :func:`momentum_statistics`: ``alpha`` and the batch statistics
    seen so far (committed to the running statistics when the context closes)."""

    def __init__(self, alpha: float, width: float) -> None:
        self.alpha, self.width = alpha, width
        self.means: list[torch.Tensor] = []
        self.vars: list[torch.Tensor] = []


class _SlimBatchNorm(nn.Module, WidthSwitched):
    plain_cls: type[nn.modules.batchnorm._BatchNorm] = nn.BatchNorm2d

    def __init__(self, num_features: int, mode: NormMode = "switchable",
                 widths: Sequence[float] = (1.0,), *, slim: bool = True, divisor: int = 1,
                 affine: bool = True, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if mode not in ("switchable", "universal"):
            raise ValueError(f"norm mode must be 'switchable' or 'universal', got {mode!r}")
        self.num_features, self.mode, self.slim, self.divisor = num_features, mode, slim, divisor
        self.widths = tuple(float(w) for w in widths)
        self.eps, self.momentum, self.affine = eps, momentum, affine
        self.width = 1.0
        self.calibration: _Calibration | None = None
        self.momentum_stats: _MomentumStats | None = None
        if mode == "switchable":
            self.bn = nn.ModuleList(
                self.plain_cls(channels_at(num_features, w, divisor) if slim else num_features,
                               eps=eps, momentum=momentum, affine=affine)
                for w in self.widths
            )
        else:
            self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
            self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
            self.register_buffer("running_mean", torch.zeros(num_features))
            self.register_buffer("running_var", torch.ones(num_features))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
            # Which width the running statistics belong to (1.0 after training, since only the
            # full width updates them then; any width after recalibration).
            self.register_buffer("stats_width", torch.tensor(1.0, dtype=torch.float64))

    @property
    def active_channels(self) -> int:
        return self._active(self.num_features, self.slim, self.divisor)

    def private(self) -> nn.modules.batchnorm._BatchNorm:
        """The switchable BatchNorm of the active width."""
        return self.bn[width_index(self.widths, self.width)]

    def _universal_stats(self, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        if abs(float(self.stats_width) - self.width) > WIDTH_TOL:
            raise RuntimeError(
                f"universal BatchNorm holds statistics for width {float(self.stats_width):g}, "
                f"not {self.width:g}: call slimssl.nn.recalibrate_bn(model, spec, batches) before "
                "evaluating or exporting this width"
            )
        return self.running_mean[:c], self.running_var[:c]

    def _affine(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Weight and bias of the active width (``None`` without affine)."""
        if self.mode == "switchable":
            bn = self.private()
            return bn.weight, bn.bias
        c = self.active_channels
        return ((self.weight[:c] if self.weight is not None else None),
                (self.bias[:c] if self.bias is not None else None))

    def _momentum_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise with the momentum-BN blend (module docstring); record the batch stats."""
        st = self.momentum_stats
        if abs(st.width - self.width) > WIDTH_TOL:
            raise RuntimeError("momentum BN: one context must run at one width")
        running_mean, running_var = self.calibrated_buffers()
        dims = [0] + list(range(2, x.dim()))
        x32 = x.float()
        with torch.no_grad():
            mean = x32.mean(dims)
            var = x32.var(dims, unbiased=False)
            n = x32.numel() // x32.shape[1]
            st.means.append(mean)
            st.vars.append(var * n / max(n - 1, 1))
            a = st.alpha
            mu = a * mean + (1 - a) * running_mean.float()
            sigma2 = a * var + (1 - a) * running_var.float()
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (x32 - mu.view(shape)) * torch.rsqrt(sigma2 + self.eps).view(shape)
        weight, bias = self._affine()
        if weight is not None:
            y = y * weight.float().view(shape) + bias.float().view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _commit_momentum_stats(self) -> None:
        """Move the running statistics by ``alpha`` towards the mean of the recorded batch
        statistics (Momentum^2 Teacher: once per iteration, both views averaged)."""
        st = self.momentum_stats
        if not st.means:
            return
        running_mean, running_var = self.calibrated_buffers()
        a = st.alpha
        running_mean.mul_(1 - a).add_(torch.stack(st.means).mean(0).to(running_mean.dtype),
                                      alpha=a)
        running_var.mul_(1 - a).add_(torch.stack(st.vars).mean(0).to(running_var.dtype), alpha=a)
        if self.mode == "switchable":
            self.private().num_batches_tracked.add_(1)
        else:
            self.num_batches_tracked.add_(1)
            self.stats_width.fill_(self.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.active_channels
        if x.shape[1] != c:
            raise RuntimeError(f"{type(self).__name__} at width {self.width:g} expects {c} "
                               f"channels, got {x.shape[1]}")
        if self.momentum_stats is not None and self.training and self.calibration is None:
            return self._momentum_forward(x)
        if self.mode == "switchable":
            bn = self.private()
            if self.calibration is not None:
                _accumulate_stats(x, bn.running_mean, bn.running_var, self.calibration)
                return F.batch_norm(x, None, None, bn.weight, bn.bias, True, 0.0, self.eps)
            return bn(x)
        weight = self.weight[:c] if self.weight is not None else None
        bias = self.bias[:c] if self.bias is not None else None
        if self.calibration is not None:
            _accumulate_stats(x, self.running_mean[:c], self.running_var[:c], self.calibration)
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        if self.training:
            # Only the full-width member keeps the running statistics fresh; a sub-width can
            # also see all channels (slim=False, or rounding up to the full count).
            if abs(self.width - 1.0) <= WIDTH_TOL:
                self.num_batches_tracked.add_(1)
                self.stats_width.fill_(1.0)
                return F.batch_norm(x, self.running_mean, self.running_var, weight, bias, True,
                                    self.momentum, self.eps)
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        mean, var = self._universal_stats(c)
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, self.eps)

    def begin_calibration(self) -> None:
        self.calibration = _Calibration()

    def end_calibration(self) -> None:
        self.calibration = None
        if self.mode == "universal":
            self.stats_width.fill_(self.width)

    def calibrated_buffers(self) -> list[torch.Tensor]:
        """The statistics recalibration writes at the active width (for all-reduce under DDP)."""
        c = self.active_channels
        if self.mode == "switchable":
            bn = self.private()
            return [bn.running_mean, bn.running_var]
        return [self.running_mean[:c], self.running_var[:c]]

    def export(self) -> nn.modules.batchnorm._BatchNorm:
        """A standard BatchNorm holding this width's affine slice and statistics."""
        c = self.active_channels
        plain = self.plain_cls(c, eps=self.eps, momentum=self.momentum, affine=self.affine)
        if self.mode == "switchable":
            plain.load_state_dict(self.private().state_dict())
        else:
            mean, var = self._universal_stats(c)
            with torch.no_grad():
                plain.running_mean.copy_(mean)
                plain.running_var.copy_(var)
                plain.num_batches_tracked.copy_(self.num_batches_tracked)
                if self.affine:
                    plain.weight.copy_(self.weight[:c])
                    plain.bias.copy_(self.bias[:c])
        ref = self.running_mean if self.mode == "universal" else self.bn[0].running_mean
        return plain.to(ref.device)

    def extra_repr(self) -> str:
        return f"{self.num_features}, mode={self.mode}, widths={list(self.widths)}"


@contextmanager
def momentum_statistics(module: nn.Module, alpha: float) -> Iterator[None]:
    """Momentum BN (module docstring) for every slimmable BatchNorm of ``module`` in training
    mode while the context is open; on a normal exit each layer's running statistics move once
    by ``alpha`` towards the mean of the batch statistics it saw.

    Example (a momentum teacher, both views of one iteration)::

        with momentum_statistics(target, alpha=0.5):
            z1, z2 = target(x1), target(x2)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"momentum BN alpha must be in [0, 1], got {alpha}")
    layers = [m for m in module.modules() if isinstance(m, _SlimBatchNorm)]
    if not layers:
        raise ValueError("momentum BN: the module has no slimmable BatchNorm layer to apply it to")
    for layer in layers:
        layer.momentum_stats = _MomentumStats(alpha, layer.width)
    try:
        yield
        for layer in layers:
            layer._commit_momentum_stats()
    finally:
        for layer in layers:
            layer.momentum_stats = None


class SlimBatchNorm2d(_SlimBatchNorm):
    """BatchNorm over (N, C, H, W) with switchable or universal statistics."""

    plain_cls = nn.BatchNorm2d


class SlimBatchNorm1d(_SlimBatchNorm):
    """BatchNorm over (N, C) for slimmable MLP heads (projector/predictor, MoCo v3, BYOL)."""

    plain_cls = nn.BatchNorm1d


class SlimLayerNorm(nn.LayerNorm, WidthSwitched):
    """LayerNorm over the active leading features with the shared affine sliced (ViTs)."""

    def __init__(self, normalized_shape: int, eps: float = 1e-6, *, divisor: int = 1,
                 slim: bool = True) -> None:
        super().__init__(normalized_shape, eps=eps)
        self.divisor, self.slim = divisor, slim
        self.width = 1.0

    @property
    def active_channels(self) -> int:
        return self._active(self.normalized_shape[0], self.slim, self.divisor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.active_channels
        if x.shape[-1] != c:
            raise RuntimeError(f"SlimLayerNorm at width {self.width:g} expects {c} features, "
                               f"got {x.shape[-1]}")
        return F.layer_norm(x, (c,), self.weight[:c], self.bias[:c], self.eps)

    def export(self) -> nn.LayerNorm:
        c = self.active_channels
        plain = nn.LayerNorm(c, eps=self.eps)
        with torch.no_grad():
            plain.weight.copy_(self.weight[:c])
            plain.bias.copy_(self.bias[:c])
        return plain.to(self.weight.device)
