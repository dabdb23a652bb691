"""``extract_subnet``: turn one member of a slimmable family into a plain, physically small model.

Each slimmable architecture registers an extractor (a function ``(model, spec) -> plain module``)
and each plain architecture registers its class under a name, so an exported model can be rebuilt
from its JSON architecture description without any slimmable code (docs/design.md sec. 2).
A plain module carries ``arch_name: str`` and ``arch_config: dict`` (JSON-serialisable) and its
class offers ``from_config(config) -> module``.
"""

from __future__ import annotations

import copy
from typing import Callable, TypeVar

import torch
from torch import nn

from slimssl.nn.spec import SubnetSpec, as_spec
from slimssl.nn.switch import SlimmableModel

Extractor = Callable[[SlimmableModel, SubnetSpec], nn.Module]
_EXTRACTORS: dict[type, Extractor] = {}
_PLAIN: dict[str, type[nn.Module]] = {}
M = TypeVar("M", bound=type)


def register_extractor(model_cls: type) -> Callable[[Extractor], Extractor]:
    """Decorator: ``@register_extractor(SlimResNet) def _(model, spec): ...``."""

    def wrap(fn: Extractor) -> Extractor:
        _EXTRACTORS[model_cls] = fn
        return fn

    return wrap


def register_plain(name: str) -> Callable[[M], M]:
    """Decorator registering a plain architecture class (needs ``from_config``)."""

    def wrap(cls: M) -> M:
        _PLAIN[name] = cls
        return cls

    return wrap


def plain_class(name: str) -> type[nn.Module]:
    import slimssl.export  # noqa: F401  (registers the plain architectures)

    if name not in _PLAIN:
        raise ValueError(f"unknown exported architecture {name!r}; known: {sorted(_PLAIN)}")
    return _PLAIN[name]


@torch.no_grad()
def extract_subnet(model: SlimmableModel, spec: SubnetSpec | float) -> nn.Module:
    """Return a standalone module whose tensors are copies of ``model``'s slices at ``spec``.

    The result is in eval mode, uses only standard torch layers, and gives the same outputs as
    ``model`` in eval mode at ``spec`` (tested to 1e-5 in float32).
    """
    import slimssl.export  # noqa: F401

    spec = model.validate_spec(as_spec(spec))
    for cls in type(model).__mro__:
        if cls in _EXTRACTORS:
            was_training = model.training
            model.eval()
            try:
                with model.subnet(spec):
                    plain = _EXTRACTORS[cls](model, spec)
            finally:
                model.train(was_training)
            return copy.deepcopy(plain).eval()
    raise NotImplementedError(f"no exporter registered for {type(model).__name__}")
