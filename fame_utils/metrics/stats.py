"""Uncertainty and agreement: the one percentile-bootstrap interval (``scipy.stats.bootstrap``), the one paired test
(Wilcoxon signed-rank with its effect size) and the one map correlation.

Plain numbers in, plain numbers out; it knows nothing of maps' meaning, networks or tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch
from scipy.stats import bootstrap, rankdata, wilcoxon

__all__ = ["PairedComparison", "bootstrap_interval", "bootstrap_ci", "map_correlations", "mean_map_correlation", "paired_comparison"]


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray], n: int, level: float = 0.95, n_resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Seeded percentile-bootstrap interval of a statistic of ``n`` units resampled with replacement.

    ``scipy.stats.bootstrap`` draws the units (``numpy.random.default_rng(seed)``); the statistic receives the
    drawn unit indices, an integer array ``(n_resamples, n)``, and returns one value per row. One unit cannot be
    resampled by scipy: the statistic is then evaluated on ``n_resamples`` copies of that unit.

    Raises:
        ValueError: ``n`` < 1, ``n_resamples`` < 1 or ``level`` outside (0, 1).
    """
    if n < 1 or n_resamples < 1 or not 0 < level < 1:
        raise ValueError(f"need n ≥ 1, n_resamples ≥ 1 and 0 < level < 1, got n={n}, n_resamples={n_resamples}, level={level}.")
    if n == 1:
        values = statistic(np.zeros((n_resamples, 1), dtype=np.int64))
        low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)
    result = bootstrap((np.arange(n),), lambda drawn, axis=-1: statistic(drawn), vectorized=True, n_resamples=n_resamples,
                       confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and seeded percentile-bootstrap interval of the mean: ``(mean, low, high)`` (one value: zero width).

    Raises:
        ValueError: no values, non-finite values, or confidence outside (0, 1).
    """
    data = np.asarray(values, dtype=np.float64).reshape(-1)
    if data.size == 0 or not np.all(np.isfinite(data)):
        raise ValueError(f"bootstrap_ci needs at least one finite value, got {data.tolist()}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    low, high = bootstrap_interval(lambda drawn: data[drawn].mean(axis=-1), data.size, confidence, resamples, seed)
    return float(data.mean()), low, high


class PairedComparison(NamedTuple):
    """Paired comparison of two methods on the same units (differences d = reference − other).

    Attributes:
        n: units with a finite value for both methods.
        median_difference: median of d over those units.
        rank_biserial: matched-pairs rank-biserial correlation (T₊ − T₋) / (T₊ + T₋) of the Wilcoxon rank sums
            over the non-zero d; +1 = every non-zero d positive, −1 = every one negative, 0 = balanced.
        p_value: two-sided Wilcoxon signed-rank p (``scipy.stats.wilcoxon``, zero differences dropped).
    """

    n: int
    median_difference: float
    rank_biserial: float
    p_value: float


def paired_comparison(reference: Sequence[float] | np.ndarray, other: Sequence[float] | np.ndarray) -> PairedComparison:
    """Wilcoxon signed-rank test and effect size of ``reference`` against ``other`` on the same units.

    Units where either value is NaN are dropped. When every difference is zero there is nothing to rank:
    rank-biserial 0 and p = 1.

    Raises:
        ValueError: the two sequences differ in length, are not 1-D, or share no unit with two finite values.
    """
    first = np.asarray(reference, dtype=np.float64)
    second = np.asarray(other, dtype=np.float64)
    if first.ndim != 1 or second.ndim != 1:
        raise ValueError(f"paired_comparison needs two 1-D sequences, got reference of shape {first.shape} and other of shape {second.shape}.")
    if first.size != second.size:
        raise ValueError(f"paired_comparison compares the same units: reference has {first.size} values, other has {second.size}; "
                         "pass one value per unit to both.")
    usable = np.isfinite(first) & np.isfinite(second)
    if not usable.any():
        raise ValueError(f"paired_comparison: none of the {first.size} units has a finite value for both methods.")
    differences = first[usable] - second[usable]
    nonzero = differences[differences != 0]
    if nonzero.size == 0:
        return PairedComparison(int(differences.size), 0.0, 0.0, 1.0)
    ranks = rankdata(np.abs(nonzero))
    rank_biserial = (ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum()
    p_value = wilcoxon(differences, zero_method="wilcox", alternative="two-sided").pvalue
    return PairedComparison(int(differences.size), float(np.median(differences)), float(rank_biserial), float(p_value))


def map_correlations(maps: torch.Tensor | np.ndarray) -> np.ndarray:
    """Pearson correlation matrix ``(K, K)`` of K maps ``(K, H, W)`` (float64; 1 = the same map up to scale and offset)."""
    array = maps.detach().cpu().double().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps, dtype=np.float64)
    if array.ndim < 2 or array.shape[0] < 2:
        raise ValueError(f"map correlations need at least two maps (K, H, W), got shape {tuple(array.shape)}.")
    return np.corrcoef(array.reshape(len(array), -1))


def mean_map_correlation(maps: torch.Tensor | np.ndarray) -> float:
    """Mean Pearson correlation over all pairs of maps ``(K, H, W)``, K ≥ 2."""
    correlation = map_correlations(maps)
    return float(correlation[np.triu_indices(len(correlation), 1)].mean())
