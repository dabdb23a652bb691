"""Diagnostics of interference between weight-sharing sub-networks (SlimCLR Sec. 3.2, Fig. 3-4).

Pure measurement and plotting on ``nn``/``models``: the engine's callbacks
(:mod:`slimssl.engine.monitors`) call these during training, ``slimssl diagnose`` afterwards.
"""

from slimssl.diagnostics.direction import (SnapshotStore, Snapshots, consecutive_cosine, flat_grad,
                                           last_linear, principal_projection)
from slimssl.diagnostics.grad_ratio import (GradNormRatios, SharedLayer, grad_norm_ratios,
                                            shared_layers)
from slimssl.diagnostics.plots import plot_curves, plot_direction

__all__ = [
    "GradNormRatios", "SharedLayer", "SnapshotStore", "Snapshots", "consecutive_cosine",
    "flat_grad", "grad_norm_ratios", "last_linear", "plot_curves", "plot_direction",
    "principal_projection", "shared_layers",
]
