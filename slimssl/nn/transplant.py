"""Load ONE network's weights into every member of a slimmable family.

DSPNet appendix 0.B ("BYOL+S-Net", Fig. A1) initialises supervised slimmable training from a
single pre-trained network: every member starts from it. Shared (sliced) layers hold the same
tensors in both models, so they copy as they are; a switchable BatchNorm has private
parameters per width, and each gets the leading channels of the single network's BatchNorm
(the channels a width-``w`` member keeps), so a narrow member starts as the single network's
channel slice. A universal BatchNorm is shared and copies whole.
"""

from __future__ import annotations

from typing import Mapping

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
    state = dict(single.state_dict())
    if isinstance(single, SlimmableModel):  # its BatchNorms as the plain ones of its largest member
        with single.subnet(single.full_spec):
            for name, norm in single.named_modules():
                if isinstance(norm, _SlimBatchNorm):
                    state = {k: v for k, v in state.items() if not k.startswith(f"{name}.")}
                    state.update({f"{name}.{k}": v for k, v in norm.export().state_dict().items()})
    load_network_state(family, state)


@torch.no_grad()
def load_network_state(family: SlimmableModel, state: Mapping[str, torch.Tensor]) -> None:
    """Copy one plain network's ``state_dict`` (the family's layer names, standard BatchNorm
    keys ``<name>.weight/bias/running_mean/running_var``) into every member of ``family``;
    raises ``ValueError`` on any missing or mis-shaped tensor, before anything is copied.
    Keys the family lacks are not read (the caller decides whether they may be left out)."""
    norms = {name: m for name, m in family.named_modules() if isinstance(m, _SlimBatchNorm)}
    shared = {k: t for k, t in family.state_dict().items()
              if not any(k.startswith(f"{name}.") for name in norms)}
    for key, tensor in shared.items():
        if key not in state or state[key].shape != tensor.shape:
            _mismatch(key, tensor.shape, state[key].shape if key in state else None)
    for name, norm in norms.items():
        stats = state.get(f"{name}.running_mean")
        if stats is None or stats.shape != (norm.num_features,):
            _mismatch(f"{name}.running_mean", (norm.num_features,),
                      None if stats is None else stats.shape)
    for key, tensor in shared.items():
        tensor.copy_(state[key])
    for name, norm in norms.items():
        _fill_norm(norm, {k: state.get(f"{name}.{k}") for k in _NORM_TENSORS})


_NORM_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _mismatch(key: str, expected, found) -> None:
    raise ValueError(f"single network does not fit the family at {key!r}: expected "
                     f"{tuple(expected)}, got {'missing' if found is None else tuple(found)}")


def _fill_norm(norm: _SlimBatchNorm, plain: Mapping[str, torch.Tensor | None]) -> None:
    """Every BatchNorm behind ``norm`` gets the leading channels of ``plain``'s tensors."""
    targets = list(norm.bn) if norm.mode == "switchable" else [norm]
    for target in targets:
        for name in _NORM_TENSORS:
            dst, src = getattr(target, name), plain[name]
            if dst is not None:
                if src is None:
                    raise ValueError(f"single network has no {name!r} for a BatchNorm with an "
                                     "affine transform")
                dst.copy_(src[:dst.shape[0]])
