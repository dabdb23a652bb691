"""Width- and depth-elastic ResNets (He et al. 2016) built from slimmable ops.

One set of full-size weights holds a whole family of sub-networks (Yu et al. 2019): width ``w``
uses the leading ``channels_at(c, w)`` channels of every layer (divisor 1, so ResNet-50 at 0.25
has a 16-channel stem; SlimCLR Table 1), and a depth-elastic stage keeps its first ``d`` blocks
(DSPNet, following Once-for-All). The stem's 3 RGB inputs and the classifier's outputs are never
sliced.

Module names follow torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer1.0.downsample.0``, ``fc``) so an exported full-width member's ``state_dict`` loads into
``torchvision.models.resnet50()`` unchanged (:mod:`slimssl.export.resnet`).
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from slimssl.models.registry import register_model
from slimssl.nn.norm import NormMode, SlimBatchNorm2d
from slimssl.nn.ops import SlimConv2d, SlimLinear
from slimssl.nn.spec import SubnetSpec, as_spec, channels_at
from slimssl.nn.switch import SlimmableModel

Stem = Literal["imagenet", "cifar"]
BlockType = Literal["basic", "bottleneck"]
STAGE_PLANES = (64, 128, 256, 512)


class _NormFactory:
    """Builds every BatchNorm of one model with the same mode and widths."""

    def __init__(self, mode: NormMode, widths: Sequence[float]) -> None:
        self.mode, self.widths = mode, tuple(widths)

    def __call__(self, channels: int) -> SlimBatchNorm2d:
        return SlimBatchNorm2d(channels, self.mode, self.widths)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> SlimConv2d:
    return SlimConv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)


class SlimBasicBlock(nn.Module):
    """Two 3x3 convolutions plus identity (ResNet-18/34)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None,
                 norm: _NormFactory) -> None:
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 3, stride)
        self.bn1 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = norm(planes)
        self.downsample = downsample

    def last_norm(self) -> SlimBatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SlimBottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, "ResNet v1.5" as torchvision), 1x1 expand x4."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: nn.Module | None,
                 norm: _NormFactory) -> None:
        super().__init__()
        self.conv1 = _conv(inplanes, planes, 1)
        self.bn1 = norm(planes)
        self.conv2 = _conv(planes, planes, 3, stride)
        self.bn2 = norm(planes)
        self.conv3 = _conv(planes, planes * self.expansion, 1)
        self.bn3 = norm(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def last_norm(self) -> SlimBatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


BLOCKS: dict[str, type[nn.Module]] = {"basic": SlimBasicBlock, "bottleneck": SlimBottleneck}


class SlimStage(nn.Sequential):
    """A depth-elastic stage: runs its first ``spec.depth[index]`` blocks.

    The first block holds the stride and the downsample projection, so every depth keeps the
    stage's resolution and channel change (DSPNet Sec. 3.2; Once-for-All keeps leading blocks).
    Subclassing ``nn.Sequential`` keeps torchvision's ``layerK.i.*`` parameter names.
    """

    def __init__(self, index: int, blocks: Sequence[nn.Module]) -> None:
        super().__init__(*blocks)
        self.index = index
        self.active_depth = len(blocks)

    def apply_spec(self, spec: SubnetSpec) -> None:
        """Called by ``set_subnet``; ``depth=None`` means every block."""
        self.active_depth = len(self) if spec.depth is None else int(spec.depth[self.index])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.active_depth):
            x = self[i](x)
        return x

    def extra_repr(self) -> str:
        return f"index={self.index}, active_depth={self.active_depth}"


