"""An exported ResNet as the backbone of torchvision's detectors (Faster/Mask R-CNN, RetinaNet).

Why a helper: torchvision's FPN builder reads channel counts from a full-width torchvision ResNet
(``inplanes``), while a sub-network's stage widths are its own (``arch_config["stage_out"]``).
This wraps the exported model in :class:`~torchvision.models.detection.backbone_utils.
BackboneWithFPN` with the right channels, freezing early stages and BatchNorm as detection
fine-tuning usually does (a few images per GPU give useless batch statistics).
"""

from __future__ import annotations

from typing import Sequence

from torch import nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from slimssl.export.resnet import PlainResNet

_STAGES_FROM_TOP = ("layer4", "layer3", "layer2", "layer1", "conv1")


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` (in place) by a ``FrozenBatchNorm2d`` holding
    the same statistics and affine parameters."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module


def resnet_fpn_backbone(plain: PlainResNet, returned_layers: Sequence[int] = (1, 2, 3, 4),
                        out_channels: int = 256, trainable_layers: int = 3,
                        frozen_bn: bool = True) -> BackboneWithFPN:
    """FPN backbone from an exported ResNet (takes ``plain`` over; copy it to keep the original).

    Args:
        returned_layers: stages (1-4) feeding the pyramid.
        trainable_layers: how many stages from the top train (0-5; 5 includes the stem).
        frozen_bn: use the exported statistics as constants (``FrozenBatchNorm2d``).
    """
    if not isinstance(plain, PlainResNet):
        raise TypeError(f"expected an exported ResNet (PlainResNet), got {type(plain).__name__}")
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
    if not returned_layers or any(k not in (1, 2, 3, 4) for k in returned_layers):
        raise ValueError(f"returned_layers must be stages among 1..4, got {list(returned_layers)}")
    if frozen_bn:
        freeze_batchnorm(plain)
    trainable = _STAGES_FROM_TOP[:trainable_layers] + (("bn1",) if trainable_layers == 5 else ())
    for name, param in plain.named_parameters():
        param.requires_grad_(name.split(".")[0] in trainable)
    stage_out = plain.arch_config["stage_out"]
    return BackboneWithFPN(plain, {f"layer{k}": str(i) for i, k in enumerate(returned_layers)},
                           [stage_out[k - 1] for k in returned_layers], out_channels,
                           extra_blocks=LastLevelMaxPool())
