"""Evaluation metrics: percentile masks and normalised AUC (shared), classification (IoU, ROAD curves), verification
(EER, accuracy, deletion/insertion), and the bootstrap interval and map correlation every table uses.

Numbers only: the metrics know nothing of attribution methods, benchmarks or plotting.
"""

from fame_utils.metrics import classification, masks, stats, verification
from fame_utils.metrics.classification import *  # noqa: F403
from fame_utils.metrics.masks import *  # noqa: F403
from fame_utils.metrics.stats import *  # noqa: F403
from fame_utils.metrics.verification import *  # noqa: F403

__all__ = [*masks.__all__, *classification.__all__, *verification.__all__, *stats.__all__]
