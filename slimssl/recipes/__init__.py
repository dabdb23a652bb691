"""Slimmable training recipes (docs/design.md sec. 4); importing the package registers every recipe
with :mod:`slimssl.recipes.registry`."""

from slimssl.recipes import dspnet, slimclr, supervised, us3l, usnet  # noqa: F401
from slimssl.recipes.registry import RECIPES, list_recipes, register_recipe

__all__ = ["RECIPES", "list_recipes", "register_recipe"]
