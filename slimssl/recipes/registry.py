"""Name -> recipe class (``recipe.name`` of the config), like :mod:`slimssl.models.registry`.

A recipe class registers itself where it is defined (``@register_recipe("dspnet")``; one class
may serve several names, e.g. S-Net and US-Net) and owns its defaults: its
:meth:`~slimssl.recipes.base.Recipe.from_config` reads the settings it uses, fills the ones left
``None`` and writes them back, and its ``update_mode`` class attribute is the default of
``recipe.update_mode``.
"""

from __future__ import annotations

from typing import Callable, TypeVar

from slimssl.registry import Registry

__all__ = ["RECIPES", "register_recipe", "list_recipes"]

R = TypeVar("R", bound=type)

RECIPES: Registry[type] = Registry("recipe", package="slimssl.recipes")


def register_recipe(name: str) -> Callable[[R], R]:
    """Class decorator: register the class under ``name``."""
    return RECIPES.register(name)


def list_recipes() -> list[str]:
    return RECIPES.names()
