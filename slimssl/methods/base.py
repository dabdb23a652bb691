"""What every SSL method gives the recipes: a loss per sub-network against a full-width target.

docs/design.md sec. 3: the online branch runs at each sampled sub-network, the target
(momentum encoder) always at full size and once per iteration. A method maps (online outputs of one
sub-network, target outputs) to a loss, plus the raw similarities and embeddings that SlimCLR's
online distillation needs. It knows no schedule, no loss weights and no sampling (those are
recipes'), and no optimizer (the engine's, which also performs the EMA update of ``target``).
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, fields
from typing import Any, ContextManager

import torch
from torch import nn

from slimssl.models.encoder import SlimEncoder
from slimssl.nn.norm import momentum_statistics
from slimssl.nn.spec import SubnetSpec


@dataclass
class SubnetOutput:
    """One sub-network's contribution in one iteration.

    Attributes:
        loss: the method's base loss ``L_w``.
        similarities: raw (temperature-free) similarities of the queries with the candidates,
            rows = queries, column layout fixed per iteration; what SlimCLR distils (Eq. 4).
            ``None`` for methods without candidates (BYOL, SimSiam).
        embedding: the L2-normalised online output (embedding distillation, collapse monitor);
            for two-view methods both views stacked ``[view 1; view 2]``. A student's side of
            inplace distillation.
        target_embedding: what this member offers as a *teacher* when it is not the same as
            ``embedding``: the L2-normalised projections ``z`` (views stacked) of a method with
            a predictor, which SimSiam/BYOL-style students regress (US3L Table 1,
            "S-Net+Distill"). ``None`` means ``embedding``.
        positive_index: per row of ``similarities``, the column of its positive candidate
            (what DKD distillation treats as the target class); ``None`` means column 0, MoCo
            v2's ``[k+, queue]`` layout.
    """

    loss: torch.Tensor
    similarities: torch.Tensor | None
    embedding: torch.Tensor
    target_embedding: torch.Tensor | None = None
    positive_index: torch.Tensor | None = None

    @property
    def teacher_embedding(self) -> torch.Tensor:
        """The outputs a student distils from (``target_embedding``, else ``embedding``)."""
        return self.embedding if self.target_embedding is None else self.target_embedding

    def detach(self) -> "SubnetOutput":
        """A copy with every tensor detached (the largest member as the online teacher)."""
        return SubnetOutput(**{f.name: None if getattr(self, f.name) is None
                               else getattr(self, f.name).detach() for f in fields(self)})


class SSLMethod(nn.Module):
    """Base: ``online`` (trainable, slimmable) and ``target`` (EMA or shared, full width).

    Subclasses implement :meth:`target_forward` (no grad, once per iteration) and
    :meth:`subnet_forward` (at the online encoder's active sub-network), and may override
    :meth:`end_iteration` (e.g. MoCo's enqueue).
    """

    uses_momentum_target: bool = True
    #: ``target_forward`` also receives the batch's labels (supervised fine-tuning).
    needs_labels: bool = False
    #: the registered name (:func:`slimssl.methods.registry.register_method` sets it)
    name: str = "method"

    @classmethod
    def backbone_defaults(cls, backbone: Any) -> dict[str, Any]:
        """Defaults that depend on the backbone (e.g. a hidden size equal to its feature size),
        for settings whose ``__init__`` default is ``None``; none by default."""
        return {}

    @classmethod
    def from_config(cls, backbone: Any, settings: Any) -> "SSLMethod":
        """Build from a config section (``MethodConfig``): every ``__init__`` parameter that
        ``settings`` has an attribute of the same name for takes that value; a ``None`` there
        takes the class's own default (:meth:`backbone_defaults`, else the ``__init__``
        default), which is written back into ``settings`` so that the saved config shows the
        value actually used."""
        kwargs: dict[str, Any] = {}
        own = cls.backbone_defaults(backbone)
        for pname, param in inspect.signature(cls.__init__).parameters.items():
            if pname in ("self", "backbone") or not hasattr(settings, pname):
                continue
            value = getattr(settings, pname)
            if value is None:
                value = own.get(pname, None if param.default is param.empty else param.default)
                setattr(settings, pname, value)
            kwargs[pname] = value
        return cls(backbone, **kwargs)

    def __init__(self, online: SlimEncoder) -> None:
        super().__init__()
        self.online = online
        self.target = online.momentum_copy() if self.uses_momentum_target else None
        #: the target's BatchNorms keep their own momentum statistics (:meth:`use_momentum_bn`)
        self.momentum_bn = False
        #: the predictor keeps the base learning rate (:meth:`use_fixed_predictor_lr`)
        self.fixed_predictor_lr = False

    def use_fixed_predictor_lr(self) -> None:
        """Keep the predictor at the base learning rate for the whole run, without warm-up or
        decay (SimSiam, Chen & He 2021, Sec. 4.2 / Table 1c: 68.1% vs 67.7% decayed; the
        released code's ``--fix-pred-lr``): :meth:`fixed_lr_parameters` then names them."""
        if self.online.predictor is None:
            raise ValueError(f"{type(self).__name__} has no predictor to keep at a fixed rate")
        self.fixed_predictor_lr = True

    def fixed_lr_parameters(self) -> list[nn.Parameter]:
        """Online parameters the optimizer keeps at the base rate (the engine's
        ``build_optimizer(fixed_lr_params=...)``): the predictor's when
        :meth:`use_fixed_predictor_lr` was called, else none."""
        if not self.fixed_predictor_lr:
            return []
        return [p for p in self.online.predictor.parameters() if p.requires_grad]

    def use_momentum_bn(self) -> None:
        """Momentum BN in the target (DSPNet Sec. 5.1.1, Momentum^2 Teacher; the blend is
        :func:`slimssl.nn.norm.momentum_statistics`): from now on the target's BatchNorm
        statistics are its own (the engine's EMA no longer copies the online buffers) and
        :meth:`target_statistics` applies the blend around each target forward."""
        if self.target is None:
            raise ValueError(f"momentum BN is a momentum teacher's BatchNorm; "
                             f"{type(self).__name__} has no momentum target")
        self.momentum_bn = True

    def target_statistics(self, alpha: float) -> ContextManager[None]:
        """Context for one iteration's target forward: momentum BN with ``alpha`` (the weight
        of the batch statistics) when :meth:`use_momentum_bn` was called, else nothing."""
        if not self.momentum_bn:
            return contextlib.nullcontext()
        return momentum_statistics(self.target, alpha)

    def ema_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(target part, online part) pairs the engine moves by EMA (the predictor has no
        target twin)."""
        if self.target is None:
            return []
        return [(self.target.backbone, self.online.backbone),
                (self.target.projector, self.online.projector)]

    @torch.no_grad()
    def run_target(self, x: torch.Tensor) -> torch.Tensor:
        """The target at the family's largest member (full width, or the one width of an
        individual network)."""
        with self.target.subnet(self.target.full_spec):
            return self.target(x)

    def project_views(self, views: tuple[torch.Tensor, torch.Tensor], spec: SubnetSpec,
                      predict: bool = True
                      ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Online projections ``z_v`` of both views at ``spec`` and, when the encoder has a
        predictor and ``predict`` is set, its predictions ``p_v = predictor(z_v)`` (else
        ``None``).

        Predictor methods need both: ``p`` is the loss's online side, ``z`` what a student
        distils from (``SubnetOutput.target_embedding``) or what US3L's full network uses.
        """
        enc = self.online
        with enc.subnet(spec):
            zs = [enc.projector(enc.backbone(v)) for v in views]
            if enc.predictor is None or not predict:
                return zs, None
            return zs, [enc.predictor(z) for z in zs]

    @torch.no_grad()
    def target_forward(self, views: tuple[torch.Tensor, torch.Tensor]) -> Any:
        raise NotImplementedError

    def subnet_forward(self, views: tuple[torch.Tensor, torch.Tensor], spec: SubnetSpec,
                       target: Any) -> SubnetOutput:
        raise NotImplementedError

    @torch.no_grad()
    def end_iteration(self, target: Any) -> None:
        """Called once after the optimizer step."""
