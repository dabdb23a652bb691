"""Slimmable convolution and linear layers: one full-size weight, width ``w`` uses its leading slice.

Slimmable networks (Yu et al. 2019) and every paper slimssl implements (SlimCLR, DSPNet, US3L)
share the leading channels between widths, so theta_0.25 is a subset of theta_0.5 and so on
(docs/design.md sec. 2). An op knows nothing of the architecture: it receives the active width from
:func:`slimssl.nn.switch.set_subnet` and derives its active in/out channels from it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init

from slimssl.nn.spec import SubnetSpec, channels_at


class WidthSwitched:
    """Mixin for layers whose active slice follows a width multiplier held on the instance."""

    width: float = 1.0

    def apply_spec(self, spec: SubnetSpec) -> None:
        """Called by :func:`slimssl.nn.switch.set_subnet`; never reads module-level state."""
        self.width = spec.width

    def _active(self, full: int, slim: bool, divisor: int) -> int:
        return channels_at(full, self.width, divisor) if slim else full


def _check_input(layer: nn.Module, got: int, expected: int) -> None:
    if got != expected:
        raise RuntimeError(
            f"{type(layer).__name__} at width {layer.width:g} expects {expected} input channels "
            f"but got {got}: the previous layer was switched to a different width "
            "(switch whole models with model.subnet(...), not single layers)"
        )


class SlimConv2d(nn.Conv2d, WidthSwitched):
    """``nn.Conv2d`` whose input/output channels shrink with the width.

    Args:
        slim_in / slim_out: whether the input / output channels follow the width (the stem's 3
            RGB inputs do not).
        divisor: channel rounding (1 for ResNets, 8 for MobileNets).
        ``groups == in_channels == out_channels`` (depthwise) keeps ``groups`` equal to the active
        channel count at every width.

    Example:
        >>> conv = SlimConv2d(3, 64, 3, padding=1, slim_in=False)
        >>> conv.width = 0.5
        >>> conv(torch.randn(2, 3, 8, 8)).shape
        torch.Size([2, 32, 8, 8])
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = False, *, slim_in: bool = True,
                 slim_out: bool = True, divisor: int = 1) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias)
        self.depthwise = groups > 1 and groups == in_channels == out_channels
        if groups > 1 and not self.depthwise:
            raise ValueError("SlimConv2d supports groups=1 or depthwise (groups == in == out)")
        self.slim_in, self.slim_out, self.divisor = slim_in, slim_out, divisor
        self.width = 1.0

    @property
    def active_in(self) -> int:
        return self._active(self.in_channels, self.slim_in, self.divisor)

    @property
    def active_out(self) -> int:
        return self._active(self.out_channels, self.slim_out, self.divisor)

    def sliced(self) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """(weight slice, bias slice, groups) at the current width."""
        out_c = self.active_out
        in_per_group = 1 if self.depthwise else self.active_in
        weight = self.weight[:out_c, :in_per_group]
        bias = self.bias[:out_c] if self.bias is not None else None
        return weight, bias, (out_c if self.depthwise else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x.shape[1], self.active_in)
        weight, bias, groups = self.sliced()
        if _nhwc_unsafe(self, x):
            # torch 2.14.1's CPU backward of a 1x1 stride-2 convolution on channels_last input
            # with 2-7 input channels corrupts the heap ("double free or corruption"; plain
            # F.conv2d, no slicing involved; probed for kernel 1/3, stride 1/2, 2-36 channels):
            # such a (tiny) layer runs in NCHW and hands NHWC on
            out = F.conv2d(x.contiguous(), weight.contiguous(), bias, self.stride, self.padding,
                           self.dilation, groups)
            return out.contiguous(memory_format=torch.channels_last)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, groups)

    def export(self) -> nn.Conv2d:
        """A standard ``nn.Conv2d`` holding a copy of the active slice."""
        weight, bias, groups = self.sliced()
        conv = skip_init(nn.Conv2d, self.active_in, weight.shape[0], self.kernel_size,
                         self.stride, self.padding, self.dilation, groups, bias is not None,
                         device=weight.device, dtype=weight.dtype)
        _copy_into(conv, weight, bias)
        return conv

    def extra_repr(self) -> str:
        return super().extra_repr() + f", slim_in={self.slim_in}, slim_out={self.slim_out}"


class SlimLinear(nn.Linear, WidthSwitched):
    """``nn.Linear`` whose input/output features shrink with the width (heads, ViT blocks).

    Example:
        >>> fc = SlimLinear(8, 4, slim_out=False)
        >>> fc.width = 0.5
        >>> fc(torch.randn(2, 4)).shape
        torch.Size([2, 4])
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 slim_in: bool = True, slim_out: bool = True, divisor: int = 1,
                 in_divisor: int | None = None) -> None:
        super().__init__(in_features, out_features, bias)
        self.slim_in, self.slim_out, self.divisor = slim_in, slim_out, divisor
        self.in_divisor = divisor if in_divisor is None else in_divisor
        self.width = 1.0

    @property
    def active_in(self) -> int:
        return self._active(self.in_features, self.slim_in, self.in_divisor)

    @property
    def active_out(self) -> int:
        return self._active(self.out_features, self.slim_out, self.divisor)

    def sliced(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        out_f = self.active_out
        weight = self.weight[:out_f, : self.active_in]
        return weight, (self.bias[:out_f] if self.bias is not None else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(self, x.shape[-1], self.active_in)
        return F.linear(x, *self.sliced())

    def export(self) -> nn.Linear:
        weight, bias = self.sliced()
        linear = skip_init(nn.Linear, weight.shape[1], weight.shape[0], bias is not None,
                           device=weight.device, dtype=weight.dtype)
        _copy_into(linear, weight, bias)
        return linear

    def extra_repr(self) -> str:
        return super().extra_repr() + f", slim_in={self.slim_in}, slim_out={self.slim_out}"


def _nhwc_unsafe(conv: "SlimConv2d", x: torch.Tensor) -> bool:
    """Whether ``conv`` on ``x`` is the channels_last CPU case torch's backward corrupts memory
    on (:meth:`SlimConv2d.forward`): 1x1 kernel, stride > 1, fewer than 8 input channels."""
    return (x.device.type == "cpu" and x.dim() == 4 and x.shape[1] < 8 and x.shape[1] > 1
            and conv.kernel_size == (1, 1) and conv.stride != (1, 1)
            and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last))


def _copy_into(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Physically copy slices into a plain layer (the export must not alias the family). The
    layer was built with ``skip_init`` (uninitialised memory): every parameter is written here,
    so exporting a ResNet-50 does not pay for a random initialisation it throws away."""
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
