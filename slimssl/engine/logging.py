"""Metrics logging to the run directory: JSON lines, CSV and (optionally) TensorBoard.

Files written in ``run_dir`` (rank 0 only; other ranks get a logger that does nothing):

- ``metrics.jsonl`` - the source of truth: one JSON object per record,
  ``{"kind": ..., "step": ..., "epoch": ..., <metric>: <value>, ...}``, appended and flushed per
  record so a crash loses at most the record being written.
- ``metrics.csv`` - one table for all kinds, columns = ``kind, step, epoch`` + the union of all
  metric names in first-seen order. When a record brings a new column the whole CSV is rewritten
  (atomically) from the in-memory records with the wider header; otherwise rows are appended.
  Cells of metrics a record does not have are empty. (A single table, not per-kind files, so a
  spreadsheet sees train and eval rows on one step axis.)
- ``tb/`` - TensorBoard scalars ``<kind>/<metric>`` if ``tensorboard=True`` and
  ``torch.utils.tensorboard`` imports; otherwise silently skipped (one warning).
- Weights & Biases (``log.wandb: true``; optional, ``pip install 'slimssl[wandb]'``): the same
  ``<kind>/<metric>`` scalars at the same step, the resolved config as the run's config, files in
  ``wandb/``. The W&B run id is kept in ``wandb_run_id.txt`` so a resumed run continues the same
  W&B run (W&B ignores steps it has already seen, so the steps a resume repeats are not re-sent).
  ``WANDB_MODE=offline`` logs without an account (``wandb sync`` uploads later). A missing
  ``wandb`` package is an error that says how to install it, not a silent skip: the user asked for
  this sink.

Re-opening an existing run dir (resume) reads back ``metrics.jsonl``; :meth:`MetricsLogger.drop_after`
removes records newer than the resumed step so the curves have no duplicates.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from slimssl.dist import is_main
from slimssl.fileio import atomic_write_text

__all__ = ["MetricsLogger", "read_metrics", "open_wandb"]

_KEYS = ("kind", "step", "epoch")


def _plain(v: Any) -> Any:
    """Tensors / numpy scalars -> python numbers; everything else left as is."""
    if hasattr(v, "item") and callable(v.item) and getattr(v, "ndim", 0) == 0:
        return v.item()
    if hasattr(v, "tolist") and callable(v.tolist):
        return v.tolist()
    return v


def read_metrics(run_dir: Union[str, os.PathLike], kind: Optional[str] = None) -> list[dict]:
    """All records of ``run_dir/metrics.jsonl`` (optionally of one ``kind``), in file order.
    A torn last line (crash mid-write) is ignored."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    with path.open() as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if kind is None or rec.get("kind") == kind:
                out.append(rec)
    return out


class MetricsLogger:
    """Append metrics records to the run dir (see module docstring)."""

    def __init__(
        self,
        run_dir: Union[str, os.PathLike],
        tensorboard: bool = True,
        enabled: Optional[bool] = None,
        wandb: Optional[Mapping[str, Any]] = None,
    ) -> None:
        """``wandb``: ``wandb.init`` arguments (project, entity, name, config) to also log to
        Weights & Biases; None: off."""
        self.run_dir = Path(run_dir)
        self.enabled = is_main() if enabled is None else enabled
        self._records: list[dict] = []
        self._columns: list[str] = list(_KEYS)
        self._tb = None
        self._wandb = None
        self._jsonl = None
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl_path = self.run_dir / "metrics.jsonl"
        self._csv_path = self.run_dir / "metrics.csv"
        self._records = read_metrics(self.run_dir)
        for r in self._records:
            self._add_columns(r)
        self._jsonl = self._jsonl_path.open("a")
        self._rewrite_csv()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.run_dir / "tb"))
            except Exception as e:  # noqa: BLE001 - tensorboard is optional
                warnings.warn(f"TensorBoard logging disabled: {e}", RuntimeWarning, stacklevel=2)
        if wandb is not None:
            self._wandb = open_wandb(self.run_dir, **wandb)

    # -- public ------------------------------------------------------------------------------

    def log(
        self,
        metrics: Mapping[str, Any],
        step: int,
        epoch: Optional[float] = None,
        kind: str = "train",
    ) -> None:
        """Write one record. ``metrics`` values may be numbers, 0-d tensors, strings or lists."""
        if not self.enabled:
            return
        rec: dict[str, Any] = {"kind": kind, "step": int(step), "epoch": epoch}
        for k, v in metrics.items():
            if k in _KEYS:
                raise ValueError(f"metric name {k!r} is reserved")
            rec[k] = _plain(v)
        self._records.append(rec)
        assert self._jsonl is not None
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        if self._add_columns(rec):
            self._rewrite_csv()
        else:
            with self._csv_path.open("a", newline="") as f:
                csv.DictWriter(f, fieldnames=self._columns).writerow(rec)
        scalars = {f"{kind}/{k}": v for k, v in rec.items()
                   if k not in ("kind", "step") and not isinstance(v, bool)
                   and isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, v, int(step))
        if self._wandb is not None and scalars:
            self._wandb.log(scalars, step=int(step))

    def drop_after(self, step: int) -> None:
        """Forget records with ``step > step`` (resume from an earlier checkpoint) and rewrite
        the files."""
        if not self.enabled:
            return
        kept = [r for r in self._records if int(r.get("step", 0)) <= step]
        if len(kept) == len(self._records):
            return
        self._records = kept
        assert self._jsonl is not None
        self._jsonl.close()
        atomic_write_text(self._jsonl_path, "".join(json.dumps(r) + "\n" for r in kept))
        self._jsonl = self._jsonl_path.open("a")
        self._rewrite_csv()

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> "MetricsLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------

    def _add_columns(self, rec: Mapping[str, Any]) -> bool:
        new = [k for k in rec if k not in self._columns]
        self._columns.extend(new)
        return bool(new)

    def _rewrite_csv(self) -> None:
        table = io.StringIO(newline="")
        w = csv.DictWriter(table, fieldnames=self._columns)
        w.writeheader()
        for r in self._records:
            w.writerow(r)
        atomic_write_text(self._csv_path, table.getvalue())


def open_wandb(run_dir: Path, project: str, entity: Optional[str] = None,
               name: Optional[str] = None, config: Optional[Mapping[str, Any]] = None) -> Any:
    """A Weights & Biases run writing to ``run_dir/wandb``, resuming the run id stored in
    ``run_dir/wandb_run_id.txt`` (written on first use)."""
    try:
        import wandb
    except ImportError:
        from slimssl.engine.config import ConfigError

        raise ConfigError("config key 'log.wandb' is true but the wandb package is not "
                          "installed: pip install 'slimssl[wandb]' (or pip install wandb), or "
                          "set log.wandb=false") from None
    id_file = run_dir / "wandb_run_id.txt"
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
    id_file.write_text(run_id + "\n")
    (run_dir / "wandb").mkdir(exist_ok=True)
    return wandb.init(project=project, entity=entity, name=name or run_dir.name,
                      config=dict(config or {}), dir=str(run_dir), id=run_id, resume="allow")
