"""Class-balanced, seeded subsets: the only implementation, used for the pre-training
``data.train_fraction`` subset, the 1% / 10% labelled splits of semi-supervised evaluation
(SimCLR/BYOL protocol, used by SlimCLR Zhao et al. 2023 Sec. 4 and DSPNet) and small kNN banks.

The draw depends only on ``(labels, fraction or count, seed)``, so the pre-training subset and
the semi-supervised subset of the same fraction and seed are the same images. Subsets are stored
as JSON index files (:func:`save_subset` / :func:`load_subset`) so that every sub-network and
every re-run sees exactly the same labels.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import torch

from slimssl.data.errors import DataError

__all__ = ["per_class_count", "balanced_subset", "save_subset", "load_subset"]


def per_class_count(n_c: int, fraction: float) -> int:
    """Images a class of ``n_c`` contributes to a ``fraction`` subset: ``fraction * n_c`` rounded
    half UP (``floor(x + 0.5)``, so 2.5 -> 3, not Python's half-to-even 2), at least 1 and at
    most ``n_c`` (0 for an empty class)."""
    if n_c <= 0:
        return 0
    return min(n_c, max(1, math.floor(fraction * n_c + 0.5)))


def balanced_subset(
    labels: torch.Tensor | None,
    fraction: float | None = None,
    count: int | None = None,
    seed: int = 0,
    num_samples: int | None = None,
) -> torch.Tensor:
    """Sorted ``LongTensor`` of indices of a class-balanced random subset.

    Give exactly one of ``fraction`` (of each class: :func:`per_class_count` images) or
    ``count`` (total; spread as evenly as the classes allow, remainders to randomly chosen
    classes). With ``labels=None`` (unlabeled data) the subset is a plain random one of
    ``num_samples`` items (``fraction * num_samples`` rounded half up). Classes are visited in
    sorted order with one generator seeded by ``seed``, each drawing without replacement.
    """
    if (fraction is None) == (count is None):
        raise DataError("give exactly one of fraction= or count= to balanced_subset")
    g = torch.Generator().manual_seed(int(seed))
    if labels is None:
        if num_samples is None:
            raise DataError("balanced_subset(labels=None) needs num_samples")
        n = num_samples
        k = _total(n, fraction, count)
        return torch.randperm(n, generator=g)[:k].sort().values
    labels = torch.as_tensor(labels, dtype=torch.long).flatten()
    n = labels.numel()
    k_total = _total(n, fraction, count)
    classes = labels.unique()
    members = [torch.nonzero(labels == c).flatten() for c in classes]
    if fraction is not None:
        want = [per_class_count(len(m), fraction) for m in members]
    else:
        want = _spread(k_total, [len(m) for m in members], g)
    picked = []
    for m, k in zip(members, want):
        perm = torch.randperm(len(m), generator=g)
        picked.append(m[perm[:k]])
    if not picked:
        return torch.empty(0, dtype=torch.long)
    return torch.cat(picked).sort().values


def _total(n: int, fraction: float | None, count: int | None) -> int:
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise DataError(f"fraction must be in (0, 1], got {fraction}")
        return per_class_count(n, fraction)
    assert count is not None
    if not 0 < count <= n:
        raise DataError(f"count must be in 1..{n} (the dataset size), got {count}")
    return count


def _spread(total: int, sizes: list[int], g: torch.Generator) -> list[int]:
    """Distribute ``total`` over classes of ``sizes`` as evenly as capacity allows."""
    want = [0] * len(sizes)
    remaining = total
    open_classes = list(range(len(sizes)))
    while remaining > 0 and open_classes:
        share = remaining // len(open_classes)
        if share == 0:
            order = torch.randperm(len(open_classes), generator=g).tolist()
            for j in order[:remaining]:
                want[open_classes[j]] += 1
            break
        for c in list(open_classes):
            add = min(share, sizes[c] - want[c])
            want[c] += add
            remaining -= add
        open_classes = [c for c in open_classes if want[c] < sizes[c]]
    return want


def save_subset(indices: torch.Tensor | Sequence[int], path: str | Path, **meta: Any) -> Path:
    """Write ``{"indices": [...], **meta}`` (e.g. fraction, seed) as JSON; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    idx = torch.as_tensor(indices, dtype=torch.long).flatten().tolist()
    path.write_text(json.dumps({**meta, "count": len(idx), "indices": idx}))
    return path


def load_subset(path: str | Path) -> torch.Tensor:
    """Indices saved by :func:`save_subset` (also accepts a bare JSON list)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"subset file {path} does not exist; give the JSON written by "
                        "save_subset (or a JSON list of indices)")
    data = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data["indices"]
    return torch.tensor(data, dtype=torch.long)
