"""Gradient-direction divergence: PCA of the last linear layer's gradients over training.

SlimCLR (Zhao et al., ICCV 2023) Sec. 3.2, Fig. 4: collect the gradient of the last linear layer
during training, then project the collected gradients on their first two principal components
(as Li et al. 2018 do for optimisation trajectories). While only the full network trains (before
the slow-start point) consecutive gradients point the same way and the trajectory is smooth;
once the sub-networks join, their conflicting gradients make it scatter. The consecutive cosine
similarity of the snapshots puts that picture into one number per phase.

Snapshots are written one file per measured step (``step_XXXXXXXX.pt`` under the run's
``diagnostics/direction/``), so a long run never holds them in memory and a resumed run simply
drops the files newer than the step it resumes from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from slimssl.diagnostics.step_files import StepFiles

__all__ = ["last_linear", "flat_grad", "SnapshotStore", "Snapshots", "principal_directions",
           "principal_projection", "consecutive_cosine"]


def last_linear(model: nn.Module, name: str | None = None) -> tuple[str, nn.Linear]:
    """The linear layer called ``name``, or the last ``nn.Linear`` registered in ``model``
    (the projector's/predictor's output layer of an SSL encoder: the layer Fig. 4 watches)."""
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if name is not None:
        linears = [(n, m) for n, m in linears if n == name]
        if not linears:
            known = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            raise ValueError(f"no linear layer named {name!r}; linear layers: {known}")
    if not linears:
        raise ValueError("the model has no linear layer")
    return linears[-1]


def flat_grad(layer: nn.Linear, scale: float = 1.0) -> torch.Tensor | None:
    """Weight and bias gradient as one float32 CPU vector divided by ``scale`` (an fp16
    gradient scaler's factor, so snapshots of different steps are comparable); None if the layer
    got no gradient."""
    if layer.weight.grad is None:
        return None
    parts = [layer.weight.grad.reshape(-1)]
    if layer.bias is not None and layer.bias.grad is not None:
        parts.append(layer.bias.grad.reshape(-1))
    return torch.cat(parts).float().div(scale).cpu()


@dataclass
class Snapshots:
    """Stacked gradient snapshots: ``grads`` (T, D), their ``steps`` and fractional ``epochs``."""

    grads: torch.Tensor
    steps: list[int]
    epochs: list[float]
    layer: str


class SnapshotStore(StepFiles):
    """One ``.pt`` file per snapshot in ``directory`` (tensors and primitives only, so loading
    uses ``weights_only=True``)."""

    suffix = ".pt"

    def save(self, step: int, epoch: float, layer: str, grad: torch.Tensor) -> Path:
        item = {"step": step, "epoch": float(epoch), "layer": layer, "grad": grad}
        return self._write(step, lambda tmp: torch.save(item, tmp))

    def load(self) -> Snapshots | None:
        """All snapshots in step order, or None if there are none."""
        items = [torch.load(p, weights_only=True) for _, p in self.files()]
        if not items:
            return None
        return Snapshots(torch.stack([it["grad"] for it in items]), [it["step"] for it in items],
                         [it["epoch"] for it in items], items[-1]["layer"])


def principal_directions(rows: torch.Tensor, components: int = 2
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``components`` principal directions (k, D) of ``rows`` (T, D), unit norm, in
    float64, and the fraction of variance each explains (PCA: the rows are centred first).

    Each direction's sign is fixed so that its largest-magnitude coordinate is positive, which
    makes plots deterministic (an SVD's signs are arbitrary).
    """
    if rows.ndim != 2 or rows.shape[0] < 2:
        raise ValueError(f"need at least two snapshots (T, D), got shape {tuple(rows.shape)}")
    x = rows.double() - rows.double().mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    k = min(components, vh.shape[0])
    v = vh[:k]
    v = v * torch.sign(v.gather(1, v.abs().argmax(1, keepdim=True)))
    explained = s.square() / s.square().sum().clamp_min(1e-300)
    return v, explained[:k]


def principal_projection(grads: torch.Tensor, components: int = 2
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Projections (T, components) of the centred snapshots on their principal directions
    (:func:`principal_directions`), and the fraction of variance each direction explains."""
    v, explained = principal_directions(grads, components)
    x = grads.double() - grads.double().mean(0, keepdim=True)
    return (x @ v.T).float(), explained.float()


def consecutive_cosine(grads: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of each snapshot with the next (T-1,): near 1 = a stable direction."""
    g = torch.nn.functional.normalize(grads.double(), dim=1)
    return (g[1:] * g[:-1]).sum(1).float()
