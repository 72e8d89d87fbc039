"""Evaluation metrics: percentile masks and normalised AUC (shared), classification (IoU, ROAD curves), verification."""

from fame_utils.metrics.classification import (
    IOU_THRESHOLDS,
    Normalizer,
    RoadCurves,
    bootstrap_ci,
    box_in_input,
    iou,
    noisy_linear_imputation,
    road_curves,
)
from fame_utils.metrics.masks import DEFAULT_PERCENTS, PercentileMasks, normalized_auc, percentile_masks

__all__ = [
    "DEFAULT_PERCENTS",
    "IOU_THRESHOLDS",
    "Normalizer",
    "PercentileMasks",
    "RoadCurves",
    "bootstrap_ci",
    "box_in_input",
    "iou",
    "noisy_linear_imputation",
    "normalized_auc",
    "percentile_masks",
    "road_curves",
]

from fame_utils.metrics.verification import (  # noqa: E402  (verification helper)
    VerificationCurves,
    bootstrap_auc_interval,
    cosine_scores,
    deletion_insertion,
    eer_threshold,
    embed,
    verification_accuracy,
)

__all__ += ["VerificationCurves", "bootstrap_auc_interval", "cosine_scores", "deletion_insertion", "eer_threshold", "embed", "verification_accuracy"]
