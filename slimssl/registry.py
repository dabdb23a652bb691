"""Name -> object registries (backbones, SSL methods, recipes), one implementation for all three.

Like timm's model registry: a module registers its entries with a decorator where they are
defined, and a look-up of an unknown name lists the known ones (with the closest match). It sits
at the bottom of the import direction (docs/design.md sec. 1) beside :mod:`slimssl.dist` and
:mod:`slimssl.schedule`, so that ``models``, ``methods`` and ``recipes`` can each own one.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Callable, Generic, Iterator, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by lower-case name.

    ``package`` is imported before every look-up: its ``__init__`` imports the modules that
    register entries, so ``get`` works whatever the caller imported first.

    Example:
        >>> reg = Registry("method")
        >>> @reg.register("toy")
        ... class Toy: ...
        >>> reg.get("toy") is Toy
        True
    """

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an entry under ``name`` (lower case); a name is taken once."""
        key = name.lower()

        def wrap(entry: T) -> T:
            if key in self._entries:
                raise ValueError(f"{self.kind} {key!r} registered twice")
            self._entries[key] = entry
            return entry

        return wrap

    def _load(self) -> None:
        if self.package is not None:
            importlib.import_module(self.package)

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def get(self, name: str) -> T:
        """The entry of ``name``; an unknown name raises ``ValueError`` listing the known ones."""
        self._load()
        key = str(name).lower()
        if key not in self._entries:
            close = difflib.get_close_matches(key, self._entries, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown {self.kind} {name!r}{hint}; known: "
                             f"{', '.join(sorted(self._entries))}")
        return self._entries[key]

    def __contains__(self, name: object) -> bool:
        self._load()
        return str(name).lower() in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
