"""Load ONE network's weights into every member of a slimmable family.

DSPNet appendix 0.B ("BYOL+S-Net", Fig. A1) initialises supervised slimmable training from a
single pre-trained network: every member starts from it. Shared (sliced) layers hold the same
tensors in both models, so they copy as they are; a switchable BatchNorm has private
parameters per width, and each gets the leading channels of the single network's BatchNorm
(the channels a width-``w`` member keeps), so a narrow member starts as the single network's
channel slice. A universal BatchNorm is shared and copies whole.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from slimssl.nn.norm import _SlimBatchNorm
from slimssl.nn.switch import SlimmableModel


@torch.no_grad()
def load_single_network(family: SlimmableModel, single: nn.Module) -> None:
    """Copy ``single`` into every member of ``family``; raises ``ValueError`` on any missing or
    mis-shaped tensor, before anything is copied.

    ``single`` has the family's layer names: the same slimmable architecture built for one
    width (its largest member is copied), or a plain network with standard BatchNorms (a
    torchvision or timm model, :mod:`slimssl.models.convert`)."""
    norms = {name: m for name, m in family.named_modules() if isinstance(m, _SlimBatchNorm)}
    state, source = single.state_dict(), dict(single.named_modules())
    shared = {k: t for k, t in family.state_dict().items()
              if not any(k.startswith(f"{name}.") for name in norms)}
    for key, tensor in shared.items():
        if key not in state or state[key].shape != tensor.shape:
            _mismatch(key, tensor.shape, state[key].shape if key in state else None)
    for name, norm in norms.items():
        found = getattr(source.get(name), "num_features", None)
        if found != norm.num_features:
            _mismatch(name, (norm.num_features,), None if found is None else (found,))
    for key, tensor in shared.items():
        tensor.copy_(state[key])
    slim = isinstance(single, SlimmableModel)
    with single.subnet(single.full_spec) if slim else contextlib.nullcontext():
        for name, norm in norms.items():
            _fill_norm(norm, source[name].export() if slim else source[name])


def _mismatch(key: str, expected, found) -> None:
    raise ValueError(f"single network does not fit the family at {key!r}: expected "
                     f"{tuple(expected)}, got {'missing' if found is None else tuple(found)}")


def _fill_norm(norm: _SlimBatchNorm, plain: nn.modules.batchnorm._BatchNorm) -> None:
    """Every BatchNorm behind ``norm`` gets ``plain``'s leading channels."""
    targets = list(norm.bn) if norm.mode == "switchable" else [norm]
    for target in targets:
        for name in ("weight", "bias", "running_mean", "running_var"):
            dst, src = getattr(target, name), getattr(plain, name)
            if dst is not None:
                dst.copy_(src[:dst.shape[0]])
