"""Weighted k-nearest-neighbour evaluation of frozen features.

Protocol of Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", InstDisc), as used by DSPNet (Wang et al.) and SlimCLR
(Zhao et al.) to score every sub-network without training anything:

1. L2-normalise train ("bank") and test features, so a dot product is the cosine
   similarity ``s``.
2. For each test point take the ``k`` most similar bank points.
3. Each neighbour votes for its label with weight ``exp(s / T)``; the votes are summed
   per class and the class with the largest sum is predicted.

Memory: the ``N_test x N_train`` similarity matrix is never materialised. Test
points are processed in chunks of ``chunk`` rows against the whole bank, so the peak
extra memory is ``chunk * N_train`` floats (the default keeps it around 128 MiB, e.g.
~670 rows for a 50,000-point bank).

Ties: ``torch.topk`` does not specify which of several equally similar bank points is
kept at the k-th boundary, so exact-duplicate similarities can make the selected set
implementation-defined (this only matters for duplicated features). Ties in the final
vote go to the lowest class index (``torch.argmax`` returns the first maximum).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
import torch.nn.functional as F

__all__ = ["knn_predict", "knn_accuracy", "default_chunk"]

# Elements of one similarity chunk: 2**25 float32 = 128 MiB.
_CHUNK_ELEMENTS = 1 << 25


def default_chunk(num_bank: int, max_elements: int = _CHUNK_ELEMENTS) -> int:
    """Number of query rows per chunk so that ``rows * num_bank <= max_elements``."""
    return max(1, max_elements // max(1, num_bank))


def _prepare(
    train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError("features must be 2-D (N, C)")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"feature dims differ: train {train_feats.shape[1]} vs test {test_feats.shape[1]}"
        )
    if train_labels.shape[0] != train_feats.shape[0]:
        raise ValueError("train_labels must have one label per train feature")
    bank = F.normalize(train_feats.float(), dim=1)
    labels = train_labels.to(device=bank.device, dtype=torch.long)
    query = test_feats.float()
    return bank, labels, query


def _topk_chunks(
    bank: torch.Tensor, query: torch.Tensor, k: int, chunk: int | None
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(start, sims, idx)`` per query chunk; sims/idx are sorted descending."""
    n_bank = bank.shape[0]
    k = min(k, n_bank)
    step = chunk if chunk is not None else default_chunk(n_bank)
    if step < 1:
        raise ValueError("chunk must be >= 1")
    for start in range(0, query.shape[0], step):
        q = F.normalize(query[start : start + step].to(bank.device), dim=1)
        sim = q @ bank.T  # (chunk, N_bank): the only large temporary
        sims, idx = sim.topk(k, dim=1, largest=True, sorted=True)
        del sim
        yield start, sims, idx


def _vote(
    sims: torch.Tensor, idx: torch.Tensor, labels: torch.Tensor, num_classes: int, t: float
) -> torch.Tensor:
    """Sum ``exp(sim / t)`` of the neighbours per class -> (rows, num_classes)."""
    weights = torch.exp(sims / t)
    neigh_labels = labels[idx]
    scores = torch.zeros(sims.shape[0], num_classes, device=sims.device, dtype=weights.dtype)
    scores.scatter_add_(1, neigh_labels, weights)
    return scores


@torch.no_grad()
def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    num_classes: int,
    k: int = 200,
    t: float = 0.1,
    chunk: int | None = None,
) -> torch.Tensor:
    """Weighted kNN class scores ``(N_test, num_classes)`` (InstDisc, Wu et al. 2018).

    ``scores[i, c] = sum over the k nearest bank points j with label c of exp(cos_ij / t)``.
    The prediction is ``scores.argmax(1)``. Computation happens on ``train_feats``'s
    device; ``chunk`` query rows are processed at a time (default: bounded memory, see
    :func:`default_chunk`). ``k`` is clipped to the bank size.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    bank, labels, query = _prepare(train_feats, train_labels, test_feats)
    out = torch.empty(query.shape[0], num_classes, dtype=torch.float32)
    for start, sims, idx in _topk_chunks(bank, query, k, chunk):
        out[start : start + sims.shape[0]] = _vote(sims, idx, labels, num_classes, t).cpu()
    return out


@torch.no_grad()
def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    ks: Sequence[int] = (200, 20),
    t: float = 0.1,
    chunk: int | None = None,
) -> dict[int, float]:
    """Top-1 accuracy in percent of weighted kNN for every ``k`` in ``ks``.

    The top-k search (the expensive part) is done once for ``max(ks)``; since the
    neighbours come back sorted by similarity, the first ``k`` columns are exactly the
    ``k`` nearest for any smaller ``k`` (up to the tie caveat in the module docstring).
    """
    if not ks:
        raise ValueError("ks must not be empty")
    if min(ks) < 1:
        raise ValueError("every k must be >= 1")
    bank, labels, query = _prepare(train_feats, train_labels, test_feats)
    if test_labels.shape[0] != query.shape[0]:
        raise ValueError("test_labels must have one label per test feature")
    test_labels = test_labels.to(dtype=torch.long)
    correct = {k: 0 for k in ks}
    k_max = max(ks)
    for start, sims, idx in _topk_chunks(bank, query, k_max, chunk):
        y = test_labels[start : start + sims.shape[0]].to(sims.device)
        for k in correct:
            kk = min(k, sims.shape[1])
            pred = _vote(sims[:, :kk], idx[:, :kk], labels, num_classes, t).argmax(1)
            correct[k] += int((pred == y).sum())
    n = max(1, query.shape[0])
    return {k: 100.0 * c / n for k, c in correct.items()}
