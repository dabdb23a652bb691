"""Accuracy-vs-MACs PNG."""

from PIL import Image

from slimssl.eval.plot import DPI, FIGSIZE, plot_accuracy_vs_macs, plot_runs
from slimssl.eval.report import write_results


def _rows(offset):
    return [
        {"subnet": f"w{w:.2f}", "width": w, "macs_g": 0.56 * w * w, "linear_switchable_top1": 60 + 20 * w + offset}
        for w in (1.0, 0.75, 0.5, 0.25)
    ] + [{"subnet": "w0.10", "width": 0.1, "macs_g": 0.01}]  # metric missing -> skipped


def _check_png(path):
    assert path.exists() and path.stat().st_size > 10_000
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG"
        assert im.size == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))


def test_plot_accuracy_vs_macs(tmp_path):
    out = plot_accuracy_vs_macs(
        {"slimclr": _rows(0), "dspnet": _rows(3)}, "linear_switchable_top1", tmp_path / "p" / "acc.png"
    )
    _check_png(out)


def test_plot_runs_from_dirs(tmp_path):
    write_results(tmp_path / "a", _rows(0))
    write_results(tmp_path / "b", _rows(2))
    out = plot_runs([tmp_path / "a", tmp_path / "b"], "linear_switchable_top1", tmp_path / "cmp.png")
    _check_png(out)
