"""Faithfulness metrics for heatmaps, each following its paper's protocol.

Every metric takes the model (or :class:`camkit.LoadedModel`), the pictures as (B, 3, H, W)
pixels in [0, 1] (``Explanation.images``), the maps as (B, H, W) (``Explanation.maps``) and the
explained classes, and runs batched on the model's device (CPU or CUDA)::

    exp = camkit.explain(loaded, images, methods=["gradcam"])
    curve = camkit.metrics.deletion(loaded, exp.images, exp["gradcam"], exp.targets[:, 0])
    curve.mean_auc

See docs/metrics.md for the protocols and where they depart from the papers.
"""

from __future__ import annotations

from camkit._metrics import (
    REFERENCE_MAPS,
    ConfidenceResult,
    Curve,
    PointingResult,
    average_drop,
    deletion,
    insertion,
    pointing_game,
    reference_maps,
)
from camkit._metrics_road import RoadResult, linear_imputation, road
from camkit._metrics_sanity import SanityResult, sanity_check, spearman

__all__ = [
    "REFERENCE_MAPS",
    "ConfidenceResult",
    "Curve",
    "PointingResult",
    "RoadResult",
    "SanityResult",
    "average_drop",
    "deletion",
    "insertion",
    "linear_imputation",
    "pointing_game",
    "reference_maps",
    "road",
    "sanity_check",
    "spearman",
]
