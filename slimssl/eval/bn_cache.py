"""Recalibrated BatchNorm statistics cached per member in the run directory.

Recalibration (docs/design.md sec. 2; US-Nets / Once-for-All) costs a forward pass over 2,000
training images per member, and a run evaluates and exports each member (and may be
re-evaluated later at other widths), so the statistics are computed once and stored as
``<run>/bn_stats/<member slug>.safetensors`` (e.g. ``w0.30.safetensors``): one tensor per
BatchNorm buffer slice of that member. The file also records a fingerprint of the weights and
of the calibration settings; a file whose fingerprint differs (training continued, another
checkpoint, another number of images) is ignored and overwritten, never silently reused.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from slimssl.nn.norm import _SlimBatchNorm
from slimssl.nn.spec import SubnetSpec
from slimssl.nn.switch import SlimmableModel


def weights_fingerprint(model: SlimmableModel, settings: dict) -> str:
    """SHA-256 of every parameter (names, shapes, bytes) and of ``settings``."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _norms(model: SlimmableModel) -> dict[str, _SlimBatchNorm]:
    return {name: m for name, m in model.named_modules() if isinstance(m, _SlimBatchNorm)}


class BNStatsCache:
    """Per-member BN statistics of one model in ``directory`` (see module docstring).

    Example:
        >>> cache = BNStatsCache(run_dir / "bn_stats", fingerprint)
        >>> if not cache.load(model, spec):
        ...     recalibrate_bn(model, spec, batches)
        ...     cache.save(model, spec)
    """

    def __init__(self, directory: str | Path, fingerprint: str) -> None:
        self.directory, self.fingerprint = Path(directory), fingerprint

    def path(self, spec: SubnetSpec) -> Path:
        return self.directory / f"{spec.slug}.safetensors"

    @torch.no_grad()
    def save(self, model: SlimmableModel, spec: SubnetSpec) -> Path:
        """Store the statistics ``model`` holds at ``spec`` (call right after recalibrating)."""
        tensors = {}
        with model.subnet(spec):
            for name, norm in _norms(model).items():
                mean, var = norm.calibrated_buffers()
                tensors[f"{name}.running_mean"] = mean.detach().cpu().contiguous().clone()
                tensors[f"{name}.running_var"] = var.detach().cpu().contiguous().clone()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(spec)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # torchrun ranks save at once
        save_file(tensors, str(tmp), metadata={"fingerprint": self.fingerprint,
                                              "spec": json.dumps(spec.to_dict())})
        tmp.replace(path)
        return path

    @torch.no_grad()
    def load(self, model: SlimmableModel, spec: SubnetSpec) -> bool:
        """Put the cached statistics of ``spec`` into ``model``; ``False`` if there are none
        for these weights and settings (or they do not fit this model)."""
        path = self.path(spec)
        if not path.is_file():
            return False
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("fingerprint") != self.fingerprint:
                return False
        tensors = load_file(str(path))
        with model.subnet(spec):
            norms = _norms(model)
            if len(tensors) != 2 * len(norms):
                return False
            pairs = []
            for name, norm in norms.items():
                bufs = norm.calibrated_buffers()
                cached = [tensors.get(f"{name}.running_mean"), tensors.get(f"{name}.running_var")]
                if any(c is None or c.shape != b.shape for c, b in zip(cached, bufs)):
                    return False
                pairs.extend(zip(bufs, cached))
            for buf, value in pairs:
                buf.copy_(value.to(buf.device, buf.dtype))
            for norm in norms.values():
                norm.begin_calibration()  # marks the statistics as belonging to this width
                norm.end_calibration()
        return True
