"""Slimmable ops and the sub-network spec (docs/design.md sec. 2)."""

from slimssl.nn.calibrate import average_running_stats_, recalibrate_bn
from slimssl.nn.norm import NormMode, SlimBatchNorm1d, SlimBatchNorm2d, SlimLayerNorm, width_index
from slimssl.nn.ops import SlimConv2d, SlimLinear, WidthSwitched
from slimssl.nn.spec import SubnetSpec, as_spec, channels_at, make_divisible
from slimssl.nn.switch import SlimmableModel, set_subnet

__all__ = [
    "NormMode", "SlimBatchNorm1d", "SlimBatchNorm2d", "SlimConv2d", "SlimLayerNorm", "SlimLinear",
    "SlimmableModel", "SubnetSpec", "WidthSwitched", "as_spec", "average_running_stats_",
    "channels_at", "make_divisible",
    "recalibrate_bn", "set_subnet", "width_index",
]
