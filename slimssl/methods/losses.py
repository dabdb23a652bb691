"""Self-supervised loss functions shared by the methods (pure tensor code, no models).

Every function maps embeddings (or logits) to a scalar loss averaged over the batch. They know
nothing about sub-networks, schedules or weights: those live in :mod:`slimssl.recipes`.

Conventions
-----------
* ``*_logits`` functions take vectors that are **already L2-normalised** (rows of unit length);
  they are building blocks that the recipes also use for logit distillation, so they must not
  change their inputs. Pass ``temperature=1.0`` to get the raw similarities (that is what SlimCLR
  distils, see :mod:`slimssl.recipes.distillation`).
* :func:`mocov3_loss` takes those raw similarities (temperature 1) and applies MoCo v3's
  temperature itself, so the method can distil the same similarities.
* :func:`byol_loss` and :func:`simsiam_loss` work on cosine similarities (normalisation is part
  of the cosine). SimCLR's NT-Xent lives with its method
  (:func:`slimssl.methods.simclr.nt_xent_global`) because it gathers across ranks.
* Targets (keys, target projections) carry no gradient: they are detached where the paper uses
  a stop-gradient.

References
----------
* MoCo v2: X. Chen, H. Fan, R. Girshick, K. He, "Improved Baselines with Momentum Contrastive
  Learning", arXiv 2003.04297, 2020 (MoCo: He et al., CVPR 2020).
* MoCo v3: X. Chen, S. Xie, K. He, "An Empirical Study of Training Self-Supervised Vision
  Transformers", ICCV 2021.
* BYOL: J.-B. Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020.
* SimCLR: T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for Contrastive
  Learning of Visual Representations", ICML 2020.
* SimSiam: X. Chen, K. He, "Exploring Simple Siamese Representation Learning", CVPR 2021.
* SlimCLR: S. Zhao, X. Wang, L. Zhu, Y. Yang, "Slimmable Networks for Contrastive
  Self-supervised Learning", ICCV 2023 (Eq. 1: the per-width InfoNCE of SlimCLR-MoCov2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "moco_logits",
    "info_nce_from_logits",
    "in_batch_logits",
    "mocov3_loss",
    "byol_loss",
    "simsiam_loss",
    "MemoryQueue",
]


def _check_2d(name: str, x: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"{name} must be 2-D (batch, dim), got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------
# MoCo v2 (queue of negatives)
# --------------------------------------------------------------------------------------------


def moco_logits(q: Tensor, k_pos: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo v2 logits ``[q . k+, q . queue^T] / tau`` of shape ``(B, 1 + K)``.

    MoCo v2 (Chen et al. 2020) and SlimCLR Eq. 1 (Zhao et al. ICCV 2023): column 0 holds the
    positive similarity ``q_b . k+_b``, columns 1..K the similarities with the K negatives of the
    queue, all divided by the temperature ``tau`` (SlimCLR-MoCov2: ``tau1 = 0.2``).

    Args:
        q: queries ``(B, D)``, L2-normalised (online branch at one sub-network width).
        k_pos: positive keys ``(B, D)``, L2-normalised (full-width momentum encoder). Detached.
        queue: negatives ``(K, D)``, L2-normalised, stored row-wise as in :class:`MemoryQueue`.
            Detached. If the queue is updated in place before ``backward()``, pass a copy
            (:meth:`MemoryQueue.snapshot`), otherwise autograd sees a modified saved tensor.
        temperature: ``tau > 0``; use ``1.0`` for the raw similarities that SlimCLR distils.

    Returns:
        logits ``(B, 1 + K)``; the target class of every row is 0.

    Example:
        >>> q = F.normalize(torch.randn(4, 8), dim=1)
        >>> k = F.normalize(torch.randn(4, 8), dim=1)
        >>> queue = F.normalize(torch.randn(16, 8), dim=1)
        >>> loss = info_nce_from_logits(moco_logits(q, k, queue, 0.2))
    """
    _check_2d("q", q)
    _check_2d("k_pos", k_pos)
    _check_2d("queue", queue)
    if q.shape != k_pos.shape:
        raise ValueError(f"q {tuple(q.shape)} and k_pos {tuple(k_pos.shape)} differ")
    if queue.shape[1] != q.shape[1]:
        raise ValueError(f"queue dim {queue.shape[1]} != query dim {q.shape[1]}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    k_pos = k_pos.detach()
    queue = queue.detach().to(q.dtype)
    l_pos = (q * k_pos).sum(dim=1, keepdim=True)  # (B, 1)
    l_neg = q @ queue.t()  # (B, K)
    return torch.cat([l_pos, l_neg], dim=1) / temperature


def info_nce_from_logits(logits: Tensor) -> Tensor:
    """InfoNCE ``CE(logits, 0)`` averaged over the batch (positive in column 0).

    ``-log( exp(l_0) / sum_j exp(l_j) )`` per row: SlimCLR Eq. 1, MoCo v2's loss. Feed it
    :func:`moco_logits` (already divided by the temperature).

    Example:
        >>> info_nce_from_logits(torch.tensor([[1.0, 0.0]]))  # = log(1 + e^-1)
        tensor(0.3133)
    """
    _check_2d("logits", logits)
    labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, labels)


