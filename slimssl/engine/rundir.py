"""Check the output directory before any work is done.

Why up front: a run that would train for hours must not die at its first checkpoint (or lose
every log line) because ``out_dir`` points under a file, onto a read-only mount or into a folder
it may not write; the check costs one empty temporary file.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from slimssl.engine.config import ConfigError


def prepare_run_dir(path: str | Path) -> Path:
    """Create ``path`` (with parents) and prove a file can be written there.

    Raises :class:`ConfigError` naming the directory, the reason and the fix.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            f"output directory '{path}' cannot be written ({reason}); pass --out-dir (config key "
            "'out_dir') a folder you can create and write to") from None
    return path
