"""Normalisation for slimmable networks, in the two modes of DESIGN.md sec. 2.

* ``switchable`` (S-Net, Yu et al. 2019; used by SlimCLR and DSPNet with a fixed list of widths):
  a private BatchNorm (affine + running statistics) per width in the list. Widths outside the
  list have no statistics and are refused.
* ``universal`` (US-Net, Yu & Huang 2019; used by US3L for any width in [w_min, 1]): one shared
  affine sliced to the active channels; training normalises with batch statistics; before a width
  is evaluated its running statistics are *recalibrated* exactly (:mod:`slimssl.nn.calibrate`).
  The buffers record which width their statistics belong to, so evaluating a width with another
  width's statistics is an error instead of a silently wrong number.
"""

from __future__ import annotations

from typing import Literal, Sequence

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.active_channels
        if x.shape[1] != c:
            raise RuntimeError(f"{type(self).__name__} at width {self.width:g} expects {c} "
                               f"channels, got {x.shape[1]}")
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
