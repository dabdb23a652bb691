"""Plain MobileNetV2/V3 twins and the extractors that fill them from a slimmable family member.

The plain models use only standard torch layers and torchvision's module names, so a full-width
export loads into ``torchvision.models.mobilenet_v2()`` / ``mobilenet_v3_large()`` /
``mobilenet_v3_small()`` (strict) and any export is TorchScript-able. Their architecture is a JSON-serialisable config listing every
block's channel counts at the exported width (``arch_config``), so :func:`slimssl.export.io.
load_subnet` rebuilds them without any slimmable code.

Each block records whether it has a residual connection. The slimmable block decides that from
its *full* channel counts (``stride 1 and inp == out`` at width 1), and a member keeps that
decision at every width, even where rounding to multiples of 8 makes a narrow block's input and
output equally wide (V2 at width 0.25: the first block is 8 -> 8 without a shortcut). Configs
written before the flag existed fall back to torchvision's rule on the exported counts.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from slimssl.export.extract import register_extractor, register_plain
from slimssl.models.mobilenet import (SlimInvertedResidualV2, SlimInvertedResidualV3,
                                      SlimMobileNetV2, SlimMobileNetV3, SlimSqueezeExcite)
from slimssl.nn.norm import SlimLayerNorm, _SlimBatchNorm
from slimssl.nn.ops import SlimConv2d, SlimLinear
from slimssl.nn.spec import SubnetSpec

__all__ = ["PlainMobileNetV2", "PlainMobileNetV3", "load_exported_layers"]

_SLIM_LAYERS = (SlimConv2d, SlimLinear, _SlimBatchNorm, SlimLayerNorm)


def load_exported_layers(slim: nn.Module, plain: nn.Module) -> None:
    """Copy every slimmable layer's ``.export()`` into the plain layer of the same name (strict).

    Shapes are checked by ``load_state_dict``, so a plain config that disagrees with the active
    slices fails loudly instead of exporting a wrong model.
    """
    for name, module in slim.named_modules():
        if isinstance(module, _SLIM_LAYERS):
            plain.get_submodule(name).load_state_dict(module.export().state_dict(), strict=True)


def _residual(flag: bool | None, stride: int, inp: int, out: int) -> bool:
    """The recorded shortcut decision, or torchvision's rule for configs without one."""
    if flag is None:
        return stride == 1 and inp == out
    if flag and (stride != 1 or inp != out):
        raise ValueError(f"a residual block needs stride 1 and equal channels, got stride "
                         f"{stride}, {inp} -> {out}")
    return flag


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int, act: nn.Module | None,
             eps: float, momentum: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=eps, momentum=momentum)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


