"""``slimssl`` command line: one module per command, each with ``add_parser(subparsers)``.

The CLI is the only layer that prints tables for people (DESIGN.md sec. 1); every command is a thin
layer over the library: a config (YAML + ``--set`` overrides) in, a run directory and a table out.
Errors that users can fix (bad config key, missing data, bad checkpoint, bad width) are printed as
one line naming the problem and the fix, with exit code 2; ``SLIMSSL_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

import slimssl
from slimssl.cli import (config, diagnose, export, finetune, knn, linear, plot, pretrain, profile,
                         reproduce, select)

# Each command module imports torch (and matplotlib) inside the functions that run it, so
# building this parser (``slimssl --help``, ``--version``) stays fast; tests/test_packaging.py
# checks it.
COMMANDS = [pretrain, knn, linear, finetune, profile, plot, export, select, diagnose, config,
            reproduce]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slimssl", description="Self-supervised pre-training of slimmable networks: one run, "
        "a family of sub-networks, each evaluated and exported.")
    parser.add_argument("--version", action="version", version=f"slimssl {slimssl.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


class _Console(logging.Handler):
    """Prints the library's log records to the *current* ``sys.stdout`` (looked up at each
    record, so a captured or redirected stdout gets them)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stdout, flush=True)


def show_library_messages() -> None:
    """Show the ``slimssl`` logger's INFO messages (the training loop's start line, resume and
    skipped-step notices) on stdout: the library logs, the CLI prints (DESIGN.md sec. 1)."""
    log = logging.getLogger("slimssl")
    if not any(isinstance(h, _Console) for h in log.handlers):
        handler = _Console()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_library_messages()
    from slimssl.data.errors import DataError
    from slimssl.engine.checkpoint import CheckpointError
    from slimssl.engine.config import ConfigError
    from slimssl.engine.trainer import NonFiniteLossError

    try:
        return int(args.func(args) or 0)
    except (ConfigError, DataError, CheckpointError, FileNotFoundError, PermissionError,
            NotImplementedError, ValueError, NonFiniteLossError) as err:
        if os.environ.get("SLIMSSL_DEBUG"):
            raise
        print(f"slimssl {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
