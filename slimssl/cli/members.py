"""Shared by ``slimssl export`` and ``slimssl select``: open a run, name its members.

A run is given as its directory (or one of its checkpoint files); members are named on the
command line by widths (``1,0.5``) and, for depth-elastic families, per-stage depths
(``2-2-2-2,1-1-1-1``). Every member is validated against the trained family, so a width outside
the trained set or range, or a depth that does not fit the backbone, is a one-line error.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # torch is imported only when a command runs, not to build the parser
    from slimssl.engine.config import Config
    from slimssl.nn.spec import SubnetSpec
    from slimssl.nn.switch import SlimmableModel


@dataclass
class Run:
    cfg: Config
    backbone: SlimmableModel
    directory: Path


def open_run(path: str, data: str | None = None) -> Run:
    """Load a run's newest valid checkpoint (weights only) and its directory."""
    from slimssl.engine.build import load_pretrained

    cfg, method = load_pretrained(path)
    if data is not None:
        cfg.data.path = data
    p = Path(path)
    directory = p if p.is_dir() else p.parent.parent
    return Run(cfg, method.online.backbone.eval(), directory)


def parse_depths(text: str) -> list[tuple[int, ...]]:
    """``"2-2-2-2,1-1-1-1"`` -> ``[(2, 2, 2, 2), (1, 1, 1, 1)]`` (argparse type)."""
    try:
        return [tuple(int(d) for d in item.split("-")) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"depths must be per-stage block counts joined by '-', comma-separated, e.g. "
            f"2-2-2-2,1-1-1-1; got {text!r}") from None


def member_specs(backbone: SlimmableModel, widths: Sequence[float] | None,
                 depths: Sequence[tuple[int, ...]] | None) -> list[SubnetSpec]:
    """Every (width, depth) pair, validated; defaults: the trained widths and depth choices."""
    from slimssl.nn.spec import SubnetSpec

    widths = list(widths) if widths else list(backbone.widths)
    options: list[tuple[int, ...] | None] = list(depths) if depths else list(
        backbone.depth_choices or [None])
    return [backbone.validate_spec(SubnetSpec(w, d)) for w in widths for d in options]


def add_member_arguments(p: argparse.ArgumentParser) -> None:
    from slimssl.cli.profile import parse_widths

    p.add_argument("run", help="run directory (or one of its checkpoint files)")
    p.add_argument("--widths", type=parse_widths,
                   help="comma-separated widths, e.g. 1,0.5 (default: the trained widths)")
    p.add_argument("--depths", type=parse_depths,
                   help="per-stage depths, e.g. 2-2-2-2,1-1-1-1 (default: the trained choices)")
    p.add_argument("--data", help="training data for BN statistics (default: the run's)")
