"""Rebuild an exported member from torchvision's own classes: no slimssl needed.

This file is quoted verbatim in the model card of ``slimssl export --format hub`` and must import
nothing but torch and torchvision. ``build_torchvision(arch, config)`` takes a member's ``arch``
and ``config``: those of ``arch.json`` (``--format safetensors``) or of a member in the hub
folder's ``config.json``. The result is torchvision's ``ResNet`` / ``MobileNetV2`` /
``MobileNetV3`` built from torchvision's blocks with the member's channel counts (any width,
ImageNet or CIFAR stem, any per-stage depth); its ``state_dict`` keys are the exported ones, so
``model.load_state_dict(safetensors.torch.load_file(...))`` is strict. Where a slimmed layer
rounds its width on its own (a bottleneck's output, an SE squeeze, the last convs), the block's
layer is swapped for one of the member's size.
"""

from functools import partial

import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual as InvertedResidualV2
from torchvision.models.mobilenetv2 import MobileNetV2
from torchvision.models.mobilenetv3 import InvertedResidual as InvertedResidualV3
from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet
from torchvision.ops.misc import Conv2dNormActivation, SqueezeExcitation


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


def build_torchvision_mobilenet_v2(config: dict) -> MobileNetV2:
    """A torchvision MobileNetV2 with the channel counts of an exported slimssl member."""
    with torch.device("meta"):
        model = MobileNetV2()
    layers = [Conv2dNormActivation(3, config["stem_channels"], stride=config["stem_stride"],
                                   activation_layer=nn.ReLU6)]
    for b in config["blocks"]:  # [inp, hidden, out, stride, expand(, residual)]
        inp, hidden, out, stride, expand = b[:5]
        block = InvertedResidualV2(inp, out, stride, expand_ratio=hidden / inp if expand else 1)
        if len(b) > 5:  # the shortcut decided at full width
            block.use_res_connect = bool(b[5])
        layers.append(block)
    last_in, last = config["blocks"][-1][2], config["last_channels"]
    layers.append(Conv2dNormActivation(last_in, last, kernel_size=1, activation_layer=nn.ReLU6))
    model.features = nn.Sequential(*layers)
    classes = config["num_classes"]
    model.classifier = (nn.Sequential(nn.Dropout(config["dropout"]), nn.Linear(last, classes))
                        if classes > 0 else nn.Identity())
    return model


def build_torchvision_mobilenet_v3(config: dict) -> MobileNetV3:
    """A torchvision MobileNetV3 (Large or Small) with an exported member's channel counts."""
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
    # [inp, kernel, expanded, out, squeeze, activation, stride, expand(, residual)]
    settings = [InvertedResidualConfig(b[0], b[1], b[2], b[3], b[4] > 0, b[5], b[6], 1, 1.0)
                for b in config["blocks"]]
    with torch.device("meta"):
        model = MobileNetV3(settings, config["last_channels"])
    layers = [Conv2dNormActivation(3, config["stem_channels"], stride=config["stem_stride"],
                                   norm_layer=norm, activation_layer=nn.Hardswish)]
    for b, cnf in zip(config["blocks"], settings):
        block = InvertedResidualV3(cnf, norm)
        if b[4] > 0:  # the squeeze width of the member (a slimmed SE rounds it on its own)
            se = 1 + (cnf.expanded_channels != cnf.input_channels)
            block.block[se] = SqueezeExcitation(b[2], b[4], scale_activation=nn.Hardsigmoid)
        if len(b) > 8:
            block.use_res_connect = bool(b[8])
        layers.append(block)
    last_conv, last = config["last_conv_channels"], config["last_channels"]
    layers.append(Conv2dNormActivation(config["blocks"][-1][3], last_conv, kernel_size=1,
                                       norm_layer=norm, activation_layer=nn.Hardswish))
    model.features = nn.Sequential(*layers)
    classes = config["num_classes"]
    model.classifier = nn.Sequential(
        nn.Linear(last_conv, last), nn.Hardswish(inplace=True),
        nn.Dropout(config["dropout"], inplace=True),
        nn.Linear(last, classes) if classes > 0 else nn.Identity())
    return model


BUILDERS = {"resnet": build_torchvision_resnet, "mobilenet_v2": build_torchvision_mobilenet_v2,
            "mobilenet_v3": build_torchvision_mobilenet_v3}


def build_torchvision(arch: str, config: dict) -> nn.Module:
    """The torchvision model of an exported member (``arch``: resnet, mobilenet_v2/_v3)."""
    return BUILDERS[arch](config)