# --------------------------------------------------------------------------------------------
# MoCo v3 (in-batch negatives)
# --------------------------------------------------------------------------------------------


def in_batch_logits(
    q: Tensor, k_all: Tensor, rank: int, temperature: float
) -> tuple[Tensor, Tensor]:
    """MoCo v3 in-batch logits ``q k_all^T / tau`` and their labels.

    MoCo v3 (Chen, Xie, He ICCV 2021): the keys of the whole global batch (gathered from all
    ranks by the caller, rank-major order) are the candidates; query ``b`` on rank ``r`` has its
    positive at column ``r * B + b`` (the diagonal of this rank's block), every other key is a
    negative.

    Args:
        q: queries ``(B, D)`` of this rank, L2-normalised.
        k_all: keys ``(world * B, D)`` gathered across ranks, L2-normalised. Detached.
        rank: this process's rank (0 in a single process).
        temperature: ``tau > 0`` (SlimCLR-MoCov3: 1.0; 1.0 also gives raw logits).

    Returns:
        ``(logits, labels)``: logits ``(B, world * B)``, labels ``arange(B) + rank * B``.

    Example:
        >>> q = F.normalize(torch.randn(4, 8), dim=1)
        >>> logits, labels = in_batch_logits(q, q.detach(), rank=0, temperature=1.0)
    """
    _check_2d("q", q)
    _check_2d("k_all", k_all)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    b = q.shape[0]
    if k_all.shape[0] < (rank + 1) * b or k_all.shape[1] != q.shape[1]:
        raise ValueError(
            f"k_all {tuple(k_all.shape)} cannot hold rank {rank}'s block of {b} keys of dim "
            f"{q.shape[1]}"
        )
    logits = q @ k_all.detach().to(q.dtype).t() / temperature
    labels = torch.arange(b, device=q.device, dtype=torch.long) + rank * b
    return logits, labels


