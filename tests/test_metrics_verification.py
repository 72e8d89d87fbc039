"""Verification metrics: EER threshold, accuracy, probe deletion/insertion sweep (docs/decisions.md#eer-threshold, #deletion-insertion-probe)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fame_utils.metrics.verification import (
    bootstrap_auc_interval,
    cosine_scores,
    deletion_insertion,
    eer_threshold,
    verification_accuracy,
)
from tiny_models import FlattenEmbedding


def test_eer_separable_scores_give_zero_at_the_largest_separating_threshold():
    threshold, eer = eer_threshold([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
    assert (threshold, eer) == (0.8, 0.0)


def test_eer_overlapping_scores_hand_computed():
    # t = 0.6: FMR = 1/3 (impostor 0.7), FNMR = 1/3 (genuine 0.4) — the first zero gap going down.
    threshold, eer = eer_threshold([0.9, 0.6, 0.4, 0.5, 0.3, 0.7], [1, 1, 1, 0, 0, 0])
    assert threshold == 0.6
    assert eer == pytest.approx(1 / 3)


def test_eer_ties_resolve_to_the_largest_threshold():
    # |FMR − FNMR| = 0.5 at t = 0.8 (0, 1/2) and at t = 0.5 (1/2, 0): the first (largest) wins.
    threshold, eer = eer_threshold([0.8, 0.5, 0.5, 0.2], [1, 1, 0, 0])
    assert threshold == 0.8
    assert eer == pytest.approx(0.25)


def test_eer_with_repeated_scores_uses_unique_candidates():
    # t = 0.7: FMR = 1/2, FNMR = 1/3 (gap 1/6); t = 0.3: FMR = 1/2, FNMR = 0 (gap 1/2).
    threshold, eer = eer_threshold([0.7, 0.7, 0.3, 0.7, 0.1], [1, 1, 1, 0, 0])
    assert threshold == 0.7
    assert eer == pytest.approx(5 / 12)


def test_midpoint_rule_sits_halfway_to_the_next_lower_score():
    # EER candidate 0.6 (see above); the next lower unique score is 0.5 → θ = 0.55, same EER.
    scores, labels = [0.9, 0.6, 0.4, 0.5, 0.3, 0.7], [1, 1, 1, 0, 0, 0]
    threshold, eer = eer_threshold(scores, labels, rule="midpoint")
    assert threshold == pytest.approx(0.55) and eer == pytest.approx(1 / 3)
    assert verification_accuracy(scores, labels, threshold) == verification_accuracy(scores, labels, 0.6)
    # No lower score (one unique score): θ = that score − ½.
    assert eer_threshold([0.4, 0.4], [1, 0], rule="midpoint")[0] == pytest.approx(-0.1)


def test_midpoint_threshold_survives_float_noise_on_the_weakest_genuine_pair():
    scores, labels = np.array([0.9, 0.59328, 0.4, 0.2]), np.array([1, 1, 0, 0])
    noisy = scores.copy()
    noisy[1] -= 1.2e-7
    on_score, _ = eer_threshold(scores, labels)
    midpoint, _ = eer_threshold(scores, labels, rule="midpoint")
    assert verification_accuracy(noisy, labels, on_score) == 0.75
    assert verification_accuracy(noisy, labels, midpoint) == verification_accuracy(scores, labels, midpoint) == 1.0
    with pytest.raises(ValueError, match="rule"):
        eer_threshold(scores, labels, rule="median")


def test_eer_needs_both_classes_and_matching_lengths():
    with pytest.raises(ValueError, match="both genuine"):
        eer_threshold([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="same length"):
        eer_threshold([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="labels must be 1"):
        eer_threshold([0.1, 0.2], [2, 0])


def test_paper_faithful_rounds_the_threshold_and_can_flip_a_borderline_decision():
    scores, labels = [0.123456, 0.05], [1, 0]
    exact, _ = eer_threshold(scores, labels)
    rounded, _ = eer_threshold(scores, labels, paper_faithful=True)
    assert exact == 0.123456 and rounded == 0.1235
    assert verification_accuracy(scores, labels, exact) == 1.0
    assert verification_accuracy(scores, labels, rounded) == 0.5


def test_accuracy_boundary_is_inclusive():
    assert verification_accuracy([0.5], [1], 0.5) == 1.0
    assert verification_accuracy([0.5], [0], 0.5) == 0.0
    assert verification_accuracy([0.49, 0.5, 0.51, 0.2], [1, 1, 0, 0], 0.5) == 0.5


def _pair(map_values: torch.Tensor):
    ones = torch.ones(1, 1, 10, 10)
    return ones, ones.clone(), map_values.reshape(1, 10, 10)


def test_deletion_insertion_curves_and_auc_hand_computed():
    gallery, probe, ranking = _pair(torch.arange(100.0))
    curves = deletion_insertion(FlattenEmbedding(), gallery, probe, ranking, [1], threshold=0.5)
    kept_deletion = np.array([100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 0])  # P = 100 removes every pixel
    kept_insertion = 100 - kept_deletion
    np.testing.assert_allclose(curves.deletion_scores[:, 0], np.sqrt(kept_deletion / 100), atol=1e-6)
    np.testing.assert_allclose(curves.insertion_scores[:, 0], np.sqrt(kept_insertion / 100), atol=1e-6)
    # Correct while sqrt(k/100) ≥ 0.5, i.e. k ≥ 25: deletion up to P = 70, insertion from P = 30.
    np.testing.assert_array_equal(curves.deletion, [1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(curves.insertion, [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    assert curves.deletion_auc == pytest.approx(75.0)  # 70 flat + 5 (ramp 70 → 80), over 100
    assert curves.insertion_auc == pytest.approx(75.0)


def test_constant_map_still_deletes_k_pixels_and_insertion_ends_at_the_clean_score():
    gallery, probe, _ = _pair(torch.zeros(100))
    flat_map = torch.zeros(1, 10, 10)  # every value tied: the seeded tie order ranks them
    curves = deletion_insertion(FlattenEmbedding(), gallery, probe, flat_map, [1], threshold=0.5)
    np.testing.assert_allclose(curves.deletion_scores[:, 0], np.sqrt(np.arange(100, -1, -10) / 100), atol=1e-6)
    np.testing.assert_allclose(curves.insertion_scores[:, 0], np.sqrt(np.arange(0, 101, 10) / 100), atol=1e-6)


def test_clipped_maps_insert_everything_so_the_curve_ends_at_clean_accuracy():
    generator = torch.Generator().manual_seed(4)
    gallery = torch.rand(3, 1, 10, 10, generator=generator)
    probe = torch.rand(3, 1, 10, 10, generator=generator)
    clipped = torch.relu(torch.randn(3, 10, 10, generator=generator) - 1.0)  # mostly exact zeros
    assert float((clipped == 0).float().mean()) > 0.7
    curves = deletion_insertion(FlattenEmbedding(), gallery, probe, clipped, [1, 0, 1], threshold=0.8)
    clean = cosine_scores(FlattenEmbedding(), gallery, probe).numpy()
    np.testing.assert_allclose(curves.insertion_scores[-1], clean, atol=1e-6)
    assert curves.insertion[-1] == verification_accuracy(clean, [1, 0, 1], 0.8)


def test_deletion_only_touches_the_probe():
    generator = torch.Generator().manual_seed(0)
    gallery = torch.rand(2, 1, 10, 10, generator=generator)
    probe = torch.rand(2, 1, 10, 10, generator=generator)
    ranking = torch.rand(2, 10, 10, generator=generator)
    gallery_before = gallery.clone()
    curves = deletion_insertion(FlattenEmbedding(), gallery, probe, ranking, [1, 0], threshold=0.5)
    assert torch.equal(gallery, gallery_before)
    clean = cosine_scores(FlattenEmbedding(), gallery, probe).numpy()
    np.testing.assert_allclose(curves.deletion_scores[0], clean, atol=1e-6)  # P = 0 deletes nothing


def test_deletion_insertion_rejects_mismatched_inputs():
    gallery, probe, ranking = _pair(torch.arange(100.0))
    with pytest.raises(ValueError, match="similar_maps"):
        deletion_insertion(FlattenEmbedding(), gallery, probe, ranking[:, :5], [1], 0.5)
    with pytest.raises(ValueError, match="same length"):
        deletion_insertion(FlattenEmbedding(), gallery, probe, ranking, [1, 0], 0.5)


def test_bootstrap_interval_brackets_the_auc_and_collapses_when_pairs_agree():
    gallery, probe, ranking = _pair(torch.arange(100.0))
    same = deletion_insertion(FlattenEmbedding(), gallery.repeat(3, 1, 1, 1), probe.repeat(3, 1, 1, 1), ranking.repeat(3, 1, 1), [1, 1, 1], 0.5)
    assert bootstrap_auc_interval(same, "deletion", n_boot=50) == pytest.approx((75.0, 75.0))
    assert same.subset([2, 0]).deletion_scores.shape == (11, 2)
    mixed = deletion_insertion(FlattenEmbedding(), gallery.repeat(2, 1, 1, 1), probe.repeat(2, 1, 1, 1), ranking.repeat(2, 1, 1), [1, 0], 0.5)
    low, high = bootstrap_auc_interval(mixed, "deletion", n_boot=200)
    assert low <= mixed.deletion_auc <= high and low < high
    np.testing.assert_array_equal(mixed.subset([1]).labels, [0])
    assert math.isfinite(low)


class CountingEmbedding(FlattenEmbedding):
    """:class:`FlattenEmbedding` that counts the images it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return super().forward(x)


