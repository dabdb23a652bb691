"""US3L intermediate-feature distillation: sub-networks regress the momentum teacher's features.

The US3L authors' ResNet-50 ImageNet setting (code, ``us_resnet50_simclr_featdistill_imagenet``:
``DISTILL_FEATURE: True``, ``DISTILL_FEATURE_CRITERION: MSELoss``, ``DISTILL_FEATURE_LAMBDA:
1.0``) adds, for every sub-network below the full width, the mean squared error between its
intermediate features and the full-width momentum teacher's, at one point in each of stages
2-4. Their hook points are ``layer2.3.bn2``, ``layer3.5.bn2`` and ``layer4.2.bn2``: the output of
the last bottleneck's 3x3-conv BatchNorm (before its ReLU), 128 / 256 / 512 channels at full
width; ``layer2`` / ``layer3`` / ``layer4`` (the stage outputs) are the other natural choice.
Any module name of the backbone works (``layers``).

Loss, as in that code (``MSELoss`` criterion over dicts of features): each student view is
paired with the teacher's OTHER view, and the terms are averaged over the two pairings and the
``L`` layers::

    L_feat = 1 / (2L) sum_l sum_v mean((A_l(s_l^v) - sg(t_l^{1-v}))^2)

**Width mismatch.** At width ``w`` the student's feature has ``c_w < C`` channels, the teacher's
``C``. ``align="projection"`` (default, the authors' choice: ``proj_conv``, a ``USConv2d`` with
slimmable input and fixed output, no bias) maps the student through a learned 1x1 convolution
whose weight ``(C, C)`` is sliced to its ``c_w`` input channels, so every width is compared with
the teacher's whole feature; the projections train with the network, are not regularised by
the group penalty (as in that code) and are not part of any exported member. ``align="leading"``
compares the student with the teacher's leading ``c_w`` channels, the channels it shares with
the full network, without extra parameters; it is offered because it constrains the shared
channels directly, but it leaves the teacher's later channels out of the signal.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimssl.nn.norm import SlimBatchNorm1d, SlimBatchNorm2d

ALIGNS = ("projection", "leading")


def _full_channels(module: nn.Module, name: str) -> int:
    """Channels of ``module``'s output at full width: its last BatchNorm's feature count (a
    block's or stage's last norm, or the norm itself)."""
    norms = [m for m in module.modules() if isinstance(m, (SlimBatchNorm1d, SlimBatchNorm2d))]
    if not norms:
        raise ValueError(f"feature distillation layer {name!r} has no BatchNorm to read its "
                         "channel count from; name a stage (layer2), a block or a norm "
                         "(layer2.3.bn2)")
    return norms[-1].num_features


class SlicedProjection(nn.Module):
    """1x1 convolution ``C_in -> C_out`` whose input is the leading ``c`` channels it is given
    (the authors' ``USConv2d(us=[True, False])``, bias-free)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)  # PyTorch's default init
        self.weight = nn.Parameter(conv.weight.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        if c > self.weight.shape[1]:
            raise RuntimeError(f"projection takes at most {self.weight.shape[1]} channels, got {c}")
        return F.conv2d(x, self.weight[:, :c])


class FeatureDistillation(nn.Module):
    """Intermediate-feature distillation of sub-networks from a full-width teacher.

    Args:
        backbone: the online backbone (for the layer names and their channel counts).
        layers: backbone module names whose outputs are distilled (stages 2-4 by default).
        weight: ``lambda`` of the term added to each sub-network's loss (authors: 1).
        align: ``projection`` or ``leading`` (module docstring).

    Example:
        >>> fd = FeatureDistillation(backbone, ["layer2", "layer3", "layer4"])
        >>> with fd.capture(teacher_backbone) as t: teacher_backbone(x1); teacher_backbone(x2)
        >>> with fd.capture(backbone) as s: backbone(x1); backbone(x2)
        >>> loss = fd.loss(s, t)
    """

    def __init__(self, backbone: nn.Module, layers: Sequence[str] = ("layer2", "layer3", "layer4"),
                 weight: float = 1.0, align: str = "projection") -> None:
        super().__init__()
        if align not in ALIGNS:
            raise ValueError(f"feature distillation align must be one of {ALIGNS}, got {align!r}")
        if not layers:
            raise ValueError("feature distillation needs at least one layer")
        if weight < 0:
            raise ValueError(f"feature distillation weight must be >= 0, got {weight}")
        names = dict(backbone.named_modules())
        missing = [n for n in layers if n not in names]
        if missing:
            stages = [n for n in names if n.count(".") == 0 and n]
            raise ValueError(f"feature distillation layers {missing} are not modules of the "
                             f"backbone; top-level modules: {', '.join(stages)}")
        self.layers, self.weight, self.align = list(layers), float(weight), align
        channels = [_full_channels(names[n], n) for n in self.layers]
        self.proj = (nn.ModuleList(SlicedProjection(c, c) for c in channels)
                     if align == "projection" else None)

    @contextmanager
    def capture(self, backbone: nn.Module) -> Iterator[list[list[Tensor]]]:
        """Record the outputs of the layers of ``backbone`` (the online one or its momentum
        copy) while the context is open: ``feats[l]`` lists layer ``l``'s outputs, one per
        forward (view)."""
        feats: list[list[Tensor]] = [[] for _ in self.layers]
        handles = [backbone.get_submodule(name).register_forward_hook(
            lambda m, inp, out, i=i: feats[i].append(out)) for i, name in enumerate(self.layers)]
        try:
            yield feats
        finally:
            for h in handles:
                h.remove()

    def loss(self, student: list[list[Tensor]], teacher: list[list[Tensor]]) -> Tensor:
        """``1/(2L) sum_l sum_v MSE(align(s_l^v), sg(t_l^{1-v}))`` (two views each)."""
        terms = []
        for i, (s_views, t_views) in enumerate(zip(student, teacher)):
            if len(s_views) != 2 or len(t_views) != 2:
                raise RuntimeError(f"feature distillation layer {self.layers[i]!r} ran "
                                   f"{len(s_views)} / {len(t_views)} times for the student / "
                                   "teacher; it must run once per view (is it inside a block "
                                   "this member skips?)")
            for v in range(2):
                s, t = s_views[v], t_views[1 - v].detach()
                if self.proj is not None:
                    s = self.proj[i](s)
                else:
                    t = t[:, :s.shape[1]]
                terms.append(F.mse_loss(s.float(), t.float()))
        return torch.stack(terms).mean()
