"""SimCLR and its momentum-teacher variant (US3L's base method), for slimmable encoders.

* :class:`SimCLR` (Chen et al., ICML 2020, Eq. 1): NT-Xent over the ``2N`` projections of both
  views, in-batch negatives gathered across ranks (differentiable gather: every rank's anchors
  push on every rank's candidates). Each sub-network contrasts its own two views: the naive
  US-Net/S-Net + SimCLR baselines of US3L (slides Table 2 "US+SimCLR", Table 1 ablation 9).
* :class:`MomentumSimCLR` (US3L, Cao, Sun, Zhou CVPR 2023; "SimCLR_Momentum" in the authors'
  code): the three guidelines (slides, "The Proposed Three Guidelines"):
  (1) the **base loss** of the full network is relative (InfoNCE): NT-Xent between the online
  projection of one view and the momentum teacher's projection of the OTHER view, averaged over
  the two pairings (code: ``InfoNCEv2_distill``, ``T = 0.5``); (2) sub-networks learn only by
  **distillation**, (3) from the **momentum teacher** (the EMA target at full width), through an
  **auxiliary distillation head** (a 2-layer predictor ``256 -> 2048 -> 256`` used only by
  sub-networks; slides ablation "Auxiliary Distill Head").

Distillation loss: ``-cos(p_student, sg(z_teacher))`` of the other view by default, the
adopted configuration: the slides' second ablation table (dynamic sampling / group
regularization, R-18, both off) starts from 67.7 / 66.5 / 65.1 / 64.3 / 60.5 / 59.6, exactly
Table 1's case 13 (InfoNCE base loss, "MSE" distillation, auxiliary head, momentum teacher),
not case 17 (InfoNCE distillation: 67.4 / 66.1 / 64.7 / 64.0 / 60.2 / 59.5); the authors'
released configs use ``DISTILL_CRITERION: CosineSimilarity``. On L2-normalised vectors the
slides' MSE is ``||p - z||^2 = 2 - 2 cos``, the same minimiser with twice the gradient.
``"infonce"`` (NT-Xent against the teacher's keys, guideline 2 read literally) stays an option.

Heads (US3L code): projector ``features -> 2048 -> 2048 -> 256``, BN + ReLU on the hidden
layers; only its input follows the width (``slim_hidden=False``).
"""

from __future__ import annotations

import contextlib
from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from slimssl.dist import all_gather_tensor, concat_all_gather, get_rank
from slimssl.methods.base import SSLMethod, SubnetOutput
from slimssl.methods.registry import register_method
from slimssl.methods.byol import Views, stacked_unit
from slimssl.methods.feature_distill import FeatureDistillation
from slimssl.methods.losses import simsiam_loss
from slimssl.models.encoder import SlimEncoder
from slimssl.models.heads import SlimMLP, head_kwargs
from slimssl.nn.spec import WIDTH_TOL, SubnetSpec
from slimssl.nn.switch import SlimmableModel

DistillLoss = Literal["infonce", "cosine"]


def _gather(x: Tensor) -> Tensor:
    return all_gather_tensor(x) if x.requires_grad else concat_all_gather(x)


