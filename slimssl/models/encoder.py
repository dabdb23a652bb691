"""Backbone + projector (+ predictor) switched together as one slimmable encoder.

SSL methods run the online encoder at a sampled sub-network and the momentum target at full
width (docs/design.md sec. 3); wrapping the heads with the backbone lets one ``subnet(spec)``
switch every layer whose input or hidden size follows the width.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimssl.nn.spec import SubnetSpec
from slimssl.nn.switch import SlimmableModel


class SlimEncoder(SlimmableModel):
    """``predictor(projector(backbone(x)))``, every part following the active sub-network.

    The family (widths, norm mode, depths) is the backbone's; specs are validated by it.
    """

    def __init__(self, backbone: SlimmableModel, projector: nn.Module,
                 predictor: nn.Module | None = None) -> None:
        super().__init__(backbone.widths, backbone.norm_mode, backbone.width_range,
                         backbone.stage_depths, backbone.depth_choices)
        self.backbone, self.projector, self.predictor = backbone, projector, predictor

    def validate_spec(self, spec: SubnetSpec | float) -> SubnetSpec:
        return self.backbone.validate_spec(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.projector(self.backbone(x))
        return self.predictor(z) if self.predictor is not None else z

    def momentum_copy(self) -> "SlimEncoder":
        """A frozen copy without the predictor: the EMA target of MoCo/BYOL-style methods."""
        target = SlimEncoder(copy.deepcopy(self.backbone), copy.deepcopy(self.projector), None)
        for p in target.parameters():
            p.requires_grad_(False)
        return target
