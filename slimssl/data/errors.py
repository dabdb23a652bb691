"""Error and warning types of :mod:`slimssl.data`.

Every message raised with :class:`DataError` names the offending file or folder and says how to
fix it, so that a user who mistypes a path or points at the wrong folder knows what to do next.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing input data (path, folder layout, image file, pickle batch)."""


class DataWarning(UserWarning):
    """Recoverable data problem, e.g. corrupt image files that were skipped."""
