"""One results table per run: every sub-network with its cost and accuracies.

Rows are plain dicts, one per sub-network, using the keys of :data:`COLUMNS` (missing
keys or ``None``/NaN are shown as ``-``); a ``knn_top1_k{k}`` for another ``k`` gets its
own column, and so does each semi-supervised protocol ``semisup_{protocol}_{N}pct_top1``
(these replace the generic ``semisup_top1`` column when it is empty). Extra keys are kept in
``results.json`` and appended to ``results.csv``. This mirrors the width -> (params, MACs, accuracy) tables of
SlimCLR (Zhao et al.) and DSPNet (Wang et al.). Cost is reported as MACs
(multiply-accumulates), not FLOPs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

from slimssl.fileio import atomic_write_text, file_lock

__all__ = [
    "COLUMNS",
    "subnet_label",
    "format_value",
    "format_table",
    "markdown_table",
    "write_results",
    "read_results",
    "merge_results",
    "header",
]

# (row key, header, number format)
COLUMNS: list[tuple[str, str, str]] = [
    ("subnet", "Sub-network", "{}"),
    ("params_m", "Params (M)", "{:.2f}"),
    ("macs_g", "MACs (G)", "{:.3f}"),
    ("knn_top1_k200", "kNN@200 top-1", "{:.2f}"),
    ("knn_top1_k20", "kNN@20 top-1", "{:.2f}"),
    ("knn_random_init", "kNN@200 random init", "{:.2f}"),
    ("linear_switchable_top1", "Lin-sw top-1", "{:.2f}"),
    ("linear_switchable_top5", "Lin-sw top-5", "{:.2f}"),
    ("linear_slimmable_top1", "Lin-sl top-1", "{:.2f}"),
    ("linear_slimmable_top5", "Lin-sl top-5", "{:.2f}"),
    ("semisup_top1", "Semi-sup top-1", "{:.2f}"),
]
COLUMN_KEYS = [k for k, _, _ in COLUMNS]
HEADERS = {k: h for k, h, _ in COLUMNS}
_FORMATS = {k: f for k, _, f in COLUMNS}
MISSING = "-"
LOCK_FILE = "results.lock"  # held across every write and read-modify-write of results.*


_KNN_KEY = re.compile(r"^knn_top1_k(\d+)(_majority)?$")
_SEMISUP_KEY = re.compile(r"^semisup_(finetune|linear|slimmable(?:_scratch|_single)?"
                          r"(?:_nokd|_kdlw[0-9.]+)?)_([0-9.]+)pct_top1$")
_DISTILL_SUFFIX = re.compile(r"_(nokd|kdlw([0-9.]+))$")
_SEMISUP_NAMES = {"finetune": "FT", "linear": "lin", "slimmable": "slim-FT",
                  "slimmable_scratch": "slim-FT scratch", "slimmable_single": "slim-FT single"}


def _semisup_name(protocol: str) -> str:
    """Header name of a protocol. Slimmable fine-tuning suffixes (``cli.finetune_slimmable``):
    ``_nokd`` without inplace distillation, ``_kdlw{W}`` with a non-default label weight."""
    m = _DISTILL_SUFFIX.search(protocol)
    if m is None:
        return _SEMISUP_NAMES[protocol]
    setting = " no-KD" if m.group(1) == "nokd" else f" KD label-w {m.group(2)}"
    return _SEMISUP_NAMES[protocol[:m.start()]] + setting


def _semisup_columns(rows: Sequence[dict]) -> list[tuple[str, str, str]]:
    """One column per semi-supervised protocol present (fine-tune before linear, 1% before 10%)."""
    found = {(m.group(1), float(m.group(2))) for r in rows for key in r
             if (m := _SEMISUP_KEY.match(key))}
    return [(f"semisup_{p}_{pct:g}pct_top1", f"Semi-sup {_semisup_name(p)} {pct:g}% top-1",
             "{:.2f}") for p, pct in sorted(found)]


def _columns(rows: Sequence[dict]) -> list[tuple[str, str, str]]:
    """:data:`COLUMNS` plus any other ``knn_top1_k{k}`` present (e.g. a non-default k) and the
    per-protocol semi-supervised columns."""
    found = {(int(m.group(1)), m.group(2) or "") for r in rows for key in r
             if (m := _KNN_KEY.match(key))}
    # other k of the weighted vote first, then DSPNet's majority-vote columns (eval/knn.py)
    extra = sorted(found - {(200, ""), (20, "")}, key=lambda kv: (kv[1], -kv[0]))
    cols = list(COLUMNS)
    pos = COLUMN_KEYS.index("knn_top1_k20") + 1
    cols[pos:pos] = [(f"knn_top1_k{k}{vote}", f"kNN@{k}{' majority' if vote else ''} top-1",
                      "{:.2f}") for k, vote in extra]
    semisup = _semisup_columns(rows)
    if semisup:
        pos = [k for k, _, _ in cols].index("semisup_top1")
        generic_empty = all(_is_missing(r.get("semisup_top1")) for r in rows)
        cols[pos + (not generic_empty):pos + 1] = semisup
    return cols


def header(key: str) -> str:
    """Column header of ``key``, also for the dynamic kNN / semi-supervised columns."""
    return next((h for k, h, _ in _columns([{key: 0.0}]) if k == key), key)


def subnet_label(width: float, depth: Sequence[int] | None = None) -> str:
    """``w0.50`` or ``w0.50 d[2,2,2,2]`` -- the row label of a sub-network."""
    label = f"w{width:.2f}"
    if depth is not None:
        label += " d[" + ",".join(str(int(d)) for d in depth) + "]"
    return label


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v == ""


def format_value(key: str, value: Any, fmt: str | None = None) -> str:
    """Cell text for ``value`` in column ``key``; missing -> ``-``."""
    if _is_missing(value):
        return MISSING
    fmt = fmt or _FORMATS.get(key, "{}")
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _cells(rows: Sequence[dict], cols: list[tuple[str, str, str]]) -> list[list[str]]:
    return [[format_value(k, r.get(k), f) for k, _, f in cols] for r in rows]


def _present_columns(rows: Sequence[dict]) -> list[tuple[str, str, str]]:
    """The sub-network column and every column some row has a value in."""
    return [c for c in _columns(rows)
            if c[0] == "subnet" or any(not _is_missing(r.get(c[0])) for r in rows)]


def format_table(rows: Sequence[dict]) -> str:
    """Aligned plain-text table for the terminal (columns no row has are left out; the files
    keep every column)."""
    cols = _present_columns(rows)
    header = [h for _, h, _ in cols]
    body = _cells(rows, cols)
    widths = [max(len(x) for x in col) for col in zip(header, *body)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), sep, *(line(c) for c in body)])


def markdown_table(rows: Sequence[dict], drop_empty: bool = False) -> str:
    """GitHub-flavoured markdown table (numbers right-aligned); ``drop_empty`` leaves out the
    columns no row has, as :func:`format_table` does."""
    cols = _present_columns(rows) if drop_empty else _columns(rows)
    header = [h for _, h, _ in cols]
    align = [":--"] + ["--:"] * (len(header) - 1)
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    out += ["| " + " | ".join(c) + " |" for c in _cells(rows, cols)]
    return "\n".join(out) + "\n"


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if hasattr(v, "item") and callable(v.item):  # numpy / torch scalars
        try:
            return v.item()
        except (ValueError, RuntimeError):
            pass
    return v


def write_results(run_dir: str | Path, rows: Sequence[dict]) -> dict[str, Path]:
    """Write ``results.json``, ``results.csv`` and ``results.md`` into ``run_dir`` (under the
    run's results lock; each file replaced atomically, so a reader never sees half of one)."""
    run_dir = Path(run_dir)
    with file_lock(run_dir / LOCK_FILE):
        return _write_unlocked(run_dir, rows)


def _write_unlocked(run_dir: Path, rows: Sequence[dict]) -> dict[str, Path]:
    clean = [{str(k): _json_safe(v) for k, v in r.items()} for r in rows]
    paths = {
        "json": run_dir / "results.json",
        "csv": run_dir / "results.csv",
        "md": run_dir / "results.md",
    }
    atomic_write_text(paths["json"], json.dumps({"columns": COLUMN_KEYS, "rows": clean}, indent=2))

    keys = [k for k, _, _ in _columns(clean)]
    keys += sorted({k for r in clean for k in r} - set(keys))
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(keys)
    for r in clean:
        writer.writerow(["" if _is_missing(r.get(k)) else _csv_cell(r.get(k)) for k in keys])
    atomic_write_text(paths["csv"], table.getvalue())
    atomic_write_text(paths["md"], markdown_table(clean))
    return paths


def _csv_cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def read_results(run_dir: str | Path) -> list[dict]:
    """Rows from ``run_dir/results.json`` (or from a path to the JSON file itself)."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "results.json"
    data = json.loads(path.read_text())
    return list(data["rows"] if isinstance(data, dict) else data)


def merge_results(run_dir: str | Path, rows: Sequence[dict], key: str = "subnet") -> list[dict]:
    """Merge ``rows`` into the run's existing results (matched by ``key``, the sub-network
    label), write all three files and return the merged rows.

    New values overwrite old ones of the same column; other columns (kNN, params, MACs) stay;
    members not yet in the table are appended. Without ``results.json`` the rows are written
    as they are. The read, merge and write happen under the run's results lock
    (``results.lock``), so evaluations that finish together all keep their columns.
    """
    run_dir = Path(run_dir)
    path = run_dir / "results.json"
    with file_lock(run_dir / LOCK_FILE):
        merged = read_results(path) if path.exists() else []
        index = {r.get(key): r for r in merged}
        for row in rows:
            if row.get(key) in index:
                index[row[key]].update(row)
            else:
                merged.append(dict(row))
                index[row.get(key)] = merged[-1]
        _write_unlocked(run_dir, merged)
    return merged
