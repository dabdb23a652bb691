"""Config -> backbone, method and recipe, through the registries of :mod:`slimssl.models`,
:mod:`slimssl.methods` and :mod:`slimssl.recipes` (each class owns its defaults).

Building resolves every setting left ``None`` to the value actually used and writes it back into
the config, so the ``config.yaml`` and checkpoint written after building show no ``null`` that
stands for a value decided here.
"""

from __future__ import annotations

import inspect
import logging

from slimssl.engine.config import Config, ConfigError
from slimssl.methods.base import SSLMethod
from slimssl.methods.registry import METHODS
from slimssl.models.registry import MODELS
from slimssl.nn.switch import SlimmableModel
from slimssl.recipes.base import Recipe
from slimssl.recipes.registry import RECIPES

_log = logging.getLogger(__name__)


def build_backbone(cfg: Config, init_weights: bool = False) -> SlimmableModel:
    """The slimmable backbone of ``cfg.model``; with ``init_weights`` (a new pre-training run)
    every member starts from ``model.init_from``'s weights when it is set. ``base_width`` left
    ``None`` takes the architecture's own default and a universal model's ``width_range`` its
    widths' span, both written back."""
    m = cfg.model
    kwargs = dict(widths=m.widths, norm=m.norm, stem=m.stem, num_classes=0)
    if m.width_range is not None:
        kwargs["width_range"] = tuple(m.width_range)
    if m.depths is not None:
        kwargs["depth_choices"] = m.depths
    try:
        factory = MODELS.get(m.arch)
    except ValueError as err:
        raise ConfigError(f"config key 'model.arch': {err}") from None
    # a None setting takes the architecture's own default, written back (the saved config
    # shows the value used)
    base = inspect.signature(factory).parameters.get("base_width")
    if m.base_width is None and base is not None and base.default is not base.empty:
        m.base_width = base.default
    if m.base_width is not None:
        kwargs["base_width"] = m.base_width
    backbone = factory(**kwargs)
    if m.width_range is None and backbone.norm_mode == "universal":
        m.width_range = list(backbone.width_range)
    if init_weights and m.init_from is not None:
        from slimssl.dist import is_main
        from slimssl.models.convert import load_backbone_weights

        try:
            left_out = load_backbone_weights(backbone, m.init_from)
        except ValueError as err:
            raise ConfigError(f"config key 'model.init_from': {err}") from None
        if is_main():
            _log.info(f"every member starts from {m.init_from}"
                      + (f" (classifier left out: {', '.join(left_out)})" if left_out else ""))
    return backbone


def build_method(cfg: Config, backbone: SlimmableModel) -> SSLMethod:
    """The registered method ``cfg.method.name`` on ``backbone``; ``cfg.method``'s ``None``
    settings take the class's defaults (written back)."""
    try:
        method = METHODS.get(cfg.method.name).from_config(backbone, cfg.method)
    except ValueError as err:
        raise ConfigError(f"config key 'method': {err}") from None
    for key, enable in (("momentum_bn", method.use_momentum_bn),
                        ("fix_pred_lr", method.use_fixed_predictor_lr)):
        if getattr(cfg.method, key):
            try:
                enable()
            except ValueError as err:
                raise ConfigError(f"config key 'method.{key}': {err}; set it to false") from None
    return method


def build_recipe(cfg: Config, model: SlimmableModel) -> Recipe:
    """The registered recipe ``cfg.recipe.name`` for ``model``: the recipe class reads its own
    settings (:meth:`~slimssl.recipes.base.Recipe.from_config`) and its ``update_mode`` is the
    default of ``recipe.update_mode``."""
    try:
        cls = RECIPES.get(cfg.recipe.name)
        recipe = cls.from_config(cfg, model)
    except ValueError as err:
        raise ConfigError(f"config key 'recipe': {err}") from None
    if cfg.recipe.update_mode is None:
        cfg.recipe.update_mode = cls.update_mode
    recipe.name, recipe.update_mode = cfg.recipe.name, cfg.recipe.update_mode
    return recipe


def load_pretrained(path: str, map_location: str = "cpu") -> tuple[Config, SSLMethod]:
    """Rebuild a pre-trained method (online + target) from a run dir or a checkpoint file.

    The config travels inside the checkpoint, so no other file is needed; loading uses
    ``weights_only=True`` (no pickle code can run).
    """
    from slimssl.engine.checkpoint import check_state_dict_compatible, resolve_resume

    _, ckpt = resolve_resume(path, map_location)
    cfg = Config.from_dict(ckpt["config"])
    method = build_method(cfg, build_backbone(cfg))
    check_state_dict_compatible(method.state_dict(), ckpt["method"], "model")
    method.load_state_dict(ckpt["method"])
    return cfg, method.eval()
