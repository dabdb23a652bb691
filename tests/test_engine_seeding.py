"""Seeding (slimssl.engine.seeding)."""

import random

import numpy as np
import torch

from slimssl.engine.seeding import derive_seed, rank_consistent_generator, seed_everything


def test_seed_everything_reproducible():
    seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(2).tolist())
    seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(2).tolist()) == a


def test_rank_consistent_generator():
    torch.manual_seed(0)
    a = torch.rand(5, generator=rank_consistent_generator(1, 3)).tolist()
    torch.manual_seed(123)  # the global RNG (which differs by rank) must not matter
    torch.rand(7)
    assert torch.rand(5, generator=rank_consistent_generator(1, 3)).tolist() == a
    assert torch.rand(5, generator=rank_consistent_generator(1, 4)).tolist() != a
    assert torch.rand(5, generator=rank_consistent_generator(1, 3, tag=1)).tolist() != a
    assert derive_seed(0, 1) != derive_seed(1, 0)
    assert 0 <= derive_seed(2**40, 7) < 2**63
