"""Slimmable MobileNetV2 (Sandler et al. 2018) and MobileNetV3-Large/-Small (Howard et al. 2019).

Every layer keeps its full-size weight and width ``w`` uses the leading ``channels_at(c, w, 8)``
channels (docs/design.md sec. 2: channel counts stay divisible by 8, the MobileNet rule), so one
pre-training run yields weight-sharing sub-networks at several widths.

Width rule, per layer: a layer with ``c`` channels in the full network has ``channels_at(c, w, 8)``
at width ``w``. This is what makes the family weight-sharing (every layer follows the same rule),
and it coincides with torchvision's ``width_mult`` networks for the stem, block outputs and (V3)
the 960/1280 head. It can differ from ``width_mult`` for a few *hidden* (expanded) and SE squeeze
layers, where torchvision rounds the already-rounded input once more (V2: ``round(make_div(c w) *
t)``; V3 SE: ``make_div(exp_w // 4)``) while a slimmable layer rounds its own full count
(``make_div(c t w)``); at ``w = 1`` both are exactly torchvision's network.

Head sizes follow torchvision:

* V2: the last 1x1 conv keeps ``make_div(1280 * max(1, w))`` = 1280 channels at every width
  ``w <= 1`` (torchvision's ``width_mult`` rule; Sandler et al. Sec. 5.1 keep the last layer wide
  for small multipliers), so its output (and :meth:`feature_dim`) is 1280 for every member.
* V3-Large: the last conv has ``6 * 160w`` (960 at full width) channels and the classifier's first
  linear 960 -> 1280 follows the width (``make_div(1280 w, 8)``, torchvision's ``last_channel``);
  the pre-logits feature is that 1280w vector (as in timm's ``forward_head(pre_logits=True)``).
* V3-Small: the same head with ``6 * 96w`` (576) last-conv channels and a 576 -> 1024w linear
  (Howard et al. Table 2; torchvision's ``last_channel = 1024``).

Module names follow torchvision (``features.N.conv...`` / ``features.N.block...`` /
``classifier.K``) so a full-width export loads into ``torchvision.models.mobilenet_v2()`` /
``mobilenet_v3_large()`` / ``mobilenet_v3_small()`` with ``strict=True``.

``stem="cifar"`` sets the stem conv's stride to 1 (32x32 inputs end at 2x2 instead of 1x1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
from torch import nn

from slimssl.models.registry import register_model
from slimssl.nn.norm import NormMode, SlimBatchNorm2d
from slimssl.nn.ops import SlimConv2d, SlimLinear
from slimssl.nn.spec import SubnetSpec, as_spec, channels_at, make_divisible
from slimssl.nn.switch import SlimmableModel

Stem = Literal["imagenet", "cifar"]
DIVISOR = 8

__all__ = [
    "MBV2_SETTING", "MBV3_LARGE_SETTING", "MBV3_SMALL_SETTING", "SlimInvertedResidualV2",
    "SlimInvertedResidualV3", "SlimMobileNetV2", "SlimMobileNetV3", "SlimSqueezeExcite", "V3Block",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
]

# (expansion t, output channels c, repeats n, first stride s): Sandler et al. 2018, Table 2.
MBV2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
    (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


@dataclass(frozen=True)
class V3Block:
    """One MobileNetV3 bottleneck (Howard et al. 2019, Table 1), full-width channel counts."""

    inp: int
    kernel: int
    expanded: int
    out: int
    se: bool
    activation: Literal["RE", "HS"]
    stride: int


MBV3_LARGE_SETTING: tuple[V3Block, ...] = tuple(V3Block(*row) for row in (
    (16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1), (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
))

# Howard et al. 2019, Table 2 (MobileNetV3-Small), as torchvision's ``mobilenet_v3_small`` builds
# it (no dilation, no reduced tail): 11 bottlenecks, last conv 576, classifier hidden 1024.
MBV3_SMALL_SETTING: tuple[V3Block, ...] = tuple(V3Block(*row) for row in (
    (16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2),
    (24, 3, 88, 24, False, "RE", 1), (24, 5, 96, 40, True, "HS", 2),
    (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
    (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1),
    (48, 5, 288, 96, True, "HS", 2), (96, 5, 576, 96, True, "HS", 1),
    (96, 5, 576, 96, True, "HS", 1),
))
MBV3_SMALL_LAST_CHANNEL = 1024

Activation = Callable[[], nn.Module]


def _make_divisible8(value: float) -> int:
    return make_divisible(value, DIVISOR)


class _NormFactory:
    """Builds the model's BatchNorms: one mode, one width list, MobileNet divisor."""

    def __init__(self, mode: NormMode, widths: Sequence[float], eps: float,
                 momentum: float) -> None:
        self.mode, self.widths, self.eps, self.momentum = mode, tuple(widths), eps, momentum

    def __call__(self, channels: int, slim: bool = True) -> SlimBatchNorm2d:
        return SlimBatchNorm2d(channels, self.mode, self.widths, slim=slim, divisor=DIVISOR,
                               eps=self.eps, momentum=self.momentum)


