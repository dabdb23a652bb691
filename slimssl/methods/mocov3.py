"""SlimCLR-MoCov3's method: MoCo v3 with a slimmable online encoder and a full-width target.

MoCo v3 (Chen, Xie, He, ICCV 2021): projector (3 layers, BN, last BN without affine) and
predictor (2 layers), in-batch negatives gathered across ranks, symmetric loss
``ctr(q1, k2) + ctr(q2, k1)`` with ``ctr = 2 tau CE(q k^T / tau)``; momentum 0.99 -> 1 by cosine
(the engine's schedule). SlimCLR-MoCov3 (Sec. 4.1): tau1 = 1.0; projector 2048w -> 4096w -> 256
and predictor 256 -> 4096w -> 256 (docs/design.md sec. 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimssl.dist import concat_all_gather, get_rank
from slimssl.methods.base import SSLMethod, SubnetOutput
from slimssl.methods.registry import register_method
from slimssl.methods.losses import in_batch_logits, mocov3_loss
from slimssl.models.encoder import SlimEncoder
from slimssl.models.heads import SlimMLP, head_kwargs
from slimssl.nn.spec import SubnetSpec
from slimssl.nn.switch import SlimmableModel


@register_method("mocov3")
class MoCoV3(SSLMethod):
    """Symmetric MoCo v3 loss per sub-network against the full-width momentum keys.

    Example:
        >>> method = MoCoV3(create("resnet18", widths=[1, .5], stem="cifar"), 512, 128)
        >>> keys = method.target_forward((x1, x2))
        >>> out = method.subnet_forward((x1, x2), SubnetSpec(0.5), keys)
    """

    def __init__(self, backbone: SlimmableModel, proj_hidden: int = 4096, proj_dim: int = 256,
                 pred_hidden: int = 4096, temperature: float = 1.0) -> None:
        kwargs = head_kwargs(backbone)
        projector = SlimMLP(backbone.full_features, proj_hidden, proj_dim, num_layers=3,
                            bn_hidden=True, bn_last=True, bn_last_affine=False, **kwargs)
        kwargs.update(slim_in=False)
        predictor = SlimMLP(proj_dim, pred_hidden, proj_dim, num_layers=2, bn_hidden=True,
                            bn_last=False, **kwargs)
        super().__init__(SlimEncoder(backbone, projector, predictor))
        self.temperature = temperature

    @torch.no_grad()
    def target_forward(self, views: tuple[torch.Tensor, torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys of both views, gathered from every rank (the in-batch candidates)."""
        return tuple(concat_all_gather(F.normalize(self.run_target(v), dim=1)) for v in views)

    def subnet_forward(self, views: tuple[torch.Tensor, torch.Tensor], spec: SubnetSpec,
                       keys: tuple[torch.Tensor, torch.Tensor]) -> SubnetOutput:
        with self.online.subnet(spec):
            q1, q2 = (F.normalize(self.online(v), dim=1) for v in views)
        rank = get_rank()
        s1, labels = in_batch_logits(q1, keys[1], rank, 1.0)
        s2, _ = in_batch_logits(q2, keys[0], rank, 1.0)
        return SubnetOutput(mocov3_loss(s1, s2, labels, self.temperature), torch.cat([s1, s2]),
                            torch.cat([q1, q2]), positive_index=torch.cat([labels, labels]))
