"""Results table: json / csv / md and the terminal format."""

import csv
import math

import torch.multiprocessing as mp

from slimssl.eval.report import (COLUMN_KEYS, format_table, merge_results, read_results,
                                 subnet_label, write_results)


def _rows():
    return [
        {"subnet": subnet_label(1.0), "width": 1.0, "params_m": 11.17, "macs_g": 0.5566,
         "knn_top1_k200": 80.123, "knn_top1_k20": 81.0, "linear_switchable_top1": 85.5,
         "linear_switchable_top5": 99.1, "note": "full"},
        {"subnet": subnet_label(0.5, [2, 2, 2, 2]), "width": 0.5, "depth": [2, 2, 2, 2],
         "params_m": 2.8, "macs_g": 0.14, "knn_top1_k200": float("nan"), "knn_top1_k20": None},
    ]


def test_subnet_label():
    assert subnet_label(0.5) == "w0.50"
    assert subnet_label(0.25, (2, 2, 2, 2)) == "w0.25 d[2,2,2,2]"


def test_write_read_roundtrip(tmp_path):
    paths = write_results(tmp_path / "run", _rows())
    assert {p.name for p in paths.values()} == {"results.json", "results.csv", "results.md"}
    rows = read_results(tmp_path / "run")
    assert rows[0]["subnet"] == "w1.00" and math.isclose(rows[0]["macs_g"], 0.5566)
    assert rows[0]["note"] == "full" and rows[1]["depth"] == [2, 2, 2, 2]
    assert rows[1]["knn_top1_k200"] is None  # NaN stored as null

    md = (tmp_path / "run" / "results.md").read_text().splitlines()
    assert "MACs (G)" in md[0] and "FLOPs" not in md[0]
    assert len(md) == 4 and md[2].startswith("| w1.00 |")
    cells = [c.strip() for c in md[3].strip("|").split("|")]
    assert cells[0] == "w0.50 d[2,2,2,2]" and cells[3] == "-" and cells[-1] == "-"

    with (tmp_path / "run" / "results.csv").open() as f:
        table = list(csv.reader(f))
    assert table[0][: len(COLUMN_KEYS)] == COLUMN_KEYS and "note" in table[0]
    assert len(table) == 3


def test_format_table():
    text = format_table(_rows())
    lines = text.splitlines()
    assert len(lines) == 4
    assert "MACs (G)" in lines[0] and "kNN@200 top-1" in lines[0]
    assert "80.12" in lines[2] and "0.557" in lines[2]
    assert " - " in lines[3] + " "


def test_extra_knn_k_gets_a_column(tmp_path):
    rows = [{"subnet": "w1.00", "knn_top1_k50": 70.0, "knn_top1_k20": 71.0}]
    text = format_table(rows)
    assert "kNN@50 top-1" in text.splitlines()[0] and "70.00" in text
    write_results(tmp_path, rows)
    assert "kNN@50 top-1" in (tmp_path / "results.md").read_text()


def _add_columns(run_dir: str, name: str, count: int, start) -> None:
    start.wait()  # both writers begin together
    for i in range(count):
        merge_results(run_dir, [{"subnet": "w1.00", f"{name}_{i}": float(i)},
                                {"subnet": "w0.50", f"{name}_{i}": float(-i)}])


def test_two_writers_at_once_lose_no_column(tmp_path):
    """Two processes each add 40 columns, one merge at a time, while this one reads: every
    column of both is in the final files and no read ever sees half a file."""
    count = 40
    write_results(tmp_path, [{"subnet": "w1.00", "knn_top1_k200": 50.0}])
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    start = ctx.Event()
    writers = [ctx.Process(target=_add_columns, args=(str(tmp_path), name, count, start))
               for name in ("a", "b")]
    for w in writers:
        w.start()
    start.set()
    reads = 0
    while any(w.is_alive() for w in writers):
        rows = read_results(tmp_path)  # never a JSONDecodeError: files are replaced atomically
        assert rows[0]["knn_top1_k200"] == 50.0
        reads += 1
    for w in writers:
        w.join(timeout=60)
        assert w.exitcode == 0
    rows = {r["subnet"]: r for r in read_results(tmp_path)}
    expected = {f"{name}_{i}" for name in ("a", "b") for i in range(count)}
    assert expected <= rows["w1.00"].keys() and expected <= rows["w0.50"].keys()
    assert rows["w1.00"]["b_39"] == 39.0 and rows["w0.50"]["a_7"] == -7.0
    assert rows["w1.00"]["knn_top1_k200"] == 50.0 and reads > 0
    with (tmp_path / "results.csv").open() as f:
        header = next(csv.reader(f))
    assert expected <= set(header)