def test_whole_and_fully_removed_probes_are_embedded_once():
    generator = torch.Generator().manual_seed(2)
    gallery, probe = torch.rand(3, 1, 10, 10, generator=generator), torch.rand(3, 1, 10, 10, generator=generator)
    ranking = torch.rand(3, 10, 10, generator=generator)
    model = CountingEmbedding()
    curves = deletion_insertion(model, gallery, probe, ranking, [1, 0, 1], threshold=0.5, percents=[0, 30, 60, 100])
    # 3 gallery + 3 clean probes + 1 black image + (P = 30, 60) × 2 sweeps × 3 probes.
    assert model.images == 3 + 3 + 1 + 2 * 2 * 3
    clean = cosine_scores(FlattenEmbedding(), gallery, probe).numpy()
    np.testing.assert_allclose(curves.deletion_scores[0], clean, atol=1e-6)
    np.testing.assert_allclose(curves.insertion_scores[-1], clean, atol=1e-6)
    np.testing.assert_array_equal(curves.deletion_scores[-1], np.zeros(3))  # a black probe has no direction: cosine 0
    reference = deletion_insertion(FlattenEmbedding(), gallery, probe, ranking, [1, 0, 1], threshold=0.5, percents=[30])
    np.testing.assert_allclose(curves.insertion_scores[1], reference.insertion_scores[0], atol=1e-6)


def test_a_sweep_decided_at_another_threshold_keeps_its_scores():
    gallery, probe, ranking = _pair(torch.arange(100.0))
    curves = deletion_insertion(FlattenEmbedding(), gallery, probe, ranking, [1], threshold=0.5)
    stricter = curves.with_threshold(0.9)
    assert stricter.threshold == 0.9 and stricter.deletion_scores is curves.deletion_scores
    # Correct while sqrt(k/100) ≥ 0.9, i.e. k ≥ 81: deletion only up to P = 10.
    np.testing.assert_array_equal(stricter.deletion, [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
