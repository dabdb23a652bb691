"""Class-balanced labelled subsets for semi-supervised evaluation (1% / 10% labels).

The semi-supervised protocol of SimCLR/BYOL, used by SlimCLR (Zhao et al.) and DSPNet
(Wang et al.), fine-tunes on a small labelled fraction of the training set. We draw a
class-balanced subset with a fixed seed and store the indices as JSON in the run
directory, so every sub-network and every re-run sees exactly the same labels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["per_class_count", "balanced_label_subset", "save_subset", "load_subset"]


def per_class_count(n_c: int, fraction: float) -> int:
    """``round(fraction * n_c)`` with halves rounded up, at least 1 (if the class has any)."""
    if n_c <= 0:
        return 0
    return min(n_c, max(1, math.floor(fraction * n_c + 0.5)))


def balanced_label_subset(
    labels: torch.Tensor | np.ndarray | Sequence[int], fraction: float, seed: int = 0
) -> torch.Tensor:
    """Sorted indices (LongTensor) of a seeded, class-balanced subset of ``labels``.

    Every class ``c`` with ``n_c`` samples contributes exactly
    :func:`per_class_count` ``(n_c, fraction)`` samples, drawn without replacement.
    The draw depends only on ``(labels, fraction, seed)``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError("fraction must be in (0, 1]")
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long).flatten()
    gen = torch.Generator().manual_seed(int(seed))
    chosen: list[torch.Tensor] = []
    for c in torch.unique(y).tolist():  # sorted, so the draw order is fixed
        idx = torch.nonzero(y == c, as_tuple=False).flatten()
        m = per_class_count(idx.numel(), fraction)
        perm = torch.randperm(idx.numel(), generator=gen)[:m]
        chosen.append(idx[perm])
    if not chosen:
        return torch.empty(0, dtype=torch.long)
    return torch.sort(torch.cat(chosen)).values


def save_subset(indices: torch.Tensor | Sequence[int], path: str | Path, **meta: Any) -> Path:
    """Write ``{"indices": [...], **meta}`` (e.g. fraction, seed) as JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    idx = torch.as_tensor(indices, dtype=torch.long).flatten().tolist()
    payload = {**meta, "count": len(idx), "indices": idx}
    path.write_text(json.dumps(payload))
    return path


def load_subset(path: str | Path) -> torch.Tensor:
    """Indices saved by :func:`save_subset` (also accepts a bare JSON list)."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict):
        data = data["indices"]
    return torch.tensor(data, dtype=torch.long)
