"""Seeding: reproducible runs, and a random stream that is identical on every rank.

Why a rank-consistent generator: slimmable recipes (DSPNet's sandwich rule, US3L's random widths)
sample the sub-networks of each iteration at random. Under DDP every rank must pick the *same*
sub-networks, otherwise ranks run different parameter slices and gradient all-reduce mixes
unrelated updates (or hangs on unused parameters). Data augmentation, on the other hand, should
differ between ranks; that is the job of the global seeds (offset by rank by the caller/loader).
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "derive_seed"]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python ``random``, numpy and torch (CPU and all CUDA devices).

    ``deterministic=True`` also asks PyTorch for deterministic kernels (``warn_only`` so ops
    without a deterministic implementation warn instead of failing), disables cuDNN autotuning
    and sets ``CUBLAS_WORKSPACE_CONFIG`` as cuBLAS requires; this costs speed. With
    ``deterministic=False`` cuDNN autotuning (``benchmark``) is enabled.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = True


def derive_seed(*parts: int) -> int:
    """Mix integers (seed, epoch, tag, ...) into one well-spread 63-bit seed (numpy SeedSequence),
    so nearby inputs such as (0, 1) and (1, 0) give unrelated streams."""
    ss = np.random.SeedSequence([int(p) % 2**63 for p in parts])
    return int(ss.generate_state(1, dtype=np.uint64)[0] % (2**63 - 1))
