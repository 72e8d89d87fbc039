"""Evaluation metrics: percentile masks and normalised AUC (shared), classification (IoU, ROAD curves), verification."""

from fame_utils.metrics.masks import DEFAULT_PERCENTS, PercentileMasks, normalized_auc, percentile_masks

__all__ = ["DEFAULT_PERCENTS", "PercentileMasks", "normalized_auc", "percentile_masks"]
