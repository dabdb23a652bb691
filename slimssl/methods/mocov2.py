"""SlimCLR-MoCov2's method: MoCo v2 with a slimmable online encoder and a full-width target.

MoCo v2 (Chen et al. 2020, arXiv 2003.04297): query encoder + 2-layer MLP head (no BN), momentum
key encoder, a queue of K negatives, InfoNCE at temperature tau1. SlimCLR (Zhao et al., ICCV 2023,
Sec. 3.1 and 4.1) runs the query branch at every width, keeps ONE full-width key encoder and ONE
queue of full-width keys enqueued once per iteration; tau1 = 0.2, K = 65,536, dim 128, head
2048w -> 2048w -> 128 for ResNet-50 (docs/design.md sec. 3).

Shuffle-BN (MoCo, He et al. 2020, Sec. 3.3) keeps BatchNorm from leaking which key matches which
query: keys are computed on a batch shuffled across ranks. In one process the same effect comes
from split-BN: the batch is normalised in ``bn_splits`` groups and the key batch is shuffled
before grouping, so a query and its key never share BN statistics.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimssl.dist import concat_all_gather, get_rank, get_world_size, is_dist
from slimssl.methods.base import SSLMethod, SubnetOutput
from slimssl.methods.registry import register_method
from slimssl.methods.losses import MemoryQueue, info_nce_from_logits, moco_logits
from slimssl.models.encoder import SlimEncoder
from slimssl.models.heads import SlimMLP, head_kwargs
from slimssl.nn.spec import SubnetSpec
from slimssl.nn.switch import SlimmableModel


def split_forward(encoder: torch.nn.Module, x: torch.Tensor, splits: int) -> torch.Tensor:
    """Forward ``x`` in ``splits`` groups so each group is normalised with its own BN statistics."""
    if splits <= 1:
        return encoder(x)
    if x.shape[0] % splits:
        raise ValueError(f"batch size {x.shape[0]} is not divisible by bn_splits={splits}")
    return torch.cat([encoder(chunk) for chunk in x.chunk(splits)])


@torch.no_grad()
def shuffled_forward(encoder: torch.nn.Module, x: torch.Tensor, splits: int) -> torch.Tensor:
    """Keys on a shuffled batch (across ranks under DDP), returned in the original order."""
    if is_dist() and get_world_size() > 1:
        x_all = concat_all_gather(x)
        perm = torch.randperm(x_all.shape[0], device=x.device)
        torch.distributed.broadcast(perm, src=0)
        b, rank = x.shape[0], get_rank()
        local = perm[rank * b:(rank + 1) * b]
        keys_all = concat_all_gather(split_forward(encoder, x_all[local], splits))
        return keys_all[torch.argsort(perm)][rank * b:(rank + 1) * b]
    perm = torch.randperm(x.shape[0], device=x.device)
    return split_forward(encoder, x[perm], splits)[torch.argsort(perm)]


@register_method("mocov2")
class MoCoV2(SSLMethod):
    """MoCo v2 loss per sub-network against full-width keys and a shared queue.

    Args:
        backbone: slimmable backbone (pooled features at the active width).
        proj_hidden: hidden size of the MLP head at full width (default: backbone features).
        proj_dim: output size (128).
        queue_size: K (65,536 on ImageNet).
        temperature: tau1 (0.2).
        bn_splits: split-BN groups in one process (1 = off).

    Example:
        >>> method = MoCoV2(create("resnet18", widths=[1, .5], stem="cifar"), queue_size=256)
        >>> k = method.target_forward((x1, x2))
        >>> out = method.subnet_forward((x1, x2), SubnetSpec(0.5), k)
    """

    @classmethod
    def backbone_defaults(cls, backbone: SlimmableModel) -> dict:
        """MoCo v2's projector hidden layer is as wide as the backbone's features (2048 on a
        ResNet-50, Chen et al. 2020)."""
        return {"proj_hidden": backbone.full_features}

    def __init__(self, backbone: SlimmableModel, proj_hidden: int | None = None,
                 proj_dim: int = 128, queue_size: int = 65536, temperature: float = 0.2,
                 bn_splits: int = 1) -> None:
        feat = backbone.full_features
        projector = SlimMLP(feat, proj_hidden or feat, proj_dim, num_layers=2, bn_hidden=False,
                            bn_last=False, **head_kwargs(backbone))
        super().__init__(SlimEncoder(backbone, projector))
        self.queue = MemoryQueue(queue_size, proj_dim)
        self.temperature, self.bn_splits = temperature, bn_splits

    @torch.no_grad()
    def target_forward(self, views: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        with self.target.subnet(self.target.full_spec):
            keys = shuffled_forward(self.target, views[1], self.bn_splits)
        return F.normalize(keys, dim=1)

    def subnet_forward(self, views: tuple[torch.Tensor, torch.Tensor], spec: SubnetSpec,
                       keys: torch.Tensor) -> SubnetOutput:
        with self.online.subnet(spec):
            q = F.normalize(split_forward(self.online, views[0], self.bn_splits), dim=1)
        sim = moco_logits(q, keys, self.queue.queue, 1.0)
        return SubnetOutput(info_nce_from_logits(sim / self.temperature), sim, q)

    @torch.no_grad()
    def end_iteration(self, keys: torch.Tensor) -> None:
        self.queue.enqueue(concat_all_gather(keys))
