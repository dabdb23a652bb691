"""k-nearest-neighbour evaluation of frozen features: weighted (InstDisc) or majority vote.

Protocol of Wu et al. 2018 ("Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", InstDisc), as used by DSPNet (Wang et al.) and SlimCLR
(Zhao et al.) to score every sub-network without training anything:

1. L2-normalise train ("bank") and test features, so a dot product is the cosine
   similarity ``s``.
2. For each test point take the ``k`` most similar bank points.
3. Each neighbour votes for its label with weight ``exp(s / T)``; the votes are summed
   per class and the class with the largest sum is predicted.

``vote="majority"`` is DSPNet's protocol instead (App. 0.A.2, Tab. 1a: "a sample is classified
by taking the most frequent label of its K-nearest neighbors (K = 20)"): every neighbour counts
once. Ties between equally frequent classes go to the one whose nearest neighbour is the most
similar (the tied class met first in the similarity-sorted list), i.e. a tie is broken by the
distance information a plain count throws away, deterministically. Results of that protocol
are stored under :func:`knn_key` names ending in ``_majority`` (``knn_top1_k20_majority``).

Memory: the ``N_test x N_train`` similarity matrix is never materialised. Test
points are processed in chunks of ``chunk`` rows against the whole bank, so the peak
extra memory is ``chunk * N_train`` floats (the default keeps it around 128 MiB, e.g.
~670 rows for a 50,000-point bank). :func:`knn_correct` also takes the bank shard by shard
(feature shards on disk, :mod:`slimssl.eval.feature_store`): each shard's top-k is merged into
the running top-k, so an ImageNet-size bank never has to be in memory at once.

Ties: ``torch.topk`` does not specify which of several equally similar bank points is
kept at the k-th boundary, so exact-duplicate similarities can make the selected set
implementation-defined (this only matters for duplicated features). Ties in the final
vote go to the lowest class index (``torch.argmax`` returns the first maximum).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

__all__ = ["VOTES", "knn_key", "knn_predict", "knn_accuracy", "knn_correct", "default_chunk"]

#: The kNN protocols: InstDisc's similarity-weighted vote, DSPNet's plain majority vote.
VOTES = ("weighted", "majority")

# Elements of one similarity chunk: 2**25 float32 = 128 MiB.
_CHUNK_ELEMENTS = 1 << 25

#: A re-iterable bank: each call yields ``(features, labels)`` shards.
BankShards = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def default_chunk(num_bank: int, max_elements: int = _CHUNK_ELEMENTS) -> int:
    """Number of query rows per chunk so that ``rows * num_bank <= max_elements``."""
    return max(1, max_elements // max(1, num_bank))


def _check(train_feats: torch.Tensor, train_labels: torch.Tensor, test_feats: torch.Tensor) -> None:
    if train_feats.ndim != 2 or test_feats.ndim != 2:
        raise ValueError("features must be 2-D (N, C)")
    if train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(
            f"feature dims differ: train {train_feats.shape[1]} vs test {test_feats.shape[1]}"
        )
    if train_labels.shape[0] != train_feats.shape[0]:
        raise ValueError("train_labels must have one label per train feature")


def _nearest(query: torch.Tensor, bank: BankShards, k: int, device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities ``(rows, k')`` (sorted, descending) and labels of the ``k`` nearest bank
    points of each query row, ``k' = min(k, bank size)``. The bank comes shard by shard and the
    running top-k is merged with each shard's top-k, so only ``rows x shard`` similarities
    exist at once; one shard gives exactly a single ``topk`` over the whole bank."""
    q = F.normalize(query.float().to(device), dim=1)
    best_s = q.new_empty(q.shape[0], 0)
    best_y = torch.empty(q.shape[0], 0, dtype=torch.long, device=device)
    for feats, labels in bank():
        if feats.shape[1] != q.shape[1]:
            raise ValueError(f"feature dims differ: bank {feats.shape[1]} vs query {q.shape[1]}")
        b = F.normalize(feats.float().to(device), dim=1)
        sim = q @ b.T  # (rows, shard): the only large temporary
        top_s, top_i = sim.topk(min(k, sim.shape[1]), dim=1, largest=True, sorted=True)
        del sim
        cand_s = torch.cat([best_s, top_s], 1)
        cand_y = torch.cat([best_y, labels.to(device=device, dtype=torch.long)[top_i]], 1)
        best_s, pick = cand_s.topk(min(k, cand_s.shape[1]), dim=1, largest=True, sorted=True)
        best_y = cand_y.gather(1, pick)
    return best_s, best_y


def knn_key(k: int, vote: str = "weighted") -> str:
    """Result column of top-1 accuracy with ``k`` neighbours: ``knn_top1_k{k}`` (weighted, the
    default protocol) or ``knn_top1_k{k}_majority``."""
    _check_vote(vote)
    return f"knn_top1_k{k}" if vote == "weighted" else f"knn_top1_k{k}_{vote}"


def _check_vote(vote: str) -> None:
    if vote not in VOTES:
        raise ValueError(f"unknown kNN vote {vote!r}; expected one of {', '.join(VOTES)}")


