"""Name -> backbone factory: ``slimssl.models.create("resnet50", widths=[1, .5], ...)``."""

from __future__ import annotations

from typing import Callable

from torch import nn

from slimssl.registry import Registry

MODELS: Registry[Callable[..., nn.Module]] = Registry("architecture", package="slimssl.models")


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a factory under ``name`` (lower case)."""
    return MODELS.register(name)


def list_models() -> list[str]:
    return MODELS.names()


def create(name: str, **kwargs) -> nn.Module:
    """Build a registered slimmable backbone; unknown names list the known ones."""
    return MODELS.get(name)(**kwargs)
