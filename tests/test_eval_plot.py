"""Accuracy-vs-MACs PNG."""

import pytest
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


def test_accuracy_limits_hand_values():
    from slimssl.eval.plot import MIN_SPAN, accuracy_limits

    assert MIN_SPAN == 10.0
    # the default job's kNN@200 and kNN@20 of one member: one image apart (0.28 points)
    lo, hi = accuracy_limits([95.56, 95.28])  # 95.42 +- 5 -> shifted under 100
    assert (round(lo, 6), hi) == (90.0, 100.0)
    assert accuracy_limits([40.0, 60.0]) == (39.0, 61.0)  # wide enough: 5% margins
    assert accuracy_limits([20.0, 21.0]) == (15.5, 25.5)  # widened around the middle
    assert accuracy_limits([1.0, 2.0]) == (0.0, 10.0)  # shifted above 0


def _knn_rows():
    return [{"subnet": f"w{w:.2f}", "width": w, "macs_g": 0.016 * w * w,
             "knn_top1_k200": 92.0 + 3 * w, "knn_random_init": 58.0 + 20 * w}
            for w in (1.0, 0.5, 0.25)]


def test_random_init_baseline_is_a_series():
    from slimssl.eval.plot import ACCURACY, BASELINE, accuracy_series

    series = accuracy_series({"run": _knn_rows()}, "knn_top1_k200")
    assert [(label, key, base) for label, _, key, base in series] == [
        ("run", "knn_top1_k200", False), ("run: random init", "knn_random_init", True)]
    assert [r["knn_random_init"] for r in series[1][1]] == [63.0, 68.0, 78.0]  # MACs order
    # plot_metrics' per-metric rows carry the baseline under BASELINE
    rows = [{**r, ACCURACY: r["knn_top1_k200"], BASELINE: r["knn_random_init"]}
            for r in _knn_rows()]
    assert len(accuracy_series({"kNN": rows}, ACCURACY, BASELINE)) == 2
    assert len(accuracy_series({"run": _rows(0)}, "linear_switchable_top1")) == 1  # none known


def test_plot_axis_follows_the_rule(tmp_path, monkeypatch):
    import slimssl.eval.plot as plot

    figures = []
    monkeypatch.setattr(plot.plt, "close", figures.append)
    rows = [{"subnet": "w1.00", "width": 1.0, "macs_g": 0.016, "knn_top1_k200": 95.56},
            {"subnet": "w0.50", "width": 0.5, "macs_g": 0.004, "knn_top1_k200": 95.28}]
    plot.plot_accuracy_vs_macs({"run": rows}, "knn_top1_k200", tmp_path / "a.png")
    assert figures[0].axes[0].get_ylim() == pytest.approx((90.0, 100.0))
    plot.plot_metrics(_knn_rows(), ["knn_top1_k200"], tmp_path / "b.png")
    ax = figures[1].axes[0]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--"]
    assert ax.get_ylim() == pytest.approx(plot.accuracy_limits([95, 93.5, 92.75, 78, 68, 63]))
    monkeypatch.undo()
    for fig in figures:
        plot.plt.close(fig)
