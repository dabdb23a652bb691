"""Latency of an exported sub-network on this machine.

Why measure rather than trust MACs: on a CPU or GPU at small batch sizes, latency follows
memory traffic, kernel launch overheads and how well a channel count fits the hardware, so two
members with similar MACs can differ in speed and a budget in milliseconds only means something
on the device it was measured on (the number of CPU threads is part of that device).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Latency:
    """Median and 90th-percentile wall time of one forward pass, with its conditions."""

    median_ms: float
    p90_ms: float
    batch_size: int
    device: str
    threads: int


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def measure_latency(module: nn.Module, input_size: int, device: str | torch.device = "cpu",
                    batch_size: int = 1, warmup: int = 5, repeats: int = 30) -> Latency:
    """Time ``module`` (eval mode, moved to ``device``) on a ``(batch, 3, S, S)`` input.

    ``warmup`` untimed passes first (allocator, oneDNN/cuDNN kernel selection), then
    ``repeats`` timed ones; the median resists the odd slow pass of a shared machine.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    device = torch.device(device)
    module = module.eval().to(device)
    x = torch.randn(batch_size, 3, input_size, input_size, device=device)
    for _ in range(warmup):
        module(x)
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        module(x)
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    return Latency(statistics.median(times), p90, batch_size, str(device),
                   torch.get_num_threads())
