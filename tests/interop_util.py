"""Shared by the interop tests: a network whose BatchNorms are not identities."""

from __future__ import annotations

import torch
from torch import nn


def trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN affines and running statistics (a fresh network's are identities, under which
    a wrong channel slice of a BN would go unnoticed); every width's private BN of a switchable
    family too. Returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)

    def draw(t: torch.Tensor, low: float, high: float) -> None:
        t.copy_(torch.rand(t.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                draw(m.weight, 0.5, 1.5)
                draw(m.bias, -0.2, 0.2)
                draw(m.running_mean, -0.2, 0.2)
                draw(m.running_var, 0.5, 1.5)
    return model.eval()
