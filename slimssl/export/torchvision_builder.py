"""Rebuild an exported ResNet member from torchvision's own classes: no slimssl needed.

This file is quoted verbatim in the model card of ``slimssl export --format hub`` and must import
nothing but torch and torchvision. ``config`` is a member's plain-ResNet configuration: the
``config`` of ``arch.json`` (``--format safetensors``) or of a member in the hub folder's
``config.json``. The result is a ``torchvision.models.ResNet`` whose layers have the member's
channel counts (any width, ImageNet or CIFAR stem, any per-stage depth); its ``state_dict`` keys
are the exported ones, so ``model.load_state_dict(safetensors.torch.load_file(...))`` is strict.
"""

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet


def build_torchvision_resnet(config: dict) -> ResNet:
    """A torchvision ResNet with the channel counts of an exported slimssl member."""
    block = {"basic": BasicBlock, "bottleneck": Bottleneck}[config["block"]]
    with torch.device("meta"):  # the skeleton only: every layer below is replaced
        model = ResNet(block, config["stage_depths"])
    stem = config["stem_channels"]
    if config["stem"] == "cifar":  # 3x3 stride-1 conv and no max-pool (32x32 images)
        model.conv1 = nn.Conv2d(3, stem, 3, 1, 1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
    model.bn1 = nn.BatchNorm2d(stem)
    cin = stem
    stages = zip(config["stage_mid"], config["stage_out"], config["stage_depths"],
                 config["stage_downsample"])
    for i, (mid, out, depth, down) in enumerate(stages):
        blocks = []
        for j in range(depth):
            stride = 2 if i > 0 and j == 0 else 1
            shortcut = None
            if j == 0 and down:
                shortcut = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False),
                                         nn.BatchNorm2d(out))
            b = block(cin, mid, stride, shortcut)  # inner width mid, output mid * expansion
            if out != mid * block.expansion:  # a slimmed bottleneck rounds its output alone
                b.conv3 = nn.Conv2d(mid, out, 1, bias=False)
                b.bn3 = nn.BatchNorm2d(out)
            blocks.append(b)
            cin = out
        setattr(model, f"layer{i + 1}", nn.Sequential(*blocks))
    classes = config["num_classes"]
    model.fc = nn.Linear(cin, classes) if classes > 0 else nn.Identity()
    return model
