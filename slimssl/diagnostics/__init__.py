"""Diagnostics of interference between weight-sharing sub-networks (SlimCLR Sec. 3.2, Fig. 3-4)
and the error surface / optimisation trajectory views of SlimCLR Fig. 5 (Li et al. 2018).

Pure measurement and plotting on ``nn``/``models``: the engine's callbacks
(:mod:`slimssl.cli.monitors`) call these during training, ``slimssl diagnose`` afterwards.
"""

from slimssl.diagnostics.direction import (SnapshotStore, Snapshots, consecutive_cosine, flat_grad,
                                           last_linear, principal_directions,
                                           principal_projection)
from slimssl.diagnostics.grad_ratio import (GradNormRatios, SharedLayer, grad_norm_ratios,
                                            shared_layers)
from slimssl.diagnostics.landscape import (KnnProbe, filter_normalized_direction, grid_axis,
                                           surface)
from slimssl.diagnostics.plots import LandscapePanel, plot_curves, plot_direction, plot_landscapes
from slimssl.diagnostics.trajectory import (SNAPSHOT_DIR, Trajectory, TrajectoryPCA,
                                            WeightSnapshots, flatten, landscape_keys,
                                            trajectory_pca, unflatten)

__all__ = [
    "GradNormRatios", "KnnProbe", "LandscapePanel", "SNAPSHOT_DIR", "SharedLayer",
    "SnapshotStore", "Snapshots", "Trajectory", "TrajectoryPCA", "WeightSnapshots",
    "consecutive_cosine", "filter_normalized_direction", "flat_grad", "flatten",
    "grad_norm_ratios", "grid_axis", "landscape_keys", "last_linear", "plot_curves",
    "plot_direction", "plot_landscapes", "principal_directions", "principal_projection",
    "shared_layers", "surface", "trajectory_pca", "unflatten",
]
