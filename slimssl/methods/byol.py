"""BYOL with a slimmable online encoder and a full-size target: DSPNet's method.

BYOL (Grill et al., NeurIPS 2020): online encoder -> projector -> predictor, target encoder ->
projector (EMA of the online ones, no predictor); loss ``2 - 2 cos(p_online, sg(z_target))``
symmetrised over the two views (Eq. 2, ``L + L~``); target momentum from ``tau_base`` to 1 by
cosine per step (the engine's ``momentum_schedule``: 0.996 for long runs, 0.99 for 300 epochs).

DSPNet (Wang et al. 2022, Sec. 4.1, Eq. 2-5 and appendix 0.A.1): every sampled sub-network is
an online branch and the **full-size target** is the teacher of all of them. Projector and
predictor are BYOL's (Linear 4096 -> BN -> ReLU -> Linear 256) "except for the first linear
layer in the projector of the online branch, because it should have an alterable input
channel": only the projector's input follows the width, the hidden layers keep 4096 units for
every sub-network (``slim_hidden=False``; pass ``True`` for SlimCLR's convention of hidden
layers that shrink with the width).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimssl.methods.base import SSLMethod, SubnetOutput
from slimssl.methods.registry import register_method
from slimssl.methods.losses import byol_loss
from slimssl.models.encoder import SlimEncoder
from slimssl.models.heads import SlimMLP, head_kwargs
from slimssl.nn.spec import SubnetSpec
from slimssl.nn.switch import SlimmableModel

Views = tuple[torch.Tensor, torch.Tensor]


def stacked_unit(xs: list[torch.Tensor]) -> torch.Tensor:
    """``[x_1; x_2]`` L2-normalised row-wise: the view-stacked layout of ``SubnetOutput``."""
    return F.normalize(torch.cat(xs), dim=1)


@register_method("byol")
class BYOL(SSLMethod):
    """Symmetrised BYOL loss of each sub-network against the full-size EMA target.

    Args:
        backbone: slimmable backbone.
        proj_hidden / proj_dim / pred_hidden: 4096 / 256 / 4096 (BYOL, DSPNet App. 0.A.1).
        slim_hidden: hidden layers of both heads follow the width (default: no, DSPNet).

    Example:
        >>> method = BYOL(create("resnet18", widths=[1, .5], stem="cifar"), 512, 128, 512)
        >>> z = method.target_forward((x1, x2))
        >>> out = method.subnet_forward((x1, x2), SubnetSpec(0.5), z)
    """

    def __init__(self, backbone: SlimmableModel, proj_hidden: int = 4096, proj_dim: int = 256,
                 pred_hidden: int = 4096, slim_hidden: bool = False) -> None:
        kwargs = dict(head_kwargs(backbone), slim_hidden=slim_hidden)
        projector = SlimMLP(backbone.full_features, proj_hidden, proj_dim, num_layers=2,
                            bn_hidden=True, **kwargs)
        kwargs.update(slim_in=False)
        predictor = SlimMLP(proj_dim, pred_hidden, proj_dim, num_layers=2, bn_hidden=True,
                            **kwargs)
        super().__init__(SlimEncoder(backbone, projector, predictor))

    @torch.no_grad()
    def target_forward(self, views: Views) -> tuple[torch.Tensor, torch.Tensor]:
        """Target projections ``z'_1, z'_2`` at full size (Eq. 3)."""
        return tuple(self.run_target(v) for v in views)

    def subnet_forward(self, views: Views, spec: SubnetSpec,
                       target: tuple[torch.Tensor, torch.Tensor]) -> SubnetOutput:
        zs, ps = self.project_views(views, spec)
        loss = byol_loss(ps[0], target[1]) + byol_loss(ps[1], target[0])
        return SubnetOutput(loss, None, stacked_unit(ps), stacked_unit(zs))
