"""Seeding (slimssl.engine.seeding)."""

import random

import numpy as np
import torch

from slimssl.engine.seeding import derive_seed, seed_everything


def test_seed_everything_reproducible():
    seed_everything(5)
    a = (random.random(), np.random.rand(), torch.rand(2).tolist())
    seed_everything(5)
    assert (random.random(), np.random.rand(), torch.rand(2).tolist()) == a


def test_derive_seed():
    assert derive_seed(0, 1) != derive_seed(1, 0)
    assert 0 <= derive_seed(2**40, 7) < 2**63
