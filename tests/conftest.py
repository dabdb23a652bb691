"""Shared test settings: one torch thread per test process (the suite runs on 2 cores, and tiny
convolutions get slower, not faster, with competing threads), a headless plot backend, and the
same global state for every test whatever ran before it (the suite runs in a random order,
pytest-randomly; it reseeds ``random`` and numpy itself, torch is reseeded here)."""

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


@pytest.fixture(autouse=True, scope="session")
def _seed_before_the_first_fixture():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _same_global_state_for_every_test():
    """torch's global RNG at seed 0 when a test (or a module fixture it creates) starts, and
    the process-wide switches a Trainer flips (``seed_everything``: deterministic algorithms,
    cuDNN flags), the default dtype and the working directory put back after it."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
             torch.get_default_dtype(), os.getcwd())
    torch.manual_seed(0)
    yield
    deterministic, warn_only, cudnn_deterministic, benchmark, dtype, cwd = saved
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = (cudnn_deterministic,
                                                                          benchmark)
    torch.set_default_dtype(dtype)
    os.chdir(cwd)
    torch.manual_seed(0)  # a module fixture set up before the next test sees seed 0 too