class PlainInvertedResidualV2(nn.Module):
    """MobileNetV2 block with explicit channels (torchvision layout ``conv.K``)."""

    def __init__(self, inp: int, hidden: int, out: int, stride: int, expand: bool,
                 residual: bool | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expand:
            layers.append(_conv_bn(inp, hidden, 1, 1, 1, nn.ReLU6(inplace=True), 1e-5, 0.1))
        layers.append(_conv_bn(hidden, hidden, 3, stride, hidden, nn.ReLU6(inplace=True),
                               1e-5, 0.1))
        layers += [nn.Conv2d(hidden, out, 1, bias=False), nn.BatchNorm2d(out)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect: bool = _residual(residual, stride, inp, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


@register_plain("mobilenet_v2")
class PlainMobileNetV2(nn.Module):
    """A MobileNetV2 (Sandler et al. 2018) with per-block channel counts.

    Args:
        stem_channels / stem_stride: the first 3x3 conv.
        blocks: ``[inp, hidden, out, stride, expand(, residual)]`` per inverted residual
            (``expand`` 0/1: whether the block has a 1x1 expansion conv; ``residual`` 0/1:
            whether it adds its input, see the module docstring).
        last_channels: the last 1x1 conv (1280).
        num_classes: 0 for a feature extractor (pooled ``last_channels`` features).
    """

    arch_name = "mobilenet_v2"

    def __init__(self, stem_channels: int, stem_stride: int, blocks: Sequence[Sequence[int]],
                 last_channels: int, num_classes: int = 0, dropout: float = 0.2) -> None:
        super().__init__()
        self.arch_config = {
            "stem_channels": stem_channels, "stem_stride": stem_stride,
            "blocks": [[int(v) for v in b] for b in blocks], "last_channels": last_channels,
            "num_classes": num_classes, "dropout": dropout}
        layers: list[nn.Module] = [_conv_bn(3, stem_channels, 3, stem_stride, 1,
                                            nn.ReLU6(inplace=True), 1e-5, 0.1)]
        layers += [PlainInvertedResidualV2(b[0], b[1], b[2], b[3], bool(b[4]),
                                           bool(b[5]) if len(b) > 5 else None) for b in blocks]
        layers.append(_conv_bn(blocks[-1][2], last_channels, 1, 1, 1, nn.ReLU6(inplace=True),
                               1e-5, 0.1))
        self.features = nn.Sequential(*layers)
        self.num_classes, self.num_features = num_classes, last_channels
        self.classifier: nn.Module = (
            nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channels, num_classes))
            if num_classes > 0 else nn.Identity())

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PlainMobileNetV2":
        return cls(**config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        if pre_logits:
            return x
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class PlainSqueezeExcite(nn.Module):
    """SE with torchvision's names (``fc1``/``fc2``): ReLU, hard-sigmoid gate."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.activation = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


def _v3_act(name: str) -> nn.Module:
    if name not in ("RE", "HS"):
        raise ValueError(f"MobileNetV3 activation must be 'RE' or 'HS', got {name!r}")
    return nn.Hardswish(inplace=True) if name == "HS" else nn.ReLU(inplace=True)


class PlainInvertedResidualV3(nn.Module):
    """MobileNetV3 bottleneck with explicit channels (torchvision layout ``block.K``)."""

    def __init__(self, inp: int, kernel: int, expanded: int, out: int, squeeze: int,
                 activation: str, stride: int, expand: bool,
                 residual: bool | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if expand:
            layers.append(_conv_bn(inp, expanded, 1, 1, 1, _v3_act(activation), 1e-3, 0.01))
        layers.append(_conv_bn(expanded, expanded, kernel, stride, expanded, _v3_act(activation),
                               1e-3, 0.01))
        if squeeze > 0:
            layers.append(PlainSqueezeExcite(expanded, squeeze))
        layers.append(_conv_bn(expanded, out, 1, 1, 1, None, 1e-3, 0.01))
        self.block = nn.Sequential(*layers)
        self.use_res_connect: bool = _residual(residual, stride, inp, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        if self.use_res_connect:
            return y + x
        return y


@register_plain("mobilenet_v3")
class PlainMobileNetV3(nn.Module):
    """A MobileNetV3 (Howard et al. 2019) with per-block channel counts.

    Args:
        blocks: ``[inp, kernel, expanded, out, squeeze, activation, stride, expand(, residual)]``
            per bottleneck (``squeeze`` 0: no SE; ``activation`` "RE" or "HS"; ``residual`` as
            for V2).
        last_conv_channels: the last 1x1 conv (960 at full width).
        last_channels: the classifier's hidden linear (1280 at full width).
    """

    arch_name = "mobilenet_v3"

    def __init__(self, stem_channels: int, stem_stride: int, blocks: Sequence[Sequence[Any]],
                 last_conv_channels: int, last_channels: int, num_classes: int = 0,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.arch_config = {
            "stem_channels": stem_channels, "stem_stride": stem_stride,
            "blocks": [list(b) for b in blocks], "last_conv_channels": last_conv_channels,
            "last_channels": last_channels, "num_classes": num_classes, "dropout": dropout}
        layers: list[nn.Module] = [_conv_bn(3, stem_channels, 3, stem_stride, 1,
                                            nn.Hardswish(inplace=True), 1e-3, 0.01)]
        layers += [PlainInvertedResidualV3(int(b[0]), int(b[1]), int(b[2]), int(b[3]),
                                           int(b[4]), str(b[5]), int(b[6]), bool(b[7]),
                                           bool(b[8]) if len(b) > 8 else None)
                   for b in blocks]
        layers.append(_conv_bn(int(blocks[-1][3]), last_conv_channels, 1, 1, 1,
                               nn.Hardswish(inplace=True), 1e-3, 0.01))
        self.features = nn.Sequential(*layers)
        self.num_classes, self.num_features = num_classes, last_channels
        head: list[nn.Module] = [nn.Linear(last_conv_channels, last_channels),
                                 nn.Hardswish(inplace=True), nn.Dropout(dropout, inplace=True)]
        head.append(nn.Linear(last_channels, num_classes) if num_classes > 0 else nn.Identity())
        self.classifier = nn.Sequential(*head)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PlainMobileNetV3":
        return cls(**config)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        x = self.classifier[2](self.classifier[1](self.classifier[0](x)))
        if pre_logits:
            return x
        return self.classifier[3](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _dw(seq: nn.Sequential) -> SlimConv2d:
    """The depthwise conv of a block (the conv of the first Conv-BN-act with groups > 1)."""
    for unit in seq:
        if isinstance(unit, nn.Sequential) and isinstance(unit[0], SlimConv2d) \
                and unit[0].depthwise:
            return unit[0]
    raise RuntimeError("block has no depthwise conv")


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _stem_out(model: SlimMobileNetV2 | SlimMobileNetV3) -> tuple[int, int]:
    conv = model.features[0][0]
    return conv.active_out, int(conv.stride[0])


@register_extractor(SlimMobileNetV2)
def _extract_v2(model: SlimMobileNetV2, spec: SubnetSpec) -> PlainMobileNetV2:
    blocks = []
    for blk in model.features[1:-1]:
        assert isinstance(blk, SlimInvertedResidualV2)
        dw = _dw(blk.conv)
        project = blk.conv[-2]
        blocks.append([blk.conv[0][0].active_in, dw.active_out, project.active_out,
                       int(dw.stride[0]), int(blk.expands), int(blk.use_res_connect)])
    stem, stride = _stem_out(model)
    plain = PlainMobileNetV2(stem, stride, blocks, model.features[-1][0].active_out,
                             model.num_classes, model.dropout)
    load_exported_layers(model, plain)
    return plain.to(_device(model))


@register_extractor(SlimMobileNetV3)
def _extract_v3(model: SlimMobileNetV3, spec: SubnetSpec) -> PlainMobileNetV3:
    blocks = []
    for blk in model.features[1:-1]:
        assert isinstance(blk, SlimInvertedResidualV3)
        dw = _dw(blk.block)
        se = [m for m in blk.block if isinstance(m, SlimSqueezeExcite)]
        inp = blk.block[0][0].active_in
        blocks.append([inp, int(dw.kernel_size[0]), dw.active_out, blk.block[-1][0].active_out,
                       se[0].fc1.active_out if se else 0, blk.cfg.activation,
                       int(dw.stride[0]), int(blk.expands), int(blk.use_res_connect)])
    stem, stride = _stem_out(model)
    plain = PlainMobileNetV3(stem, stride, blocks, model.features[-1][0].active_out,
                             model.classifier[0].active_out, model.num_classes, model.dropout)
    load_exported_layers(model, plain)
    return plain.to(_device(model))
