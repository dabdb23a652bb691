"""One chart of the measured cost ratios next to their limits and goals (from results/*.json).

Reads ``step_cost.json``, ``slow_start.json``, ``memory.json`` and ``lightly_peer.json`` (those
present) and draws measured ratio bars with the FLOP limit / goal marked, to
``benchmarks/results/costs.png``.

Usage::

    python benchmarks/plot_costs.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS_DIR  # noqa: E402


def _load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def bars() -> list[tuple[str, float, float | None, float | None]]:
    """(label, measured ratio, limit or None, goal or None) for every figure present."""
    out = []
    if (step := _load("step_cost")):
        for r in step["runs"]:
            if "error" in r:
                continue
            for mode in ("sum", "accumulate"):
                goal = 1.8 if r["recipe"] == "slimclr" else None
                out.append((f"{r['recipe']} step\n{mode}", r[f"ratio_{mode}"], r["flop_limit"], goal))
    if (slow := _load("slow_start")):
        out.append(("run, slow start\n(half epochs)", slow["ratio"]["slow_start_half"],
                    slow["flop_limit"]["slow_start_half"], None))
        out.append(("run, no\nslow start", slow["ratio"]["no_slow_start"],
                    slow["flop_limit"]["no_slow_start"], None))
    if (mem := _load("memory")):
        out.append(("peak mem\naccumulate", mem["ratio_accumulate"], None, 1.15))
        out.append(("peak mem\nsum", mem["ratio_sum"], None, None))
    if (peer := _load("lightly_peer")):
        out.append(("MoCo v2 step\nslimssl/lightly", peer["ratio_slimssl_over_lightly"], None, 1.0))
    return out


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = bars()
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(items)), 4.5))
    xs = range(len(items))
    ax.bar(xs, [m for _, m, _, _ in items], color="tab:blue", label="measured (median ratio)")
    for x, (_, _, limit, goal) in zip(xs, items):
        if limit is not None:
            ax.hlines(limit, x - 0.4, x + 0.4, colors="black")
        if goal is not None:
            ax.hlines(goal, x - 0.4, x + 0.4, colors="tab:red", linestyles="dashed")
    ax.plot([], [], "k-", label="FLOP limit (exported MACs)")
    ax.plot([], [], "r--", label="goal (issue 8)")
    ax.set_xticks(list(xs), [label for label, _, _, _ in items], fontsize=7)
    ax.set_ylabel("ratio to vanilla / peer")
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.legend(fontsize=8)
    ax.set_title("slimssl cost ratios (CPU, see BENCHMARKS.md)")
    fig.tight_layout()
    out = RESULTS_DIR / "costs.png"
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
