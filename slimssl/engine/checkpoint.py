"""Checkpoints: atomic writes, safe loads, rotation, fallback to the newest valid file.

Why each piece:
- **Atomic save** (temp file in the same directory, flush + fsync, ``os.replace``, fsync of the
  directory): a crash or a full disk mid-save never leaves a half-written file under the final
  name, and the previous checkpoint is untouched.
- **Safe load**: only ``torch.load(..., weights_only=True)``; a checkpoint therefore holds only
  tensors and primitive containers (dict/list/tuple/int/float/str/bool/None). Unpickling
  arbitrary objects would run code from the file. RNG states are converted to tensors
  (:func:`capture_rng_state`).
- **Rotation**: ``ckpt_epoch{E:04d}_step{S:08d}.pt``; the older files are deleted only after the
  new one is complete, keeping the last ``keep``.
- **Fallback**: :func:`load_latest_checkpoint` tries newest first and skips files that are empty,
  truncated or garbage (e.g. a node killed while copying), with a warning naming the bad file.
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Optional, Union

import numpy as np
import torch

__all__ = [
    "CheckpointError",
    "checkpoint_name",
    "parse_checkpoint_name",
    "list_checkpoints",
    "atomic_save",
    "save_checkpoint",
    "load_checkpoint",
    "load_latest_checkpoint",
    "resolve_resume",
    "check_state_dict_compatible",
    "capture_rng_state",
    "restore_rng_state",
]

PathLike = Union[str, os.PathLike]
_NAME_RE = re.compile(r"^ckpt_epoch(\d+)_step(\d+)\.pt$")
_BLOCKED_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


# --------------------------------------------------------------------------------------------
# Names and listing
# --------------------------------------------------------------------------------------------


def checkpoint_name(epoch: int, step: int) -> str:
    """``ckpt_epoch{E:04d}_step{S:08d}.pt``; lexical order equals (epoch, step) order."""
    return f"ckpt_epoch{epoch:04d}_step{step:08d}.pt"


def parse_checkpoint_name(name: str) -> Optional[tuple[int, int]]:
    """``(epoch, step)`` from a checkpoint file name, or None if it is not one."""
    m = _NAME_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def list_checkpoints(directory: PathLike) -> list[Path]:
    """Checkpoint files in ``directory``, oldest first (by epoch, then step)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        key = parse_checkpoint_name(p.name)
        if key is not None and p.is_file():
            found.append((key, p))
    return [p for _, p in sorted(found)]


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def _write_payload(obj: Any, f: BinaryIO) -> None:
    """Serialise ``obj`` into the open file (separate function so tests can make it fail)."""
    torch.save(obj, f)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: PathLike) -> Path:
    """Write ``obj`` with ``torch.save`` so that ``path`` is either the old file or the complete
    new one, never a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_payload(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def save_checkpoint(
    directory: PathLike, state: Mapping[str, Any], epoch: int, step: int, keep: int = 3
) -> Path:
    """Atomically save ``state`` as ``directory/ckpt_epoch…_step….pt``, then delete all but the
    newest ``keep`` checkpoints. Call on the main rank only."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    path = atomic_save(dict(state), Path(directory) / checkpoint_name(epoch, step))
    existing = list_checkpoints(directory)
    for old in existing[: max(len(existing) - keep, 0)]:
        if old != path:
            old.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_checkpoint(path: PathLike, map_location: Any = "cpu") -> dict:
    """Load with ``weights_only=True``; any failure (missing, empty, truncated, garbage, or a
    pickle that asks for a non-allowed object) becomes a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling error means "unusable file"
        blocked = _BLOCKED_GLOBAL.search(str(e))
        if blocked:  # torch's own text would suggest weights_only=False: never for slimssl
            raise CheckpointError(
                f"checkpoint {path} cannot be loaded safely: it asks for {blocked.group(1)}, "
                "which no slimssl checkpoint holds and which could run code on load, so it is "
                "refused; use a checkpoint written by slimssl (or weights in safetensors)") from e
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: "
                              f"{type(e).__name__}: {first_line}") from e
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def load_latest_checkpoint(
    directory: PathLike, map_location: Any = "cpu"
) -> Optional[tuple[Path, dict]]:
    """``(path, state)`` of the newest checkpoint in ``directory`` that loads, or None if there is
    none. Unloadable files are skipped with a warning naming them (they are not deleted)."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as e:
            warnings.warn(f"skipping bad checkpoint {path}: {e}", RuntimeWarning, stacklevel=2)
    return None


