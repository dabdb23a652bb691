"""Shared test settings: one torch thread per test process (the suite runs on 2 cores, and tiny
convolutions get slower, not faster, with competing threads), a headless plot backend."""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
