"""SimSiam with a slimmable encoder: the US3L paper's collapsing baseline (Table 1).

SimSiam (Chen & He, CVPR 2021): one encoder, no momentum target. Projector: 3 layers, BN on
every layer, ReLU on the hidden ones, the output BN without affine (Sec. 4 / App.; hidden and
output 2048 on ImageNet). Predictor: bottleneck ``2048 -> 512 -> 2048`` (BN + ReLU on the hidden
layer, plain output). Loss ``0.5 D(p1, sg(z2)) + 0.5 D(p2, sg(z1))`` with ``D = -cos``
(Eq. 1-2): every sub-network regresses its OWN stop-gradient projection, so the naive slimmable
versions (S-Net / US-Net with the supervised loss replaced) are these losses summed over widths;
their inplace-distillation variants live in :mod:`slimssl.recipes.usnet`.
"""

from __future__ import annotations

import torch

from slimssl.methods.base import SSLMethod, SubnetOutput
from slimssl.methods.registry import register_method
from slimssl.methods.byol import Views, stacked_unit
from slimssl.methods.losses import simsiam_loss
from slimssl.models.encoder import SlimEncoder
from slimssl.models.heads import SlimMLP, head_kwargs
from slimssl.nn.spec import SubnetSpec
from slimssl.nn.switch import SlimmableModel


@register_method("simsiam")
class SimSiam(SSLMethod):
    """Symmetric negative-cosine loss of each sub-network against its own projections.

    Args:
        backbone: slimmable backbone.
        proj_hidden / proj_dim / pred_hidden: 2048 / 2048 / 512 (SimSiam, ImageNet).
        slim_hidden: the projector's hidden layers follow the width (default no: as in the US3L
            code only the projector's input is sliced).

    Example:
        >>> method = SimSiam(create("resnet18", widths=[1, .5], stem="cifar"), 512, 512, 128)
        >>> out = method.subnet_forward((x1, x2), SubnetSpec(0.5), method.target_forward((x1, x2)))
    """

    uses_momentum_target = False

    def __init__(self, backbone: SlimmableModel, proj_hidden: int = 2048, proj_dim: int = 2048,
                 pred_hidden: int = 512, slim_hidden: bool = False) -> None:
        kwargs = dict(head_kwargs(backbone), slim_hidden=slim_hidden)
        projector = SlimMLP(backbone.full_features, proj_hidden, proj_dim, num_layers=3,
                            bn_hidden=True, bn_last=True, bn_last_affine=False, **kwargs)
        kwargs.update(slim_in=False, slim_hidden=False)
        predictor = SlimMLP(proj_dim, pred_hidden, proj_dim, num_layers=2, bn_hidden=True,
                            **kwargs)
        super().__init__(SlimEncoder(backbone, projector, predictor))

    @torch.no_grad()
    def target_forward(self, views: Views) -> None:
        """SimSiam has no target branch: each sub-network's stop-gradient is its own."""
        return None

    def subnet_forward(self, views: Views, spec: SubnetSpec, target: None) -> SubnetOutput:
        zs, ps = self.project_views(views, spec)
        loss = 0.5 * (simsiam_loss(ps[0], zs[1]) + simsiam_loss(ps[1], zs[0]))
        return SubnetOutput(loss, None, stacked_unit(ps), stacked_unit(zs))