_RESUME_FIX = ("pass a checkpoint file or a run directory that holds one, or --resume auto "
               "(which starts from scratch while a run has no checkpoint yet)")


def resolve_resume(resume: PathLike, map_location: Any = "cpu") -> tuple[Path, dict]:
    """Resolve ``--resume``: a file is loaded as is; a directory gives its newest valid checkpoint
    (also looking in ``DIR/checkpoints``). Raises :class:`CheckpointError` if nothing is found."""
    p = Path(resume)
    if p.is_file():
        return p, load_checkpoint(p, map_location)
    if p.is_dir():
        for d in (p, p / "checkpoints"):
            found = load_latest_checkpoint(d, map_location)
            if found is not None:
                return found
        raise CheckpointError(f"--resume given but no valid checkpoint in {p}; {_RESUME_FIX}")
    raise CheckpointError(f"--resume given but {p} does not exist; {_RESUME_FIX}")


def check_state_dict_compatible(
    model_sd: Mapping[str, torch.Tensor], ckpt_sd: Mapping[str, Any], what: str = "model"
) -> None:
    """Raise :class:`CheckpointError` listing missing, unexpected and shape-mismatched keys, so an
    architecture change (e.g. different widths or arch) is reported before ``load_state_dict``."""
    missing = sorted(set(model_sd) - set(ckpt_sd))
    unexpected = sorted(set(ckpt_sd) - set(model_sd))
    mismatched = []
    for k in sorted(set(model_sd) & set(ckpt_sd)):
        a, b = model_sd[k], ckpt_sd[k]
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape != b.shape:
            mismatched.append(f"{k}: model {tuple(a.shape)} vs checkpoint {tuple(b.shape)}")
    if not (missing or unexpected or mismatched):
        return

    def show(items: list[str], n: int = 10) -> str:
        more = f", ... ({len(items) - n} more)" if len(items) > n else ""
        return ", ".join(items[:n]) + more

    lines = [f"checkpoint does not match the {what} architecture:"]
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {show(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {show(unexpected)}")
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}): {show(mismatched)}")
    raise CheckpointError("\n".join(lines))


# --------------------------------------------------------------------------------------------
# RNG state (weights_only-safe)
# --------------------------------------------------------------------------------------------


def capture_rng_state() -> dict:
    """RNG states of torch (CPU and every CUDA device), numpy and python ``random``, as tensors
    and primitives only, so they survive ``weights_only=True`` loading."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state = {
        "torch": torch.get_rng_state(),
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss_next": py_gauss,
        },
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_gauss),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`. Missing parts are left as they are; CUDA states are
    restored only if the number of visible devices matches."""
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    if "python" in state:
        py = state["python"]
        random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))
    if "numpy" in state:
        npst = state["numpy"]
        np.random.set_state(
            (
                npst["kind"],
                npst["keys"].cpu().numpy().astype(np.uint32),
                npst["pos"],
                npst["has_gauss"],
                npst["cached_gaussian"],
            )
        )
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu().to(torch.uint8) for s in cuda])
        else:
            warnings.warn(
                f"checkpoint has CUDA RNG state for {len(cuda)} devices, {torch.cuda.device_count()} "
                "visible; CUDA RNG not restored",
                RuntimeWarning,
                stacklevel=2,
            )