class SlimResNet(SlimmableModel):
    """A slimmable ResNet: one set of weights, sub-networks at several widths and depths.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101).
        layers: full block count per stage, e.g. ``(3, 4, 6, 3)``.
        widths / norm / width_range / depth_choices: see :class:`SlimmableModel`.
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max-pool) or ``"cifar"`` (3x3/1 conv, no pool).
        num_classes: classifier outputs (never sliced); 0 means no classifier (SSL backbone).
        zero_init_residual: start every residual branch's last BN at gamma = 0 (Goyal et al.).

    Example:
        >>> m = SlimResNet("basic", (2, 2, 2, 2), widths=(1.0, 0.5), stem="cifar")
        >>> with m.subnet(0.5):
        ...     m(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 256])
    """

    feature_slim = True  # pooled features follow the width (heads slice their input)
    feature_divisor = 1

    def __init__(self, block: BlockType, layers: Sequence[int], widths: Sequence[float] = (1.0,),
                 norm: NormMode = "switchable", stem: Stem = "imagenet", num_classes: int = 0,
                 width_range: tuple[float, float] | None = None,
                 depth_choices: Sequence[Sequence[int]] | None = None,
                 zero_init_residual: bool = False, base_width: int = 64) -> None:
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {sorted(BLOCKS)}, got {block!r}")
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
        if len(layers) != len(STAGE_PLANES):
            raise ValueError(f"a ResNet has {len(STAGE_PLANES)} stages, got layers={layers}")
        super().__init__(widths, norm, width_range, tuple(int(n) for n in layers), depth_choices)
        self.block_type, self.stem, self.num_classes = block, stem, int(num_classes)
        norm_factory = _NormFactory(norm, self.widths)
        block_cls = BLOCKS[block]
        self.expansion: int = block_cls.expansion

        if stem == "imagenet":
            self.conv1 = SlimConv2d(3, base_width, 7, stride=2, padding=3, bias=False, slim_in=False)
            self.maxpool: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.conv1 = SlimConv2d(3, base_width, 3, stride=1, padding=1, bias=False, slim_in=False)
            self.maxpool = nn.Identity()
        self.bn1 = norm_factory(base_width)
        self.relu = nn.ReLU(inplace=True)

        inplanes = base_width
        stage_planes = [base_width * 2 ** i for i in range(len(STAGE_PLANES))]
        for index, (planes, count) in enumerate(zip(stage_planes, self.stage_depths)):
            stride = 1 if index == 0 else 2
            out = planes * self.expansion
            downsample = None
            if stride != 1 or inplanes != out:
                downsample = nn.Sequential(_conv(inplanes, out, 1, stride), norm_factory(out))
            blocks = [block_cls(inplanes, planes, stride, downsample, norm_factory)]
            blocks += [block_cls(out, planes, 1, None, norm_factory) for _ in range(count - 1)]
            setattr(self, f"layer{index + 1}", SlimStage(index, blocks))
            inplanes = out

        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.full_features = inplanes
        self.fc: nn.Module = (SlimLinear(inplanes, self.num_classes, slim_out=False)
                              if self.num_classes > 0 else nn.Identity())
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        """Kaiming-normal (fan_out) convs and unit/zero BN affine, as torchvision does."""
        for m in self.modules():
            if isinstance(m, SlimConv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_residual:
            for stage in self.stages:
                for blk in stage:
                    _zero_gamma(blk.last_norm())

    @property
    def stages(self) -> list[SlimStage]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def feature_dim(self, spec: SubnetSpec | float | None = None) -> int:
        """Pooled feature size of member ``spec`` (default: the active member)."""
        width = self.active_spec.width if spec is None else as_spec(spec).width
        return channels_at(self.full_features, width)

    @property
    def num_features(self) -> int:
        """Pooled feature size at the active width (2048w for ResNet-50)."""
        return self.feature_dim()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image -> last feature map (N, num_features, H/32, W/32) for the ImageNet stem."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map -> pooled features (``pre_logits`` or no classifier) or logits."""
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits or self.num_classes == 0:
            return x
        return self.fc(x)

    def forward(self, x: torch.Tensor, spec: SubnetSpec | float | None = None) -> torch.Tensor:
        """Run the active member, or ``spec`` if given (switched for this call only)."""
        if spec is not None:
            with self.subnet(spec):
                return self.forward_head(self.forward_features(x))
        return self.forward_head(self.forward_features(x))


def _zero_gamma(norm: SlimBatchNorm2d) -> None:
    with torch.no_grad():
        if norm.mode == "switchable":
            for bn in norm.bn:
                nn.init.zeros_(bn.weight)
        elif norm.weight is not None:
            nn.init.zeros_(norm.weight)


def _factory(name: str, block: BlockType, layers: tuple[int, int, int, int], base: int = 64):
    def build(widths: Sequence[float] = (1.0,), norm: NormMode = "switchable",
              stem: Stem = "imagenet", num_classes: int = 0,
              width_range: tuple[float, float] | None = None,
              depth_choices: Sequence[Sequence[int]] | None = None,
              zero_init_residual: bool = False, base_width: int = base) -> SlimResNet:
        return SlimResNet(block, layers, widths=widths, norm=norm, stem=stem,
                          num_classes=num_classes, width_range=width_range,
                          depth_choices=depth_choices, zero_init_residual=zero_init_residual,
                          base_width=base_width)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (f"Slimmable {name} ({block} blocks, stages {layers}; He et al. 2016). "
                     "See :class:`SlimResNet` for the arguments.")
    return register_model(name)(build)


resnet18 = _factory("resnet18", "basic", (2, 2, 2, 2))
resnet34 = _factory("resnet34", "basic", (3, 4, 6, 3))
resnet50 = _factory("resnet50", "bottleneck", (3, 4, 6, 3))
resnet101 = _factory("resnet101", "bottleneck", (3, 4, 23, 3))
# A small CIFAR-scale ResNet (one basic block per stage, stem width 32) for laptop-CPU runs and
# tests: the default job pre-trains it on the embedded digits dataset in about a minute.
resnet10_narrow = _factory("resnet10_narrow", "basic", (1, 1, 1, 1), base=32)