def _stem_stride(stem: str) -> int:
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"stem must be 'imagenet' (stride-2 stem) or 'cifar' (stride 1), "
                         f"got {stem!r}")
    return 2 if stem == "imagenet" else 1


def conv_norm_act(cin: int, cout: int, kernel: int, stride: int, norm: _NormFactory,
                  act: Activation | None, *, depthwise: bool = False, slim_in: bool = True,
                  slim_out: bool = True) -> nn.Sequential:
    """``Sequential(conv, bn[, act])``: torchvision's Conv2dNormActivation layout."""
    conv = SlimConv2d(cin, cout, kernel, stride, (kernel - 1) // 2,
                      groups=cout if depthwise else 1, bias=False, slim_in=slim_in,
                      slim_out=slim_out, divisor=DIVISOR)
    layers: list[nn.Module] = [conv, norm(cout, slim=slim_out)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class SlimInvertedResidualV2(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand (if t != 1), 3x3 depthwise, 1x1 linear project.

    Sandler et al. 2018, Table 1; ReLU6 after expand and depthwise, none after the projection.
    """

    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int,
                 norm: _NormFactory) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = int(round(inp * expand_ratio))
        relu6: Activation = lambda: nn.ReLU6(inplace=True)  # noqa: E731
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_norm_act(inp, hidden, 1, 1, norm, relu6))
        layers.append(conv_norm_act(hidden, hidden, 3, stride, norm, relu6, depthwise=True))
        layers += [SlimConv2d(hidden, out, 1, bias=False, divisor=DIVISOR), norm(out)]
        self.conv = nn.Sequential(*layers)
        self.stride, self.expands = stride, expand_ratio != 1
        # Input and output follow the same width rule, so equal full counts stay equal.
        self.use_res_connect = stride == 1 and inp == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class SlimSqueezeExcite(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) as MobileNetV3 uses it: ReLU, hard-sigmoid gate.

    Both 1x1 convs are slimmable, so the squeeze width follows the model width (divisible by 8).
    """

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = SlimConv2d(channels, squeeze, 1, bias=True, divisor=DIVISOR)
        self.activation = nn.ReLU(inplace=True)
        self.fc2 = SlimConv2d(squeeze, channels, 1, bias=True, divisor=DIVISOR)
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return x * self.scale_activation(scale)


class SlimInvertedResidualV3(nn.Module):
    """MobileNetV3 bottleneck: [1x1 expand], kxk depthwise, [SE], 1x1 linear projection.

    Howard et al. 2019, Sec. 5 and Table 1; activation ReLU ("RE") or hard-swish ("HS").
    """

    def __init__(self, cfg: V3Block, norm: _NormFactory) -> None:
        super().__init__()
        act: Activation = ((lambda: nn.Hardswish(inplace=True)) if cfg.activation == "HS"
                           else (lambda: nn.ReLU(inplace=True)))
        layers: list[nn.Module] = []
        self.expands = cfg.expanded != cfg.inp
        if self.expands:
            layers.append(conv_norm_act(cfg.inp, cfg.expanded, 1, 1, norm, act))
        layers.append(conv_norm_act(cfg.expanded, cfg.expanded, cfg.kernel, cfg.stride, norm, act,
                                    depthwise=True))
        if cfg.se:
            layers.append(SlimSqueezeExcite(cfg.expanded, _make_divisible8(cfg.expanded // 4)))
        layers.append(conv_norm_act(cfg.expanded, cfg.out, 1, 1, norm, None))
        self.block = nn.Sequential(*layers)
        self.cfg = cfg
        self.use_res_connect = cfg.stride == 1 and cfg.inp == cfg.out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res_connect else y


class _SlimMobileNet(SlimmableModel):
    """Shared plumbing: norm factory, timm-style forward split, ``feature_dim``."""

    #: feature size at full width and whether it follows the width (heads use these to size and
    #: slice their input: ``SlimLinear(feature_dim(1.0), ..., slim_in=feature_slim,
    #: in_divisor=feature_divisor)``).
    full_features: int
    feature_slim: bool
    feature_divisor: int = DIVISOR

    def __init__(self, widths: Sequence[float], norm: NormMode,
                 width_range: tuple[float, float] | None, num_classes: int) -> None:
        super().__init__(widths, norm, width_range)
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0: no classifier), got {num_classes}")
        self.num_classes = num_classes
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def feature_dim(self, spec: SubnetSpec | float | None = None) -> int:
        """Pre-logits feature size of member ``spec`` (default: the active member)."""
        width = self.active_spec.width if spec is None else as_spec(spec).width
        return channels_at(self.full_features, width, DIVISOR) if self.feature_slim \
            else self.full_features

    @property
    def num_features(self) -> int:
        """Pre-logits feature size at the active width."""
        return self.feature_dim()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> last feature map (N, C, H/32, W/32 with the ImageNet stem)."""
        return self.features(x)

    def _init_weights(self) -> None:
        # torchvision's initialisation (a fact, for comparable baselines).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, spec: SubnetSpec | float | None = None) -> torch.Tensor:
        """Run the active member, or ``spec`` if given (switched for this call only)."""
        if spec is not None:
            with self.subnet(spec):
                return self.forward_head(self.forward_features(x))
        return self.forward_head(self.forward_features(x))


class SlimMobileNetV2(_SlimMobileNet):
    """Slimmable MobileNetV2 (Sandler et al. 2018).

    Args:
        widths: trained widths (switchable BN keeps one BatchNorm per width).
        norm: ``switchable`` or ``universal`` (see :mod:`slimssl.nn.norm`).
        stem: ``imagenet`` (stride-2 stem) or ``cifar`` (stride-1 stem).
        num_classes: classifier outputs; 0 for a backbone returning pooled 1280-d features.
        width_range: (w_min, w_max) for universal models.
        dropout: dropout before the classifier (torchvision: 0.2).
    """

    full_features = 1280
    feature_slim = False

    def __init__(self, widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
                 stem: Stem = "imagenet", num_classes: int = 0,
                 width_range: tuple[float, float] | None = None, dropout: float = 0.2) -> None:
        super().__init__(widths, norm, width_range, num_classes)
        self.stem, self.dropout = stem, dropout
        bn = _NormFactory(norm, self.widths, eps=1e-5, momentum=0.1)
        relu6: Activation = lambda: nn.ReLU6(inplace=True)  # noqa: E731
        layers: list[nn.Module] = [conv_norm_act(3, 32, 3, _stem_stride(stem), bn, relu6,
                                                 slim_in=False)]
        inp = 32
        for t, c, n, s in MBV2_SETTING:
            for i in range(n):
                layers.append(SlimInvertedResidualV2(inp, c, s if i == 0 else 1, t, bn))
                inp = c
        # Last conv: 1280 channels at every width <= 1 (torchvision: 1280 * max(1, w)).
        layers.append(conv_norm_act(inp, self.full_features, 1, 1, bn, relu6,
                                    slim_out=False))
        self.features = nn.Sequential(*layers)
        self.classifier: nn.Module = (
            nn.Sequential(nn.Dropout(dropout),
                          SlimLinear(self.full_features, num_classes, slim_in=False,
                                     slim_out=False))
            if num_classes > 0 else nn.Identity())
        self._init_weights()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> pooled 1280-d features (``pre_logits`` or no classifier) or logits."""
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits or self.num_classes == 0:
            return x
        return self.classifier(x)


class SlimMobileNetV3(_SlimMobileNet):
    """Slimmable MobileNetV3 (Howard et al. 2019); ``setting`` defaults to the Large model
    (``MBV3_SMALL_SETTING`` with ``last_channel=1024`` is the Small one).

    BatchNorm uses eps 1e-3 and momentum 0.01 (torchvision's values). The classifier is
    ``Linear(960w, 1280w) -> hard-swish -> dropout -> Linear(1280w, classes)`` (Small: 576w and
    1024w); with ``num_classes=0`` the last linear is absent and the backbone returns the
    ``last_channel``-w vector.
    """

    full_features = 1280
    feature_slim = True

    def __init__(self, widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
                 stem: Stem = "imagenet", num_classes: int = 0,
                 width_range: tuple[float, float] | None = None, dropout: float = 0.2,
                 setting: Sequence[V3Block] = MBV3_LARGE_SETTING,
                 last_channel: int = 1280) -> None:
        super().__init__(widths, norm, width_range, num_classes)
        self.stem, self.full_features, self.dropout = stem, last_channel, dropout
        bn = _NormFactory(norm, self.widths, eps=1e-3, momentum=0.01)
        hswish: Activation = lambda: nn.Hardswish(inplace=True)  # noqa: E731
        first = setting[0].inp
        layers: list[nn.Module] = [conv_norm_act(3, first, 3, _stem_stride(stem), bn,
                                                 hswish, slim_in=False)]
        layers += [SlimInvertedResidualV3(cfg, bn) for cfg in setting]
        last_in = setting[-1].out
        self.last_conv_channels = 6 * last_in
        layers.append(conv_norm_act(last_in, self.last_conv_channels, 1, 1, bn, hswish))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [
            SlimLinear(self.last_conv_channels, last_channel, divisor=DIVISOR),
            nn.Hardswish(inplace=True), nn.Dropout(dropout, inplace=True)]
        if num_classes > 0:
            head.append(SlimLinear(last_channel, num_classes, slim_out=False, divisor=DIVISOR))
        self.classifier = nn.Sequential(*head)
        self._init_weights()

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> 1280w pre-logits (``pre_logits`` or no classifier) or logits."""
        x = torch.flatten(self.avgpool(x), 1)
        x = self.classifier[2](self.classifier[1](self.classifier[0](x)))
        if pre_logits or self.num_classes == 0:
            return x
        return self.classifier[3](x)


@register_model("mobilenet_v2")
def mobilenet_v2(widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
                 stem: Stem = "imagenet", num_classes: int = 0,
                 width_range: tuple[float, float] | None = None,
                 dropout: float = 0.2) -> SlimMobileNetV2:
    """Slimmable MobileNetV2 (3.5M params with a 1000-class classifier at width 1.0)."""
    return SlimMobileNetV2(widths, norm, stem, num_classes, width_range, dropout)


@register_model("mobilenet_v3_large")
def mobilenet_v3_large(widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
                       stem: Stem = "imagenet", num_classes: int = 0,
                       width_range: tuple[float, float] | None = None,
                       dropout: float = 0.2) -> SlimMobileNetV3:
    """Slimmable MobileNetV3-Large (5.5M params with a 1000-class classifier at width 1.0)."""
    return SlimMobileNetV3(widths, norm, stem, num_classes, width_range, dropout)


@register_model("mobilenet_v3_small")
def mobilenet_v3_small(widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
                       stem: Stem = "imagenet", num_classes: int = 0,
                       width_range: tuple[float, float] | None = None,
                       dropout: float = 0.2) -> SlimMobileNetV3:
    """Slimmable MobileNetV3-Small (2.5M params with a 1000-class classifier at width 1.0)."""
    return SlimMobileNetV3(widths, norm, stem, num_classes, width_range, dropout,
                           MBV3_SMALL_SETTING, MBV3_SMALL_LAST_CHANNEL)