def nt_xent_global(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    """NT-Xent of the pairs ``(a_i, b_i)`` with the whole global batch as candidates.

    Anchors are this rank's ``2B`` rows ``[a; b]``; candidates are ``[A; B]`` gathered from
    every rank (``2WB`` rows, rank-major). Anchor ``a_i``'s positive is ``b_i`` and vice versa;
    the anchor itself is excluded from its denominator; every other row is a negative
    (SimCLR Eq. 1). A detached ``b`` (a momentum teacher's keys) is gathered without gradient.

    Example:
        >>> a, b = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = nt_xent_global(a, b, temperature=0.5)
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"need two (B, D) tensors of one shape, got {a.shape} and {b.shape}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    a_all, b_all = _gather(a), _gather(b.to(a.dtype))
    n, local = a_all.shape[0], a.shape[0]
    logits = torch.cat([a, b]) @ torch.cat([a_all, b_all]).t() / temperature
    own = torch.arange(local, device=a.device) + get_rank() * local
    self_col = torch.cat([own, own + n])
    positive = torch.cat([own + n, own])
    rows = torch.arange(2 * local, device=a.device)
    logits = logits.index_put((rows, self_col), torch.tensor(float("-inf"), device=a.device,
                                                             dtype=logits.dtype))
    return F.cross_entropy(logits, positive)


def cross_view_distillation(student: Tensor, teacher: Tensor, kind: DistillLoss,
                            temperature: float) -> Tensor:
    """Distil a teacher's outputs into a student, pairing each student view with the teacher's
    OTHER view, averaged over the two pairings (US3L code skips same-view pairs).

    ``student`` and ``teacher`` are view-stacked ``(2B, D)`` (``[view 1; view 2]``); the teacher
    is detached. ``kind``: ``"infonce"`` = :func:`nt_xent_global` (relative distance, US3L
    guideline 2) or ``"cosine"`` = ``-cos(s, sg(t))`` (the code's ``CosineSimilarity``).
    """
    s1, s2 = student.chunk(2)
    t1, t2 = teacher.detach().chunk(2)
    if kind == "infonce":
        return 0.5 * (nt_xent_global(s1, t2, temperature) + nt_xent_global(s2, t1, temperature))
    if kind == "cosine":
        return 0.5 * (simsiam_loss(s1, t2) + simsiam_loss(s2, t1))
    raise ValueError(f"unknown distillation loss {kind!r}; expected 'infonce' or 'cosine'")


def _projector(backbone: SlimmableModel, hidden: int, dim: int, slim_hidden: bool) -> SlimMLP:
    return SlimMLP(backbone.full_features, hidden, dim, num_layers=3, bn_hidden=True,
                   **dict(head_kwargs(backbone), slim_hidden=slim_hidden))


@register_method("simclr")
class SimCLR(SSLMethod):
    """NT-Xent of each sub-network's two views, negatives from the global batch.

    Example:
        >>> method = SimCLR(create("resnet18", widths=[1, .5], stem="cifar"), 512, 128)
        >>> out = method.subnet_forward((x1, x2), SubnetSpec(0.5), method.target_forward((x1, x2)))
    """

    uses_momentum_target = False

    def __init__(self, backbone: SlimmableModel, proj_hidden: int = 2048, proj_dim: int = 256,
                 temperature: float = 0.5, slim_hidden: bool = False) -> None:
        super().__init__(SlimEncoder(backbone, _projector(backbone, proj_hidden, proj_dim,
                                                          slim_hidden)))
        self.temperature = temperature

    @torch.no_grad()
    def target_forward(self, views: Views) -> None:
        return None

    def subnet_forward(self, views: Views, spec: SubnetSpec, target: None) -> SubnetOutput:
        zs, _ = self.project_views(views, spec)
        return SubnetOutput(nt_xent_global(zs[0], zs[1], self.temperature), None,
                            stacked_unit(zs))


@register_method("simclr_momentum")
class MomentumSimCLR(SSLMethod):
    """US3L's method: base InfoNCE vs the momentum teacher for the full network, distillation
    from the same teacher through an auxiliary head for every sub-network.

    Args:
        backbone: slimmable backbone (universal norm for US3L).
        proj_hidden / proj_dim / pred_hidden: 2048 / 256 / 2048 (US3L code).
        temperature: NT-Xent temperature of the base and the InfoNCE distillation (0.5).
        distill_head: sub-networks go through the auxiliary distillation head (default); off,
            they distil their projections directly (slides ablation, cases 7 / 16).
        distill_loss: ``"cosine"`` (default, the adopted configuration: see the module
            docstring) or ``"infonce"``.
        slim_hidden: the projector's hidden layers follow the width (default no).
        feature_distill_weight: ``lambda`` of the intermediate-feature distillation of every
            sub-network (:mod:`slimssl.methods.feature_distill`; authors' R-50 ImageNet
            setting: 1); 0 = off (default, as the paper's three guidelines and the authors'
            CIFAR configs).
        feature_distill_layers: backbone modules distilled (stages 2-4 by default; the
            authors' R-50 points are ``layer2.3.bn2``, ``layer3.5.bn2``, ``layer4.2.bn2``).
        feature_distill_align: ``projection`` (learned 1x1 from the student's channels to the
            teacher's, the authors' choice) or ``leading`` (the teacher's leading channels).

    Example:
        >>> method = MomentumSimCLR(create("resnet18", norm="universal", stem="cifar"), 512, 64)
        >>> keys = method.target_forward((x1, x2))
        >>> out = method.subnet_forward((x1, x2), SubnetSpec(0.5), keys)
    """

    def __init__(self, backbone: SlimmableModel, proj_hidden: int = 2048, proj_dim: int = 256,
                 pred_hidden: int = 2048, temperature: float = 0.5, distill_head: bool = True,
                 distill_loss: DistillLoss = "cosine", slim_hidden: bool = False,
                 feature_distill_weight: float = 0.0,
                 feature_distill_layers: Sequence[str] = ("layer2", "layer3", "layer4"),
                 feature_distill_align: str = "projection") -> None:
        projector = _projector(backbone, proj_hidden, proj_dim, slim_hidden)
        head = None
        if distill_head:
            head = SlimMLP(proj_dim, pred_hidden, proj_dim, num_layers=2, bn_hidden=True,
                           **dict(head_kwargs(backbone), slim_in=False, slim_hidden=False))
        super().__init__(SlimEncoder(backbone, projector, head))
        if distill_loss not in ("infonce", "cosine"):
            raise ValueError(f"distill_loss must be 'infonce' or 'cosine', got {distill_loss!r}")
        self.temperature, self.distill_loss = temperature, distill_loss
        # trained with the online encoder (the optimizer's parameters), never EMA'd or exported;
        # "feature_proj" keeps it out of US3L's group penalty
        self.online.feature_proj = (
            FeatureDistillation(backbone, feature_distill_layers, feature_distill_weight,
                                feature_distill_align) if feature_distill_weight > 0 else None)
        self._teacher_features: list[list[Tensor]] | None = None

    @property
    def feature_distill(self) -> FeatureDistillation | None:
        """The intermediate-feature distillation, or ``None`` when off."""
        return self.online.feature_proj

    def is_full(self, spec: SubnetSpec) -> bool:
        """Whether ``spec`` is the family's largest member (full width, every block)."""
        depth_full = spec.depth is None or tuple(spec.depth) == self.online.stage_depths
        return abs(spec.width - self.online.full_spec.width) <= WIDTH_TOL and depth_full

    @torch.no_grad()
    def target_forward(self, views: Views) -> Tensor:
        """The momentum teacher's projections of both views, stacked ``(2B, D)``; with feature
        distillation its intermediate features of this iteration are kept for the students."""
        fd = self.feature_distill
        if fd is None:
            return torch.cat([self.run_target(v) for v in views])
        with fd.capture(self.target.backbone) as feats:
            keys = torch.cat([self.run_target(v) for v in views])
        self._teacher_features = feats
        return keys

    def subnet_forward(self, views: Views, spec: SubnetSpec, keys: Tensor) -> SubnetOutput:
        full = self.is_full(spec)
        fd = None if full else self.feature_distill
        with (fd.capture(self.online.backbone) if fd is not None
              else contextlib.nullcontext()) as feats:
            zs, ps = self.project_views(views, spec, predict=not full)
        if full:
            loss = cross_view_distillation(torch.cat(zs), keys, "infonce", self.temperature)
            return SubnetOutput(loss, None, stacked_unit(zs))
        student = ps if ps is not None else zs
        loss = cross_view_distillation(torch.cat(student), keys, self.distill_loss,
                                       self.temperature)
        if fd is not None:
            if self._teacher_features is None:
                raise RuntimeError("feature distillation: call target_forward first")
            loss = loss + fd.weight * fd.loss(feats, self._teacher_features)
        return SubnetOutput(loss, None, stacked_unit(student), stacked_unit(zs))
