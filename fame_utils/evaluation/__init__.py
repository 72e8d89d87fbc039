"""Benchmark runners reusable outside notebooks: the classification benchmark (Table 1) and the verification
benchmark (Table 2), from samples to tables with intervals.

Runs baselines and metrics on models and data; knows nothing of plotting or notebooks.
"""

from fame_utils.evaluation import classification, verification
from fame_utils.evaluation.classification import *  # noqa: F403
from fame_utils.evaluation.verification import *  # noqa: F403

__all__ = [*classification.__all__, *verification.__all__]
