"""Supervised classification as a "method" of the engine: slimmable fine-tuning on labels.

DSPNet appendix 0.B fine-tunes the pre-trained online encoder "following the training algorithm
of slimmable networks" on ImageNet labels: every member is a classifier (backbone + a linear
layer whose input follows the width), trained with cross-entropy, sandwich rule and inplace
distillation (:mod:`slimssl.recipes.supervised`). Written as an :class:`SSLMethod` so that it
runs through the same :class:`~slimssl.engine.trainer.Trainer` (AMP, DDP, resume, logs) as
pre-training; it has no target network (the "target" of an iteration is its labels) and it
uses the first augmented view only.

``SubnetOutput.embedding`` carries the member's LOGITS (not an L2-normalised embedding): they
are what inplace distillation matches, student against the full member's detached logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimssl.methods.base import SSLMethod, SubnetOutput
from slimssl.methods.registry import register_method
from slimssl.models.encoder import SlimEncoder
from slimssl.models.heads import SlimMLP, head_kwargs
from slimssl.nn.spec import SubnetSpec
from slimssl.nn.switch import SlimmableModel


def classifier_head(backbone: SlimmableModel, num_classes: int) -> SlimMLP:
    """One slimmable linear layer from the backbone's ``w``-sized features to ``num_classes``
    logits (the input slice follows the width, as in slimmable networks' classifier)."""
    dim = backbone.full_features
    return SlimMLP(dim, dim, num_classes, num_layers=1, **head_kwargs(backbone))


@register_method("supervised")
class SupervisedClassifier(SSLMethod):
    """Cross-entropy (optionally label-smoothed) of each member's logits against the labels.

    Args:
        backbone: the slimmable backbone (weights initialised by the caller).
        num_classes: classifier outputs.
        label_smoothing: as ``torch.nn.functional.cross_entropy`` (0: off).
    """

    uses_momentum_target = False
    needs_labels = True

    def __init__(self, backbone: SlimmableModel, num_classes: int,
                 label_smoothing: float = 0.0) -> None:
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        super().__init__(SlimEncoder(backbone, classifier_head(backbone, num_classes)))
        self.label_smoothing = label_smoothing

    @torch.no_grad()
    def target_forward(self, views: tuple[torch.Tensor, torch.Tensor],
                       labels: torch.Tensor | None = None) -> torch.Tensor:
        """The iteration's target is its labels (no target network)."""
        if labels is None:
            raise ValueError("supervised fine-tuning needs labelled data; this batch has none")
        return labels

    def subnet_forward(self, views: tuple[torch.Tensor, torch.Tensor], spec: SubnetSpec,
                       target: torch.Tensor) -> SubnetOutput:
        with self.online.subnet(spec):
            logits = self.online(views[0])
        loss = F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)
        return SubnetOutput(loss=loss, similarities=None, embedding=logits)
