"""SSL methods (docs/design.md sec. 3), one file each; importing the package registers every method
with :mod:`slimssl.methods.registry`."""

from slimssl.methods import byol, mocov2, mocov3, simclr, simsiam, supervised  # noqa: F401
from slimssl.methods.registry import METHODS, list_methods, register_method

__all__ = ["METHODS", "list_methods", "register_method"]
