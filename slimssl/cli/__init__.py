"""``slimssl`` command line: one module per command, each with ``add_parser(subparsers)``.

The CLI alone prints tables for people (docs/design.md sec. 1); every command is a thin
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
    skipped-step notices) on stdout: the library logs, the CLI prints (docs/design.md sec. 1)."""
    log = logging.getLogger("slimssl")
    if not any(isinstance(h, _Console) for h in log.handlers):
        handler = _Console()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_library_messages()
    try:
        return int(args.func(args) or 0)
    except Exception as err:  # noqa: BLE001 - only the user errors below are caught
        if not isinstance(err, _user_errors()) or os.environ.get("SLIMSSL_DEBUG"):
            raise
        print(f"slimssl {args.command}: error: {err}", file=sys.stderr)
        return 2


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can fix (bad config key, missing data, bad checkpoint, non-finite loss).
    The library's own classes are looked up only in modules already imported (one that raised
    was imported), so handling an error imports nothing the command did not need."""
    own = [("slimssl.engine.config", "ConfigError"), ("slimssl.data.errors", "DataError"),
           ("slimssl.engine.checkpoint", "CheckpointError"),
           ("slimssl.engine.trainer", "NonFiniteLossError")]
    return (FileNotFoundError, PermissionError, NotImplementedError, ValueError,
            *(getattr(sys.modules[m], name) for m, name in own if m in sys.modules))


if __name__ == "__main__":
    sys.exit(main())
