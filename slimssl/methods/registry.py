"""Name -> SSL method class (``method.name`` of the config), like :mod:`slimssl.models.registry`.

Each class registers itself where it is defined (``@register_method("mocov2")``) and owns its
defaults: the defaults of its ``__init__`` (and :meth:`SSLMethod.backbone_defaults`) fill every
setting left ``None`` by the config (:meth:`SSLMethod.from_config`).
"""

from __future__ import annotations

from typing import Callable, TypeVar

from slimssl.registry import Registry

__all__ = ["METHODS", "register_method", "list_methods"]

M = TypeVar("M", bound=type)

METHODS: Registry[type] = Registry("method", package="slimssl.methods")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: register under ``name`` and set the class's ``name`` attribute."""

    def wrap(cls: M) -> M:
        cls.name = name
        return METHODS.register(name)(cls)

    return wrap


def list_methods() -> list[str]:
    return METHODS.names()