def mocov3_loss(s12: Tensor, s21: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Symmetric MoCo v3 loss ``ctr(q1, k2) + ctr(q2, k1)`` from raw similarities.

    MoCo v3 (Chen, Xie, He ICCV 2021, Alg. 1 / official code):
    ``ctr(q, k) = 2 tau CE(q k^T / tau, labels)``; the ``2 tau`` factor makes the gradient scale
    independent of the temperature. ``s12 = q1 k2^T`` and ``s21 = q2 k1^T`` are the
    :func:`in_batch_logits` of L2-normalised vectors at temperature 1 (raw similarities, which
    SlimCLR-MoCov3 also distils); ``labels`` the positives' columns. SlimCLR-MoCov3 uses
    ``tau = 1.0`` per sub-network width, the keys always from the full-width target (Sec. 3).
    """
    _check_2d("s12", s12)
    _check_2d("s21", s21)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    tau = temperature
    return 2 * tau * (F.cross_entropy(s12 / tau, labels) + F.cross_entropy(s21 / tau, labels))


# --------------------------------------------------------------------------------------------
# Non-contrastive losses
# --------------------------------------------------------------------------------------------


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL regression loss ``2 - 2 cos(p, z)`` averaged over the batch (one direction).

    BYOL (Grill et al. 2020), Eq. 2: ``||p/||p|| - z/||z||||^2 = 2 - 2 cos(p, z)`` with ``p`` the
    online prediction and ``z`` the target projection (stop-gradient: ``z`` is detached). The
    **caller symmetrises**: ``byol_loss(p1, z2) + byol_loss(p2, z1)`` (BYOL's ``L + L~``; DSPNet
    Eq. 4-5, Wang et al. 2022, sums it over the sampled sub-networks).

    Example:
        >>> byol_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))  # cos = 0
        tensor(2.)
    """
    _check_2d("p", p)
    _check_2d("z", z)
    cos = F.cosine_similarity(p, z.detach().to(p.dtype), dim=1)
    return (2.0 - 2.0 * cos).mean()


def simsiam_loss(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam loss ``-cos(p, sg(z))`` averaged over the batch (one direction).

    SimSiam (Chen & He, CVPR 2021), Eq. 1-2: ``D(p, z) = -cos(p, stopgrad(z))``; the caller
    symmetrises ``0.5 * D(p1, z2) + 0.5 * D(p2, z1)``.

    Example:
        >>> simsiam_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]))
        tensor(-1.)
    """
    _check_2d("p", p)
    _check_2d("z", z)
    return -F.cosine_similarity(p, z.detach().to(p.dtype), dim=1).mean()


# --------------------------------------------------------------------------------------------
# Queue of negatives
# --------------------------------------------------------------------------------------------


class MemoryQueue(nn.Module):
    """FIFO queue of ``K`` negative keys (MoCo, He et al. CVPR 2020; MoCo v2).

    Buffers (saved in ``state_dict``, moved by ``.to()``):
      * ``queue``: ``(K, D)`` keys, one per row, initialised with random unit vectors;
      * ``ptr``: 0-dim ``long``, the row where the next key is written.

    :meth:`enqueue` overwrites the oldest rows with new keys starting at ``ptr`` and wraps
    around: when ``K`` is not a multiple of the batch size the write is split in two parts
    (``[ptr, K)`` then ``[0, rest)``). Nothing distributed happens here: under DDP the caller
    gathers the keys of all ranks first (the same gathered batch on every rank keeps the
    queues identical). SlimCLR-MoCov2 enqueues the full-width target keys once per iteration.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> queue = MemoryQueue(size=6, dim=3, generator=g)
        >>> queue.enqueue(F.normalize(torch.randn(4, 3), dim=1))
        >>> int(queue.ptr)
        4
    """

    queue: Tensor
    ptr: Tensor

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"size and dim must be positive, got {size}, {dim}")
        init = torch.randn(size, dim, generator=generator)
        self.register_buffer("queue", F.normalize(init, dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        # host copy of ``ptr``: enqueueing must not read the device buffer every step (a GPU
        # sync); re-read after load_state_dict
        self._ptr_host: int | None = 0

    @property
    def size(self) -> int:
        """Number of stored keys ``K``."""
        return self.queue.shape[0]

    @property
    def dim(self) -> int:
        """Key dimension ``D``."""
        return self.queue.shape[1]

    def snapshot(self) -> Tensor:
        """A detached copy of the queue, safe to use in logits before :meth:`enqueue`."""
        return self.queue.detach().clone()

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` ``(B, D)`` (``B <= K``) at ``ptr``, wrapping around; advance ``ptr``."""
        _check_2d("keys", keys)
        b, d = keys.shape
        if d != self.dim:
            raise ValueError(f"keys dim {d} != queue dim {self.dim}")
        if b > self.size:
            raise ValueError(f"batch of {b} keys exceeds queue size {self.size}")
        if b == 0:
            return
        keys = keys.detach().to(device=self.queue.device, dtype=self.queue.dtype)
        ptr = int(self.ptr) if self._ptr_host is None else self._ptr_host
        first = min(b, self.size - ptr)
        self.queue[ptr : ptr + first] = keys[:first]
        rest = b - first
        if rest > 0:
            self.queue[:rest] = keys[first:]
        self._ptr_host = (ptr + b) % self.size
        self.ptr.fill_(self._ptr_host)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super()._load_from_state_dict(*args, **kwargs)
        self._ptr_host = None  # the loaded buffer is the truth: read it at the next enqueue

    def forward(self) -> Tensor:  # pragma: no cover - convenience alias
        """Same as :meth:`snapshot`."""
        return self.snapshot()
