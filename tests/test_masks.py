"""Percentile deletion/insertion masks and the normalised AUC shared by both tasks' metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fame_utils.metrics import DEFAULT_PERCENTS, normalized_auc, percentile_masks


def test_default_percents_are_the_papers_eleven_ratios():
    assert DEFAULT_PERCENTS == (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def test_masks_remove_the_requested_fraction_of_distinct_values():
    # 101 distinct values 0..100: percentile(A, 100 − P) is exactly the value 100 − P, so deletion
    # keeps the 101 − P pixels with values ≤ 100 − P and removes the top P.
    saliency = np.random.default_rng(0).permutation(101).astype(np.float32).reshape(1, 101)
    masks = percentile_masks(saliency, DEFAULT_PERCENTS)
    kept = masks.deletion.sum(axis=(-1, -2))
    assert kept.tolist() == [101 - p for p in DEFAULT_PERCENTS]
    for index, p in enumerate(DEFAULT_PERCENTS):
        removed = saliency[~masks.deletion[index]]
        assert sorted(removed.tolist()) == list(range(101 - p, 101))


def test_masks_are_complementary():
    saliency = torch.rand(3, 9, 7, generator=torch.Generator().manual_seed(1))
    masks = percentile_masks(saliency, DEFAULT_PERCENTS)
    assert masks.deletion.shape == (3, 11, 9, 7)
    assert masks.deletion.dtype == torch.bool
    assert torch.equal(masks.insertion, ~masks.deletion)


def test_threshold_uses_numpys_linear_interpolation():
    saliency = np.array([[0.0, 1.0, 2.0, 3.0]])
    # percentile(A, 75) = 2.25: deletion keeps 0, 1, 2 and removes 3.
    masks = percentile_masks(saliency, [25])
    assert masks.deletion.tolist() == [[[True, True, True, False]]]


def test_edges_p0_keeps_all_and_p100_keeps_exactly_the_minimum():
    saliency = np.array([[0.5, 0.2, 0.9], [0.2, 0.7, 0.3]])
    masks = percentile_masks(saliency, [0, 100])
    assert masks.deletion[0].all() and not masks.insertion[0].any()
    assert masks.deletion[1].tolist() == [[False, True, False], [True, False, False]]
    assert masks.insertion[1].tolist() == [[True, False, True], [False, True, True]]


def test_single_minimum_pixel_survives_at_p100():
    saliency = np.random.default_rng(2).random((8, 8))
    masks = percentile_masks(saliency, [100])
    assert masks.deletion.sum() == 1
    assert saliency[masks.deletion[0]][0] == saliency.min()


def test_ties_at_the_threshold_stay_kept_for_deletion():
    # A CAM-like map with many exact zeros: deletion can never remove the zeros.
    saliency = np.zeros((4, 4))
    saliency[0, :2] = [1.0, 0.5]
    masks = percentile_masks(saliency, DEFAULT_PERCENTS)
    zeros = saliency == 0
    assert masks.deletion[:, zeros].all()
    assert masks.deletion[-1].sum() == 14


@pytest.mark.parametrize("level", [0.0, 0.4, 1.0])
def test_constant_map_is_never_deleted_from(level):
    saliency = torch.full((5, 6), level)
    masks = percentile_masks(saliency, DEFAULT_PERCENTS)
    assert masks.deletion.all()
    assert not masks.insertion.any()


def test_each_map_of_a_batch_uses_its_own_threshold():
    first = np.arange(16.0).reshape(4, 4)
    batch = np.stack([first, 100 + first[::-1]])
    masks = percentile_masks(batch, [50])
    single = percentile_masks(batch[1], [50])
    assert masks.deletion[0, 0].sum() == masks.deletion[1, 0].sum() == 8
    assert np.array_equal(masks.deletion[1], single.deletion)


def test_bad_inputs_raise_named_errors():
    with pytest.raises(ValueError, match="percents"):
        percentile_masks(np.ones((3, 3)), [110])
    with pytest.raises(ValueError, match="finite"):
        percentile_masks(np.array([[np.nan, 1.0]]), [10])
    with pytest.raises(ValueError, match="shape"):
        percentile_masks(np.ones(5), [10])
    with pytest.raises(TypeError, match="saliency"):
        percentile_masks([[1.0, 2.0]], [10])


def test_flat_curve_auc_equals_its_level():
    assert normalized_auc([0.7] * 11, DEFAULT_PERCENTS) == pytest.approx(0.7)


def test_auc_is_the_trapezoid_over_the_percent_range():
    # Linear rise 0 → 1 over [0, 100] has mean 0.5; on [20, 60] the trapezoid of (1, 3, 2) is 90 / 40.
    assert normalized_auc(np.linspace(0, 1, 11), DEFAULT_PERCENTS) == pytest.approx(0.5)
    assert normalized_auc([1.0, 3.0, 2.0], [20, 40, 60]) == pytest.approx((20 * 2 + 20 * 2.5) / 40)


def test_auc_rejects_mismatched_or_unsorted_inputs():
    with pytest.raises(ValueError, match="same length"):
        normalized_auc([1.0, 2.0], [0, 50, 100])
    with pytest.raises(ValueError, match="increasing"):
        normalized_auc([1.0, 2.0], [50, 0])
    with pytest.raises(ValueError, match="finite"):
        normalized_auc([1.0, float("nan")], [0, 100])
