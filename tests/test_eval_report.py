"""Results table: json / csv / md and the terminal format."""

import csv
import math

from slimssl.eval.report import COLUMN_KEYS, format_table, read_results, subnet_label, write_results


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
