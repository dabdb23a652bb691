"""Slimmable projector / predictor MLPs for the SSL methods.

In SlimCLR (Table 1 setting) the projection head of a width-``w`` sub-network takes the
``2048w``-dim backbone features and has a ``2048w``-wide hidden layer, while its output size stays
fixed so every width's embedding lives in the same space as the full-width target's (needed for
the contrastive loss against full-width keys and for distillation). The same holds for BYOL
(DSPNet) and MoCo v3 projectors/predictors. Presets:

* MoCo v2:            ``SlimMLP(2048, 2048, 128, 2, bn_hidden=False)``
* MoCo v3 projector:  ``SlimMLP(2048, 4096, 256, 3, bn_last=True, bn_last_affine=False)``
* MoCo v3 predictor:  ``SlimMLP(256, 4096, 256, 2, slim_in=False)``
* BYOL projector:     ``SlimMLP(2048, 4096, 256, 2)``; predictor: ``SlimMLP(256, 4096, 256, 2,
  slim_in=False)``
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from slimssl.nn.norm import NormMode, SlimBatchNorm1d
from slimssl.nn.ops import SlimLinear
from slimssl.nn.spec import SubnetSpec, as_spec, channels_at
from slimssl.nn.switch import SlimmableModel


class SlimMLP(SlimmableModel):
    """Linear (-> BN) -> ReLU ... -> Linear (-> BN) with width-following input/hidden sizes.

    It is a :class:`SlimmableModel`, so it can be switched on its own (a predictor) or nested in
    a model whose ``subnet()`` switches everything inside it. A Linear followed by BN carries no
    bias (the BN shift makes it redundant, as in MoCo v3).

    Args:
        in_dim / hidden_dim / out_dim: full-width sizes; ``out_dim`` is never sliced.
        num_layers: number of Linear layers (>= 1).
        bn_hidden: BatchNorm after each hidden Linear (MoCo v3, BYOL; not MoCo v2).
        bn_last / bn_last_affine: BatchNorm on the output (MoCo v3 projector: without affine).
        mode / widths / width_range: BatchNorm mode and the family's widths.
        slim_in: the input follows the width (projector on ``2048w`` features); ``False`` for a
            predictor whose input is a fixed-size embedding.
        slim_hidden: the hidden layers follow the width.
        in_divisor: channel rounding of the sliced input (the backbone's ``feature_divisor``:
            8 for MobileNetV3, 64 for ViTs).

    Example:
        >>> head = SlimMLP(64, 64, 16, widths=(1.0, 0.5))
        >>> with head.subnet(0.5):
        ...     head(torch.randn(4, 32)).shape
        torch.Size([4, 16])
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2,
                 bn_hidden: bool = True, bn_last: bool = False, bn_last_affine: bool = True,
                 mode: NormMode = "switchable", widths: Sequence[float] = (1.0,),
                 slim_in: bool = True, slim_hidden: bool = True,
                 width_range: tuple[float, float] | None = None, in_divisor: int = 1) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        super().__init__(widths, mode, width_range)
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.slim_in, self.slim_hidden = slim_in, slim_hidden
        layers: list[nn.Module] = []
        dim, slim = in_dim, slim_in
        for i in range(num_layers):
            last = i == num_layers - 1
            out, slim_out = (out_dim, False) if last else (hidden_dim, slim_hidden)
            use_bn = bn_last if last else bn_hidden
            layers.append(SlimLinear(dim, out, bias=not use_bn, slim_in=slim, slim_out=slim_out,
                                     in_divisor=in_divisor if i == 0 else 1))
            if use_bn:
                affine = bn_last_affine if last else True
                layers.append(SlimBatchNorm1d(out, mode, self.widths, slim=slim_out,
                                              affine=affine))
            if not last:
                layers.append(nn.ReLU(inplace=True))
            dim, slim = out, slim_out
        self.layers = nn.Sequential(*layers)

    def input_dim(self, spec: SubnetSpec | float | None = None) -> int:
        """Expected input size of member ``spec`` (default: the active member)."""
        width = self.active_spec.width if spec is None else as_spec(spec).width
        return channels_at(self.in_dim, width) if self.slim_in else self.in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)

    @torch.no_grad()
    def export(self) -> nn.Sequential:
        """A plain ``nn.Sequential`` copy of the active member (standard torch layers only)."""
        plain = [m.export() if hasattr(m, "export") else nn.ReLU(inplace=True)
                 for m in self.layers]
        return nn.Sequential(*plain).train(self.training)


def head_kwargs(backbone: SlimmableModel) -> dict:
    """The SlimMLP arguments that make a head's input and norms follow ``backbone``'s family."""
    return dict(mode=backbone.norm_mode, widths=backbone.widths, width_range=backbone.width_range,
                slim_in=backbone.feature_slim, in_divisor=backbone.feature_divisor)
