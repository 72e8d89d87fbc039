"""The one bootstrap interval helper (scipy.stats.bootstrap) and the one map correlation helper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fame_utils.metrics.stats import bootstrap_ci, bootstrap_interval, map_correlations, mean_map_correlation


def test_bootstrap_interval_is_the_seeded_percentile_bootstrap_of_the_statistic() -> None:
    values = np.random.default_rng(1).normal(size=23)
    low, high = bootstrap_interval(lambda drawn: values[drawn].max(axis=-1), values.size, level=0.9, n_resamples=500, seed=7)
    # The same draws by hand: 500 resamples of 23 indices from default_rng(7), then the 5 % and 95 % quantiles.
    drawn = np.random.default_rng(7).integers(0, values.size, size=(500, values.size))
    expected = np.quantile(values[drawn].max(axis=1), [0.05, 0.95])
    assert (low, high) == pytest.approx(tuple(expected), abs=1e-12)
    assert bootstrap_interval(lambda d: values[d].max(axis=-1), values.size, 0.9, 500, seed=7) == (low, high)
    assert bootstrap_interval(lambda d: values[d].max(axis=-1), values.size, 0.9, 500, seed=8) != (low, high)


def test_bootstrap_interval_of_one_unit_evaluates_the_statistic_on_copies_of_it() -> None:
    calls = []

    def statistic(drawn: np.ndarray) -> np.ndarray:
        calls.append(drawn.copy())
        return np.arange(len(drawn), dtype=float)

    assert bootstrap_interval(statistic, 1, level=0.5, n_resamples=101) == (25.0, 75.0)
    assert calls[0].shape == (101, 1) and not calls[0].any()


@pytest.mark.parametrize("n, resamples, level", [(0, 10, 0.9), (3, 0, 0.9), (3, 10, 1.0), (3, 10, 0.0)])
def test_bootstrap_interval_rejects_bad_arguments(n: int, resamples: int, level: float) -> None:
    with pytest.raises(ValueError, match="need n"):
        bootstrap_interval(lambda drawn: drawn.mean(axis=-1), n, level, resamples)


def test_bootstrap_ci_brackets_the_mean_and_is_seeded() -> None:
    values = np.random.default_rng(0).normal(1.0, 0.5, size=40)
    mean, low, high = bootstrap_ci(values, seed=3)
    assert mean == pytest.approx(values.mean())
    assert low < mean < high
    assert bootstrap_ci(values, seed=3) == (mean, low, high)
    # The interval is about ±1.96 standard errors wide.
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.2)
    assert bootstrap_ci([2.5]) == (2.5, 2.5, 2.5)
    with pytest.raises(ValueError, match="finite"):
        bootstrap_ci([])


def test_map_correlations_of_scaled_opposite_and_unrelated_maps() -> None:
    base = torch.arange(16.0).reshape(4, 4)
    checker = torch.tensor([[1.0, -1.0] * 2, [-1.0, 1.0] * 2] * 2)
    matrix = map_correlations(torch.stack([base, 2 * base + 1, -base, checker]))
    assert matrix.shape == (4, 4)
    assert matrix[0, 1] == pytest.approx(1.0) and matrix[0, 2] == pytest.approx(-1.0)
    assert matrix[0, 3] == pytest.approx(float(np.corrcoef(base.flatten().numpy(), checker.flatten().numpy())[0, 1]))
    assert np.allclose(matrix, matrix.T)


def test_mean_map_correlation_of_identical_opposite_and_single_maps() -> None:
    base = torch.arange(16.0).reshape(4, 4)
    assert mean_map_correlation(torch.stack([base, 2 * base + 1])) == pytest.approx(1.0)
    assert mean_map_correlation(torch.stack([base, -base, base])) == pytest.approx(-1 / 3)
    with pytest.raises(ValueError, match="at least two"):
        mean_map_correlation(base[None])
