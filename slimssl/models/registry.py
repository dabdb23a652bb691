"""Name -> backbone factory: ``slimssl.models.create("resnet50", widths=[1, .5], ...)``."""

from __future__ import annotations

import difflib
from typing import Callable

from torch import nn

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a factory under ``name`` (lower case)."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = factory
        return factory

    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered slimmable backbone; unknown names list the known ones."""
    import slimssl.models  # noqa: F401  (registers every architecture)

    key = name.lower()
    if key not in _MODELS:
        close = difflib.get_close_matches(key, _MODELS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown architecture {name!r}{hint}; known: {', '.join(list_models())}")
    return _MODELS[key](**kwargs)