def _vote(sims: torch.Tensor, neigh_labels: torch.Tensor, num_classes: int, t: float,
          vote: str = "weighted") -> torch.Tensor:
    """Class scores (rows, num_classes) of the neighbours, sorted by descending similarity.

    ``weighted``: the sum of ``exp(sim / t)`` per class. ``majority``: the neighbour count per
    class plus ``(k - r) / (k + 1)``, ``r`` the rank of the class's nearest neighbour (``k`` for
    an absent class): the integer part is the vote, the fraction (< 1) breaks ties in favour of
    the class met first, and ``argmax`` gives the prediction of the module docstring's rule.
    """
    if vote == "weighted":
        weights = torch.exp(sims / t)
        scores = torch.zeros(sims.shape[0], num_classes, device=sims.device,
                             dtype=weights.dtype)
        scores.scatter_add_(1, neigh_labels, weights)
        return scores
    _check_vote(vote)
    rows, k = neigh_labels.shape
    counts = torch.zeros(rows, num_classes, device=neigh_labels.device, dtype=torch.float64)
    counts.scatter_add_(1, neigh_labels, torch.ones_like(neigh_labels, dtype=torch.float64))
    rank = torch.arange(k, device=neigh_labels.device).expand(rows, k)
    first = torch.full((rows, num_classes), k, device=neigh_labels.device, dtype=torch.long)
    first.scatter_reduce_(1, neigh_labels, rank, reduce="amin")
    return counts + (k - first).to(torch.float64) / (k + 1)


def _one_shard(feats: torch.Tensor, labels: torch.Tensor) -> BankShards:
    return lambda: [(feats, labels)]


@torch.no_grad()
def knn_predict(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    num_classes: int,
    k: int = 200,
    t: float = 0.1,
    chunk: int | None = None,
    vote: str = "weighted",
) -> torch.Tensor:
    """kNN class scores ``(N_test, num_classes)``; the prediction is ``scores.argmax(1)``.

    Weighted (InstDisc, Wu et al. 2018): ``scores[i, c] = sum over the k nearest bank points j
    with label c of exp(cos_ij / t)``. Majority (DSPNet): votes per class plus the tie-breaking
    fraction of the module docstring (``t`` unused). Computation happens on ``train_feats``'s
    device; ``chunk`` query rows are processed at a time (default: bounded memory, see
    :func:`default_chunk`). ``k`` is clipped to the bank size.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    _check_vote(vote)
    _check(train_feats, train_labels, test_feats)
    step = chunk if chunk is not None else default_chunk(train_feats.shape[0])
    if step < 1:
        raise ValueError("chunk must be >= 1")
    bank = _one_shard(train_feats, train_labels)
    out = torch.empty(test_feats.shape[0], num_classes, dtype=torch.float32)
    for start in range(0, test_feats.shape[0], step):
        sims, ys = _nearest(test_feats[start:start + step], bank, k, train_feats.device)
        out[start:start + sims.shape[0]] = _vote(sims, ys, num_classes, t, vote).float().cpu()
    return out


@torch.no_grad()
def knn_correct(
    bank: BankShards,
    queries: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    ks: Sequence[int] = (200, 20),
    t: float = 0.1,
    device: torch.device | str = "cpu",
    vote: str = "weighted",
) -> tuple[dict[int, int], int]:
    """Correct predictions per ``k`` and the number of queries, for a bank given shard by shard
    (``bank()`` re-iterable, e.g. feature shards on disk) and query blocks ``(features,
    labels)``: the memory used is one query block times one bank shard, whatever the size of
    the dataset. The top-k search is done once for ``max(ks)``; the neighbours come back sorted,
    so the first ``k`` columns are the ``k`` nearest for any smaller ``k`` (up to ties).
    ``vote``: ``weighted`` or ``majority`` (module docstring)."""
    _check_vote(vote)
    if not ks:
        raise ValueError("ks must not be empty")
    if min(ks) < 1:
        raise ValueError("every k must be >= 1")
    dev = torch.device(device)
    correct, total = {k: 0 for k in ks}, 0
    for feats, labels in queries:
        if labels.shape[0] != feats.shape[0]:
            raise ValueError("test_labels must have one label per test feature")
        sims, ys = _nearest(feats, bank, max(ks), dev)
        y = labels.to(device=dev, dtype=torch.long)
        for k in correct:
            kk = min(k, sims.shape[1])
            pred = _vote(sims[:, :kk], ys[:, :kk], num_classes, t, vote).argmax(1)
            correct[k] += int((pred == y).sum())
        total += int(feats.shape[0])
    return correct, total


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
    vote: str = "weighted",
) -> dict[int, float]:
    """Top-1 accuracy in percent of weighted (or ``vote="majority"``) kNN for every ``k`` in
    ``ks`` (in-memory features; :func:`knn_correct` for a bank in shards)."""
    _check(train_feats, train_labels, test_feats)
    if test_labels.shape[0] != test_feats.shape[0]:
        raise ValueError("test_labels must have one label per test feature")
    step = chunk if chunk is not None else default_chunk(train_feats.shape[0])
    if step < 1:
        raise ValueError("chunk must be >= 1")
    blocks = ((test_feats[i:i + step], test_labels[i:i + step])
              for i in range(0, test_feats.shape[0], step))
    correct, n = knn_correct(_one_shard(train_feats, train_labels), blocks, num_classes, ks, t,
                             train_feats.device, vote)
    return {k: 100.0 * c / max(1, n) for k, c in correct.items()}
