"""Gradient-norm ratios of a slimmable network: is the smallest width's slice dominating?

SlimCLR (Zhao et al., ICCV 2023) Sec. 3.2, "gradient magnitude imbalance", Fig. 3: every loss of
a weight-sharing family back-propagates into the leading slice theta_wmin, so (Eq. 3) its gradient
accumulates the contributions of all n sub-networks while the rest theta_1.0 \\ theta_wmin only
gets the full network's. The paper measures it as the ratios

    ||grad theta_1.0|| / ||grad theta_wmin||   and   ||grad theta_1.0\\wmin|| / ||grad theta_wmin||,

where each network-level norm is the MEAN over layers of the layer-wise L2 norms (Fig. 3
caption). A single network gives about 3.5 for both; naive slimmable SSL pushes the second one to
or below 1 although the rest holds ~15x more parameters (|rest| / |wmin| for widths [1, .5, .25]).

A "layer" here is one slimmable conv/linear (weight and bias together); its theta_wmin slice is
the slice the layer itself uses at the smallest width (``layer.sliced()``), so the channel
arithmetic is the ops' own and never re-derived. Layers the smallest width uses whole (nothing
sliced, e.g. a fixed-size predictor layer) hold no "rest" and are left out of all three means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from slimssl.nn.ops import SlimConv2d, SlimLinear
from slimssl.nn.switch import SlimmableModel

__all__ = ["SharedLayer", "GradNormRatios", "shared_layers", "grad_norm_ratios"]


@dataclass(frozen=True)
class SharedLayer:
    """One slimmable layer and the leading slice shapes of theta_wmin in it."""

    name: str
    weight: nn.Parameter
    bias: nn.Parameter | None
    weight_slice: tuple[int, ...]
    bias_slice: int

    @property
    def numel_wmin(self) -> int:
        return math.prod(self.weight_slice) + (self.bias_slice if self.bias is not None else 0)

    @property
    def numel(self) -> int:
        return self.weight.numel() + (self.bias.numel() if self.bias is not None else 0)


@dataclass(frozen=True)
class GradNormRatios:
    """Mean layer-wise gradient norms of theta_1.0, theta_wmin and the rest, and their ratios."""

    full: float
    wmin: float
    rest: float
    param_ratio: float  # |theta_1.0 \ theta_wmin| / |theta_wmin|, summed over the layers used
    layers: int

    @property
    def rest_over_wmin(self) -> float:
        return self.rest / self.wmin if self.wmin > 0 else math.inf

    @property
    def full_over_wmin(self) -> float:
        return self.full / self.wmin if self.wmin > 0 else math.inf

    def as_metrics(self) -> dict[str, float]:
        """Metric names logged per measurement (``grad/...``)."""
        return {"grad/rest_over_wmin": self.rest_over_wmin,
                "grad/full_over_wmin": self.full_over_wmin,
                "grad/param_rest_over_wmin": self.param_ratio,
                "grad/norm_full": self.full, "grad/norm_wmin": self.wmin,
                "grad/norm_rest": self.rest}


def shared_layers(model: SlimmableModel) -> list[SharedLayer]:
    """The slimmable conv/linear layers of ``model`` with their theta_wmin slice shapes.

    Computed once (the slices do not change during training); ``model``'s active sub-network is
    restored afterwards.
    """
    out = []
    with model.subnet(model.smallest_spec):
        for name, module in model.named_modules():
            if not isinstance(module, (SlimConv2d, SlimLinear)):
                continue
            weight, bias = module.sliced()[:2]
            layer = SharedLayer(name, module.weight, module.bias, tuple(weight.shape),
                                0 if bias is None else int(bias.shape[0]))
            if layer.numel_wmin < layer.numel:
                out.append(layer)
    if not out:
        raise ValueError("the model has no layer that its smallest width uses only in part")
    return out


def _sq_norms(layer: SharedLayer) -> tuple[float, float] | None:
    """(||g||^2, ||g[wmin slice]||^2) of one layer, or None if it got no gradient this step."""
    g = layer.weight.grad
    if g is None:
        return None
    lead = tuple(slice(0, n) for n in layer.weight_slice)
    full, wmin = g.float().square().sum(), g[lead].float().square().sum()
    if layer.bias is not None and layer.bias.grad is not None:
        gb = layer.bias.grad.float()
        full, wmin = full + gb.square().sum(), wmin + gb[:layer.bias_slice].square().sum()
    return float(full), float(wmin)


@torch.no_grad()
def grad_norm_ratios(layers: Sequence[SharedLayer]) -> GradNormRatios:
    """Ratios of the current ``.grad`` of ``layers`` (SlimCLR Fig. 3).

    ``||g_rest||`` of a layer is ``sqrt(||g||^2 - ||g_wmin||^2)`` (the slices are disjoint), so
    one pass over the gradients suffices. Ratios are invariant to a gradient scaler's scale.
    """
    full = wmin = rest = 0.0
    n_rest = n_wmin = 0
    used = 0
    for layer in layers:
        sq = _sq_norms(layer)
        if sq is None:
            continue
        full += math.sqrt(sq[0])
        wmin += math.sqrt(sq[1])
        rest += math.sqrt(max(sq[0] - sq[1], 0.0))
        n_wmin += layer.numel_wmin
        n_rest += layer.numel - layer.numel_wmin
        used += 1
    if used == 0:
        raise ValueError("no layer has a gradient: call after backward, before zero_grad")
    return GradNormRatios(full / used, wmin / used, rest / used, n_rest / n_wmin, used)
