"""Linear probes on frozen features for all sub-networks, trained together in one pass.

Two probe kinds:

* ``"switchable"`` -- one ``nn.Linear(C_w, classes)`` per sub-network. SlimCLR (Zhao
  et al., Sec. 3 and Appendix A) shows that a single shared linear layer generally
  cannot realise the least-squares-optimal mapping for the full network and for a
  sub-network at once, because the sub-network's features are not "compatible" with the
  leading channels of the full features (their Eq. 23 fails on real features). So each
  sub-network gets its own probe; this is SlimCLR's choice and our default.
* ``"slimmable"`` -- ONE ``nn.Linear(C_max, classes)``; at width ``w`` only its leading
  ``C_w`` input columns are used (the slimmable-network convention, Yu et al. 2019).
  Kept for comparison (SlimCLR Table 3a) and for DSPNet-style evaluation.

Options:

* ``bn=True`` -- ``BatchNorm1d(C_w, affine=False)`` before the linear layer, as in DSPNet
  (Wang et al.) / MAE-style probing: it standardises features whose scale differs per
  width. The BN is always private to each sub-network (it has no learnable parameters,
  only per-width running statistics), even for the slimmable probe.
* ``distill=True`` (:func:`probe_loss`) -- probe distillation (SlimCLR, "online distillation
  ... when training these linear layers", temperature 1.0): every sub-network probe is
  additionally trained towards the full-width probe's softened predictions
  (:func:`slimssl.nn.functional.soft_target_loss`). The teacher logits are detached, so the
  full-width probe learns only from labels.

The probes are trained by :mod:`slimssl.eval.linear_eval`.
"""

from __future__ import annotations

from typing import Hashable, Literal, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from slimssl.nn.functional import soft_target_loss

__all__ = [
    "LinearProbes",
    "probe_loss",
    "evaluate_probes",
]

ProbeKind = Literal["switchable", "slimmable"]


class LinearProbes(nn.Module):
    """Linear classifiers for several sub-networks, keyed like the feature dict.

    ``dims`` maps a sub-network key (any hashable, e.g. a ``SubnetSpec``) to its feature
    width ``C_w``. ``forward(feats)`` maps ``{key: (B, C_w)}`` to ``{key: (B, classes)}``.
    """

    def __init__(
        self,
        dims: Mapping[Hashable, int],
        num_classes: int,
        kind: ProbeKind = "switchable",
        bn: bool = False,
    ) -> None:
        super().__init__()
        if kind not in ("switchable", "slimmable"):
            raise ValueError(f"unknown probe kind {kind!r}")
        if not dims:
            raise ValueError("dims must not be empty")
        self.kind = kind
        self.dims = {k: int(d) for k, d in dims.items()}
        # nn.ModuleDict needs string names; keep an explicit key -> name map.
        self._names = {k: f"p{i}" for i, k in enumerate(self.dims)}
        self.norms = (
            nn.ModuleDict({self._names[k]: nn.BatchNorm1d(d, affine=False) for k, d in self.dims.items()})
            if bn
            else None
        )
        if kind == "switchable":
            self.heads = nn.ModuleDict(
                {self._names[k]: nn.Linear(d, num_classes) for k, d in self.dims.items()}
            )
        else:
            self.head = nn.Linear(max(self.dims.values()), num_classes)

    @property
    def keys(self) -> list[Hashable]:
        return list(self.dims)

    def forward_one(self, key: Hashable, x: torch.Tensor) -> torch.Tensor:
        """Logits of sub-network ``key`` for its features ``x`` of shape (B, C_w)."""
        d = self.dims[key]
        if x.shape[1] != d:
            raise ValueError(f"features for {key!r} have {x.shape[1]} dims, expected {d}")
        name = self._names[key]
        if self.norms is not None:
            x = self.norms[name](x)
        if self.kind == "switchable":
            return self.heads[name](x)
        return F.linear(x, self.head.weight[:, :d], self.head.bias)

    def forward(self, feats: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        return {k: self.forward_one(k, x) for k, x in feats.items()}


def probe_loss(
    logits: Mapping[Hashable, torch.Tensor],
    y: torch.Tensor,
    teacher_key: Hashable | None = None,
    distill: bool = False,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Sum over sub-networks of label cross entropy (+ distillation from ``teacher_key``).

    Losses are summed, not averaged, as in slimmable-network training where every width
    contributes its own full gradient. The distillation term is the KL form of
    :func:`~slimssl.nn.functional.soft_target_loss` (0 when a student agrees with its teacher;
    the same gradient as the soft cross entropy).
    """
    total = sum(F.cross_entropy(z, y) for z in logits.values())
    if distill:
        if teacher_key is None:
            raise ValueError("distill=True needs teacher_key")
        teacher = logits[teacher_key].detach()
        for k, z in logits.items():
            if k != teacher_key:
                total = total + soft_target_loss(z, teacher, temperature, "kl")
    return total


def _check_feats(feats: Mapping[Hashable, torch.Tensor], y: torch.Tensor) -> None:
    if not feats:
        raise ValueError("feature dict is empty")
    for k, x in feats.items():
        if x.ndim != 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"features for {k!r} must be (N, C) with N == len(labels)")


@torch.no_grad()
def evaluate_probes(
    probes: LinearProbes,
    feats: Mapping[Hashable, torch.Tensor],
    y: torch.Tensor,
    batch_size: int = 8192,
) -> dict[Hashable, dict[str, float]]:
    """Top-1 / top-5 accuracy in percent per sub-network (top-5 capped at #classes)."""
    _check_feats(feats, y)
    was_training = probes.training
    probes.eval()
    dev = next(probes.parameters()).device
    y = y.to(dev, dtype=torch.long)
    results: dict[Hashable, dict[str, float]] = {}
    for k, x in feats.items():
        c1 = c5 = 0
        for start in range(0, x.shape[0], batch_size):
            z = probes.forward_one(k, x[start : start + batch_size].to(dev, dtype=torch.float32))
            yb = y[start : start + batch_size]
            top = z.topk(min(5, z.shape[1]), dim=1).indices
            c1 += int((top[:, 0] == yb).sum())
            c5 += int((top == yb[:, None]).any(1).sum())
        n = max(1, x.shape[0])
        results[k] = {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n}
    probes.train(was_training)
    return results
