"""Percentile deletion/insertion masks and the normalised AUC shared by both tasks' metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fame_utils.metrics import DEFAULT_PERCENTS, normalized_auc, percentile_masks
from fame_utils.metrics.masks import mask_extent


def test_default_percents_are_the_papers_eleven_ratios():
    assert DEFAULT_PERCENTS == (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def test_masks_remove_the_top_p_percent_of_distinct_values():
    # 100 distinct values 0..99: at P the top k_P = P values are removed by deletion and shown by insertion.
    saliency = np.random.default_rng(0).permutation(100).astype(np.float32).reshape(1, 100)
    masks = percentile_masks(saliency, DEFAULT_PERCENTS)
    assert masks.deletion.sum(axis=(-1, -2)).tolist() == [100 - p for p in DEFAULT_PERCENTS]
    for index, p in enumerate(DEFAULT_PERCENTS):
        assert sorted(saliency[masks.insertion[index]].tolist()) == list(range(100 - p, 100))


def test_masks_are_complementary():
    saliency = torch.rand(3, 9, 7, generator=torch.Generator().manual_seed(1))
    masks = percentile_masks(saliency, DEFAULT_PERCENTS)
    assert masks.deletion.shape == (3, 11, 9, 7)
    assert masks.deletion.dtype == torch.bool
    assert torch.equal(masks.insertion, ~masks.deletion)


def test_pixel_count_rounds_half_up():
    # N = 4: k_P = ⌊4P/100 + ½⌋ → P = 10: 0, 12.5: 1, 20: 1, 50: 2, 62.5: 3.
    saliency = np.array([[0.0, 1.0, 2.0, 3.0]])
    masks = percentile_masks(saliency, [10, 12.5, 20, 50, 62.5])
    assert masks.insertion.sum(axis=(-1, -2)).tolist() == [0, 1, 1, 2, 3]
    assert masks.insertion[3].tolist() == [[False, False, True, True]]


def test_edges_p0_keeps_all_and_p100_removes_all():
    saliency = np.array([[0.5, 0.2, 0.9], [0.2, 0.7, 0.3]])
    masks = percentile_masks(saliency, [0, 100])
    assert masks.deletion[0].all() and not masks.insertion[0].any()
    assert not masks.deletion[1].any() and masks.insertion[1].all()


def test_mask_extent_names_the_rows_that_keep_every_pixel_or_none():
    masks = percentile_masks(torch.rand(2, 5, 4, generator=torch.Generator().manual_seed(2)), [0, 5, 50, 95, 100])
    full, empty = mask_extent(masks.deletion.flatten(0, 1))
    assert full.tolist() == [True, False, False, False, False] * 2
    assert empty.tolist() == [False, False, False, False, True] * 2


def test_clipped_map_ranks_its_zeros_in_a_seeded_random_order():
    # A CAM-like map with 14 exact zeros: the two positive pixels go first, then the zeros one by one,
    # so insertion at P = 100 shows the whole image.
    saliency = np.zeros((4, 4))
    saliency[0, :2] = [1.0, 0.5]
    masks = percentile_masks(saliency, [12.5, 50, 100])
    assert masks.insertion[0].sum() == 2 and masks.insertion[0][0, :2].all()
    assert masks.insertion[1].sum() == 8 and masks.insertion[1][0, :2].all()
    assert masks.insertion[2].all()
    again = percentile_masks(saliency, [50])
    assert np.array_equal(again.insertion[0], masks.insertion[1])
    other_seeds = [percentile_masks(saliency, [50], tie_seed=seed).insertion[0] for seed in (1, 2, 3)]
    assert any(not np.array_equal(other, masks.insertion[1]) for other in other_seeds)


@pytest.mark.parametrize("level", [0.0, 0.4, 1.0])
def test_constant_map_loses_exactly_k_pixels(level):
    saliency = torch.full((5, 6), level)
    masks = percentile_masks(saliency, DEFAULT_PERCENTS)
    assert masks.deletion.sum(dim=(-1, -2)).tolist() == [30 - int(np.floor(0.3 * p + 0.5)) for p in DEFAULT_PERCENTS]


def test_a_maps_masks_do_not_depend_on_the_other_maps_of_the_stack():
    first = np.zeros((4, 4))
    first[1, 1] = 1.0
    batch = np.stack([first, np.arange(16.0).reshape(4, 4), first])
    masks = percentile_masks(batch, [50])
    single = percentile_masks(first, [50])
    assert masks.deletion[1, 0].sum() == 8
    assert np.array_equal(masks.deletion[0], single.deletion) and np.array_equal(masks.deletion[2], single.deletion)


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
