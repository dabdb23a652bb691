"""Which autocast dtype a run gets on its device (``train.amp``).

* CUDA: ``bf16`` or ``fp16`` as asked (fp16 with a GradScaler).
* CPU: ``bf16`` only where the CPU computes bf16 natively (the ``avx512_bf16`` or ``amx_bf16``
  flags of ``/proc/cpuinfo``: Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and
  later); elsewhere oneDNN emulates bf16, which is slower than float32, so the run stays in
  float32 and says why. ``fp16`` autocast on a CPU is never used (no speed-up there).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

_log = logging.getLogger(__name__)

#: /proc/cpuinfo flags of CPUs with native bf16 matrix instructions
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The ``flags`` of the first CPU in ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def autocast_dtype(amp: str, device: torch.device,
                   flags: set[str] | None = None) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = float32)."""
    if amp == "none":
        return None
    if amp not in ("bf16", "fp16"):
        raise ValueError(f"train.amp must be none, bf16 or fp16, got {amp!r}")
    if device.type == "cuda":
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if device.type == "cpu" and amp == "bf16":
        found = sorted(set(BF16_CPU_FLAGS) & (cpu_flags() if flags is None else flags))
        if found:
            return torch.bfloat16
        _log.warning("train.amp=bf16 ignored on this CPU: it has no native bf16 (%s), where "
                     "bf16 runs emulated and slower than float32; training in float32",
                     " / ".join(BF16_CPU_FLAGS))
        return None
    _log.warning("train.amp=%s has no effect on %s; training in float32", amp, device.type)
    return None
