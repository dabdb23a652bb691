"""Loss (error) surface around the final weights on a 2-D plane (Li et al. 2018; SlimCLR Fig. 5).

The surface is ``f(theta* + x d1 + y d2)`` on a grid of ``(x, y)``, for two directions:

- the first two PCA directions of the trajectory (:mod:`slimssl.diagnostics.trajectory`), so
  the path the optimizer took can be drawn on the contours (Li et al. Sec. 7, SlimCLR Fig. 5b/d);
- or filter-normalised random directions (Li et al. Sec. 4): a Gaussian direction rescaled so
  each filter has the norm of the corresponding filter of the weights. Without it, a network
  whose filters have small norms looks sharper than a rescaled, functionally identical one;
  with it, surfaces of different networks are comparable.

The metric (SlimCLR uses a kNN predictor for the self-supervised case) is the weighted kNN top-1
of the backbone's features on a fixed small bank and query set, after recomputing the BN
statistics at every point: a perturbed network's stored statistics no longer match its
activations, and without recalibration the surface would measure that mismatch instead of the
weights. The cost per point is one forward pass over ``calib + bank + queries`` images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from slimssl.eval.features import extract_features
from slimssl.eval.knn import knn_accuracy
from slimssl.nn.calibrate import recalibrate_bn
from slimssl.nn.spec import SubnetSpec

__all__ = ["filter_normalized_direction", "grid_axis", "surface", "KnnProbe"]

Weights = Mapping[str, torch.Tensor]


def filter_normalized_direction(weights: Weights, generator: torch.Generator | None = None
                                ) -> dict[str, torch.Tensor]:
    """A Gaussian direction with, for every filter (slice along dim 0) of every tensor, the norm
    of the same filter of ``weights`` (Li et al. 2018, Sec. 4, Eq. 1); all-zero filters stay 0."""
    out = {}
    for name, w in weights.items():
        if w.ndim == 0:
            raise ValueError(f"{name} is a scalar: directions need filters (dim 0)")
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        w64 = w.detach().double().cpu()
        d_norm = d.reshape(d.shape[0], -1).norm(dim=1).clamp_min(1e-12)
        w_norm = w64.reshape(w.shape[0], -1).norm(dim=1)
        scale = (w_norm / d_norm).reshape(-1, *([1] * (w.ndim - 1)))
        out[name] = (d * scale).to(w.dtype)
    return out


def grid_axis(extent: float, points: int) -> torch.Tensor:
    """``points`` evenly spaced coordinates in [-extent, extent] (0 included when odd)."""
    if points < 2 or extent <= 0:
        raise ValueError(f"need >= 2 points and a positive extent, got {points}, {extent}")
    return torch.linspace(-extent, extent, points, dtype=torch.float64)


@torch.no_grad()
def surface(module: nn.Module, origin: Weights, d1: Weights, d2: Weights, xs: torch.Tensor,
            ys: torch.Tensor, metric: Callable[[], float],
            progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """``metric()`` with ``module``'s parameters named in ``origin`` set to
    ``origin + x d1 + y d2``, for every (y, x): a (len(ys), len(xs)) float64 tensor.

    The parameters are put back to ``origin`` afterwards, also on error. ``progress(done,
    total)`` is called after each point.
    """
    params = dict(module.named_parameters())
    missing = [k for k in origin if k not in params]
    if missing:
        raise KeyError(f"the module has no parameters named {missing[:3]}")
    values = torch.empty(len(ys), len(xs), dtype=torch.float64)
    try:
        for i, y in enumerate(ys.tolist()):
            for j, x in enumerate(xs.tolist()):
                for k, w in origin.items():
                    params[k].copy_(w + x * d1[k] + y * d2[k])
                values[i, j] = metric()
                if progress is not None:
                    progress(i * len(xs) + j + 1, values.numel())
    finally:
        for k, w in origin.items():
            params[k].copy_(w)
    return values


@dataclass
class KnnProbe:
    """Weighted kNN top-1 (%) of ``model`` at ``spec``, BN statistics recomputed first.

    ``bank``/``queries`` are uint8 image tensors with their labels; ``calib`` the images whose
    statistics the BN layers get (the first ``calib_images`` of the bank is a natural choice);
    ``transform`` maps a uint8 batch to model input. Everything is fixed, so two points differ
    only by their weights.
    """

    model: nn.Module
    spec: SubnetSpec
    bank: torch.Tensor
    bank_labels: torch.Tensor
    queries: torch.Tensor
    query_labels: torch.Tensor
    calib: torch.Tensor
    transform: Callable[[torch.Tensor], torch.Tensor]
    k: int = 20
    t: float = 0.1
    batch_size: int = 256

    def __call__(self) -> float:
        device = next(self.model.parameters()).device
        batches = (self.transform(self.calib[i:i + self.batch_size].to(device))
                   for i in range(0, len(self.calib), self.batch_size))
        recalibrate_bn(self.model, self.spec, batches, num_images=len(self.calib))
        bank = extract_features(self.model, self.spec, self.bank, self.transform,
                                self.batch_size)
        query = extract_features(self.model, self.spec, self.queries, self.transform,
                                 self.batch_size)
        classes = int(max(self.bank_labels.max(), self.query_labels.max())) + 1
        return knn_accuracy(bank, self.bank_labels, query, self.query_labels, classes,
                            (self.k,), self.t)[self.k]
