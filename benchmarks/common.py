"""Shared helpers of the benchmark scripts: machine facts, alternating timing, trainers, results.

Every speed figure in ``benchmarks/`` is a ratio of two things measured in one process,
alternating (A, B, A, B, ...), with medians over repeats; :func:`alternate` does exactly that.
Scripts import this module as ``from common import ...`` (they put ``benchmarks/`` on the path).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
CIFAR_DIR = ROOT.parent / "shared" / "data" / "cifar10-jpeg"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(threads: int) -> dict[str, Any]:
    """What the figures ran on: CPU, core count, torch version and threads, load average."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {"platform": platform.platform(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": threads, "gpu": gpu,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def loadavg() -> list[float]:
    """1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def alternate(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
              clock: Callable[[], float] = time.perf_counter) -> dict[str, dict[str, Any]]:
    """Time each callable ``repeats`` times, interleaved (a, b, c, a, b, c, ...).

    Returns per name the median seconds, all samples, and the load average seen while timing.
    ``warmup`` untimed rounds go first (allocator, lazy initialisation, queue filling).
    ``clock=time.thread_time`` counts the calling thread's CPU seconds instead of wall seconds:
    with one torch thread every op runs on the calling thread, so on a shared machine this
    leaves out the time the scheduler gave to other processes on a shared machine.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    load_before = loadavg()
    for _ in range(repeats):
        for name, fn in fns.items():
            start = clock()
            fn()
            samples[name].append(clock() - start)
    load_after = loadavg()
    return {name: {"median_s": statistics.median(s), "samples_s": [round(x, 4) for x in s],
                   "loadavg_before": load_before, "loadavg_after": load_after}
            for name, s in samples.items()}


def ratio(timings: dict[str, dict[str, Any]], num: str, den: str) -> float:
    """Median time of ``num`` divided by median time of ``den``."""
    return timings[num]["median_s"] / timings[den]["median_s"]


@contextmanager
def temp_run_dir() -> Iterator[str]:
    """A throw-away run directory (trainers write config.yaml and metrics there)."""
    with tempfile.TemporaryDirectory(prefix="slimssl-bench-") as d:
        yield d


def make_config(config: str | None, overrides: Sequence[str], run_dir: str):
    """``load_config`` of a packaged config's name (``"slimclr_mocov2_cifar10"``), a path or
    None, with overrides; the run writes only to ``run_dir`` and never checkpoints or logs to
    tensorboard."""
    from slimssl.engine.config import load_config

    return load_config(config, list(overrides) + [f"out_dir={run_dir}", "train.tensorboard=false",
                                                "train.ckpt_every_epochs=100000",
                                                "data.num_workers=0"])


def make_trainer(config: str | None, overrides: Sequence[str], run_dir: str):
    """A real :class:`~slimssl.engine.trainer.Trainer` (no callbacks, no progress output)."""
    from slimssl.engine.trainer import Trainer

    return Trainer(make_config(config, overrides, run_dir), run_dir, progress="off")


class SpecRecorder:
    """Wraps ``trainer.recipe.sample`` to record which sub-networks each step trained (for the
    FLOP limit of recipes that sample randomly). Benchmark-side only; the recipe is unchanged."""

    def __init__(self, trainer) -> None:
        self.steps: list[list] = []
        self._sample = trainer.recipe.sample

        def sample(epoch_f: float):
            specs = self._sample(epoch_f)
            self.steps.append(list(specs))
            return specs

        trainer.recipe.sample = sample


def spec_macs(backbone, spec, image_size: int, cache: dict) -> int:
    """MACs of one member counted on its exported plain model (``profile_family``), cached."""
    from slimssl.export import profile_family

    key = (round(float(spec.width), 6), tuple(spec.depth) if spec.depth else None)
    if key not in cache:
        cache[key] = profile_family(backbone, [spec], image_size)[0]["macs"]
    return cache[key]


def flop_limit(steps: Sequence[Sequence], backbone, image_size: int) -> dict[str, Any]:
    """FLOP limit of a slimmable step against a vanilla one, from exported members' MACs.

    A vanilla step = the full target's forward (1 unit) + the full online network's forward and
    backward (3 units); a slimmable step = the same target forward + 3 units per trained member
    scaled by its MACs: ``(3 * sum_i MACs_i + MACs_full) / (4 * MACs_full)`` (for widths
    [1, .75, .5, .25] and MACs ~ w^2: (3 * 1.875 + 1) / 4 = 1.66). With randomly sampled
    members (DSPNet, US3L) the limit is the mean over the steps actually timed.
    """
    from slimssl.nn.spec import as_spec

    cache: dict = {}
    full = spec_macs(backbone, as_spec(1.0), image_size, cache)
    per_step = [(3 * sum(spec_macs(backbone, s, image_size, cache) for s in specs) + full)
                / (4 * full) for specs in steps]
    return {"limit": statistics.mean(per_step), "full_macs": full,
            "members_per_step": statistics.mean(len(s) for s in steps),
            "member_macs": {f"{w}" + (f"@{list(d)}" if d else ""): m
                            for (w, d), m in sorted(cache.items(), key=lambda kv: -kv[1])}}


def write_result(name: str, result: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>.json`` and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path
