"""One file per training step in a folder: the storage both snapshot kinds share.

Gradient snapshots (:class:`~slimssl.diagnostics.direction.SnapshotStore`) and weight snapshots
(:class:`~slimssl.diagnostics.trajectory.WeightSnapshots`) are both ``step_XXXXXXXX.<ext>``
files written atomically (temp file + rename, so a kill leaves no half file), listed in step
order, and cut back to a step when a run resumes from an earlier checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

__all__ = ["StepFiles"]


class StepFiles:
    """``step_XXXXXXXX{suffix}`` files in ``directory``."""

    suffix = ""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def files(self) -> list[tuple[int, Path]]:
        """``(step, path)`` of every file, in step order."""
        if not self.directory.is_dir():
            return []
        return sorted((int(p.stem.split("_")[1]), p)
                      for p in self.directory.glob(f"step_*{self.suffix}"))

    def _write(self, step: int, write: Callable[[Path], None]) -> Path:
        """``write(tmp_path)``, then rename it to the step's file (atomic on one filesystem)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"step_{step:08d}{self.suffix}"
        tmp = path.with_suffix(".tmp")
        write(tmp)
        tmp.replace(path)
        return path

    def drop_after(self, step: int) -> None:
        """Delete files newer than ``step`` (a resumed run takes them again)."""
        for s, path in self.files():
            if s > step:
                path.unlink()
