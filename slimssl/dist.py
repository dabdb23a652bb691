"""Multi-process helpers for ``torchrun`` (DDP): setup, rank queries and collectives.

Every function works unchanged in a single process (no process group): collectives return their
input. ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``; we use
NCCL when the process has a GPU and gloo otherwise (CPU tests).

Two gathers, because SSL methods need both:
- :func:`concat_all_gather` - no gradient; MoCo v2 (He et al. 2020 / Chen et al. 2020) enqueues
  the keys of every rank into the queue, keys being target outputs anyway.
- :func:`all_gather_tensor` - differentiable; in-batch negatives across ranks (MoCo v3: Chen, Xie,
  He 2021; SimCLR). The backward pass sums the incoming gradient over ranks and returns this
  rank's slice, so the local chunk gets the gradient of *every* rank's loss (not only its own);
  with DDP's gradient averaging this is exactly the gradient of the mean loss.

All gathers require the same tensor shape on every rank (use ``drop_last=True`` loaders).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_dist",
    "get_rank",
    "get_world_size",
    "is_main",
    "barrier",
    "all_gather_tensor",
    "concat_all_gather",
    "all_reduce_mean_tensors_",
    "all_reduce_sum_",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device(device)


def init_distributed(
    device: str = "auto", backend: Optional[str] = None, timeout_s: float = 1800.0
) -> DistInfo:
    """Read torchrun's env vars and, if ``WORLD_SIZE > 1``, join the default process group.

    ``device``: ``'auto'`` (CUDA if available), ``'cuda'`` or ``'cpu'``. With a GPU, the process
    uses ``cuda:LOCAL_RANK`` and sets it as the current device. Idempotent.
    """
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = _pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not is_dist():
        if backend is None:
            backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs: dict[str, Any] = dict(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(**kwargs)
    if is_dist():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Destroy the default process group if one exists."""
    if is_dist():
        dist.destroy_process_group()


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the only rank that writes files and logs."""
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


class _AllGatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ws = dist.get_world_size()
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        out = [torch.empty_like(x) for _ in range(ws)]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def all_gather_tensor(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0 (rank order), differentiable w.r.t. the local
    ``x`` (see module docstring). Single process: returns ``x``."""
    if not is_dist() or get_world_size() == 1:
        return x
    return _AllGatherWithGrad.apply(x)


@torch.no_grad()
def concat_all_gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all ranks along dim 0, without gradient. Single process: ``x``."""
    if not is_dist() or get_world_size() == 1:
        return x.detach()
    out = [torch.empty_like(x) for _ in range(get_world_size())]
    dist.all_gather(out, x.detach().contiguous())
    return torch.cat(out, dim=0)


@torch.no_grad()
def all_reduce_mean_tensors_(tensors: list[torch.Tensor]) -> None:
    """In place, the mean over ranks of every tensor in ``tensors`` (views included), with one
    all-reduce per dtype of their flattened concatenation (gradients, BN statistics). Single
    process: unchanged."""
    if not (is_dist() and get_world_size() > 1):
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= get_world_size()
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


@torch.no_grad()
def all_reduce_sum_(x: torch.Tensor) -> torch.Tensor:
    """In-place sum over ranks (e.g. correct/total counts in evaluation)."""
    if is_dist() and get_world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x
