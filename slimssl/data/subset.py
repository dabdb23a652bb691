"""Class-balanced, seeded subsets (e.g. the 1% / 10% labelled splits of semi-supervised eval,
SlimCLR Zhao et al. 2023, Sec. 4; or a small kNN bank)."""

from __future__ import annotations

import math

import torch

from slimssl.data.errors import DataError


def balanced_subset(
    labels: torch.Tensor | None,
    fraction: float | None = None,
    count: int | None = None,
    seed: int = 0,
    num_samples: int | None = None,
) -> torch.Tensor:
    """Sorted ``LongTensor`` of indices of a class-balanced random subset.

    Give exactly one of ``fraction`` (of each class, at least one image per class) or ``count``
    (total; spread as evenly as the classes allow, remainders to randomly chosen classes). With
    ``labels=None`` (unlabeled data) the subset is a plain random one of ``num_samples`` items.
    """
    if (fraction is None) == (count is None):
        raise DataError("give exactly one of fraction= or count= to balanced_subset")
    g = torch.Generator().manual_seed(seed)
    if labels is None:
        if num_samples is None:
            raise DataError("balanced_subset(labels=None) needs num_samples")
        n = num_samples
        k = _total(n, fraction, count)
        return torch.randperm(n, generator=g)[:k].sort().values
    labels = torch.as_tensor(labels, dtype=torch.long)
    n = labels.numel()
    k_total = _total(n, fraction, count)
    classes = labels.unique()
    members = [torch.nonzero(labels == c).flatten() for c in classes]
    if fraction is not None:
        want = [min(len(m), max(1, round(fraction * len(m)))) for m in members]
    else:
        want = _spread(k_total, [len(m) for m in members], g)
    picked = []
    for m, k in zip(members, want):
        perm = torch.randperm(len(m), generator=g)
        picked.append(m[perm[:k]])
    return torch.cat(picked).sort().values


def _total(n: int, fraction: float | None, count: int | None) -> int:
    if fraction is not None:
        if not 0.0 < fraction <= 1.0:
            raise DataError(f"fraction must be in (0, 1], got {fraction}")
        return max(1, math.floor(fraction * n + 0.5))
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
