"""Optimisation trajectory: weight snapshots of a run projected on their first two PCA directions.

Li et al. 2018 ("Visualizing the Loss Landscape of Neural Nets", Sec. 7) and SlimCLR Fig. 5b/5d:
a random plane through parameter space almost never contains the path the optimizer took, so the
path is drawn in the plane of the first two principal components of
``M = [theta_0 - theta_n; ...; theta_{n-1} - theta_n]``. Every snapshot's offset from the final
weights is projected on those (unit) directions, so the final weights sit at the origin and the
coordinates are parameter-space distances. SlimCLR compares the maximal offset along the 2nd
component of an individual network with the same width inside a slimmable family (+41% for
MoCo): weight sharing keeps the path further from the minimum it ends in.

Snapshots hold only the online network's state (no optimizer, no target), one safetensors file
per snapshot under ``<run_dir>/snapshots/``; the engine's snapshot callback writes them and keeps
at most a configured number, thinned so the survivors stay evenly spread over the run.

Which weights: the backbone's multi-dimensional parameters (convolution and linear kernels).
The kNN metric of :mod:`slimssl.diagnostics.landscape` reads the backbone only, and Li et al.
leave biases and BN parameters out of the directions ("ignore biasbn"), as BN statistics are
recomputed at every point anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from slimssl.diagnostics.direction import principal_directions
from slimssl.diagnostics.step_files import StepFiles

__all__ = ["SNAPSHOT_DIR", "WeightSnapshots", "Trajectory", "TrajectoryPCA", "landscape_keys",
           "flatten", "unflatten", "trajectory_pca"]

SNAPSHOT_DIR = "snapshots"
BACKBONE_PREFIX = "backbone."


def landscape_keys(state: Mapping[str, torch.Tensor], prefix: str = BACKBONE_PREFIX) -> list[str]:
    """Names of the weights a trajectory/landscape moves: floating tensors with more than one
    dimension under ``prefix`` (kernels; biases, BN affine and BN statistics are left out, as in
    Li et al. 2018)."""
    keys = [k for k, v in state.items()
            if k.startswith(prefix) and v.is_floating_point() and v.ndim > 1]
    if not keys:
        raise ValueError(f"no multi-dimensional weights under {prefix!r}")
    return keys


def flatten(state: Mapping[str, torch.Tensor], keys: list[str]) -> torch.Tensor:
    """The tensors named ``keys`` as one float64 vector, in ``keys`` order."""
    return torch.cat([state[k].detach().reshape(-1).double().cpu() for k in keys])


def unflatten(vector: torch.Tensor, keys: list[str], like: Mapping[str, torch.Tensor]
              ) -> dict[str, torch.Tensor]:
    """Inverse of :func:`flatten`: ``vector`` cut into tensors shaped and typed as ``like[k]``."""
    out, start = {}, 0
    for k in keys:
        n = like[k].numel()
        out[k] = vector[start:start + n].reshape(like[k].shape).to(like[k].dtype)
        start += n
    if start != vector.numel():
        raise ValueError(f"vector has {vector.numel()} entries, the weights {start}")
    return out


@dataclass
class Trajectory:
    """Flattened snapshots ``weights`` (T, D) in step order, with their ``steps`` / ``epochs``,
    the names of the flattened weights, and the last snapshot's full state (the origin)."""

    weights: torch.Tensor
    steps: list[int]
    epochs: list[float]
    keys: list[str]
    final_state: dict[str, torch.Tensor]


class WeightSnapshots(StepFiles):
    """``step_XXXXXXXX.safetensors`` files of the online network's state in ``directory``
    (safetensors: loading runs no code; epoch and step ride in the file's metadata)."""

    suffix = ".safetensors"

    def save(self, step: int, epoch: float, state: Mapping[str, torch.Tensor]) -> Path:
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
        metadata = {"step": str(step), "epoch": repr(float(epoch))}
        return self._write(step, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))

    def thin(self, keep: int) -> None:
        """Delete snapshots until at most ``keep`` (>= 2) remain, never the first or the last:
        each time the one whose removal leaves the shortest gap, so the survivors stay evenly
        spread over the run (a PCA of only the last few would miss the early path)."""
        if keep < 2:
            raise ValueError(f"keep at least 2 snapshots, got {keep}")
        found = self.files()
        while len(found) > keep:
            gaps = [found[i + 1][0] - found[i - 1][0] for i in range(1, len(found) - 1)]
            i = 1 + gaps.index(min(gaps))
            found.pop(i)[1].unlink()

    @staticmethod
    def _epoch(path: Path) -> float:
        with safe_open(str(path), "pt") as f:
            return float(f.metadata()["epoch"])

    def load(self, prefix: str = BACKBONE_PREFIX) -> Trajectory:
        """All snapshots, flattened over :func:`landscape_keys` of the last one."""
        found = self.files()
        if len(found) < 2:
            raise FileNotFoundError(f"{self.directory} holds {len(found)} weight snapshot(s); a "
                                    "trajectory needs at least 2: pre-train with "
                                    "train.snapshot_every_epochs > 0")
        final = load_file(str(found[-1][1]))
        keys = landscape_keys(final, prefix)
        rows = [flatten(load_file(str(p)), keys) for _, p in found[:-1]] + [flatten(final, keys)]
        return Trajectory(torch.stack(rows), [s for s, _ in found],
                          [self._epoch(p) for _, p in found], keys, final)


@dataclass
class TrajectoryPCA:
    """``directions`` (2, D) unit vectors, the fraction of the variance of M each ``explained``,
    and ``coords`` (T, 2): every snapshot's offset from the final weights on the directions."""

    directions: torch.Tensor
    explained: torch.Tensor
    coords: torch.Tensor

    @property
    def max_offset(self) -> list[float]:
        """Largest |coordinate| along each component (SlimCLR Sec. 4.4 compares the 2nd)."""
        return self.coords.abs().amax(0).tolist()


def trajectory_pca(weights: torch.Tensor, components: int = 2) -> TrajectoryPCA:
    """PCA of ``weights[:-1] - weights[-1]`` (Li et al. 2018, Sec. 7) and the projection of every
    snapshot's offset from the last one (so the last sits at the origin)."""
    if weights.ndim != 2 or weights.shape[0] < 3:
        raise ValueError(f"need at least three snapshots (T, D), got shape {tuple(weights.shape)}")
    offsets = weights.double() - weights[-1].double()
    directions, explained = principal_directions(offsets[:-1], components)
    return TrajectoryPCA(directions, explained.float(), (offsets @ directions.T).float())
