"""Notebook 08 helpers: direction ablation, e₊/e₋ perturbations, signed map, region deletion (tiny seeded models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fame_utils.fame import FameConfig, explain_class
from fame_utils.workbook import nb08_controls as controls
from tiny_models import FlattenEmbedding, cam_classifier

CONFIG = FameConfig(iterations=4, blur_kernel=5, blur_sigma=1.0)


def test_lots_variant_is_fame_and_single_step_is_fame_with_one_step():
    model = cam_classifier()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    maps = controls.direction_ablation_maps(model, images, [0, 2], CONFIG, progress=False)
    assert list(maps) == list(controls.DIRECTIONS)
    torch.testing.assert_close(maps["LOTS (FAME)"], explain_class(model, images, [0, 2], CONFIG), atol=1e-4, rtol=0)  # channels_last rounding
    torch.testing.assert_close(maps["single step"], explain_class(model, images, [0, 2], CONFIG.replace(iterations=1)), atol=1e-4, rtol=0)  # channels_last rounding
    assert not torch.allclose(maps["random direction"], maps["LOTS (FAME)"], atol=1e-2)
    assert all(float(m.min()) >= 0 and float(m.max()) <= 1 for m in maps.values())
    again = controls.direction_ablation_maps(model, images, [0, 2], CONFIG, progress=False)
    assert torch.equal(again["random direction"], maps["random direction"])
    with pytest.raises(ValueError, match="one class per image"):
        controls.direction_ablation_maps(model, images, [0], CONFIG, progress=False)


def test_equal_perturbations_give_a_flat_signed_map_and_spearman_one_for_identical_maps():
    probes = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    same = probes + 0.1
    flat = controls.signed_map(probes, {"similar": same, "dissimilar": same}, CONFIG)
    assert torch.equal(flat, torch.zeros_like(flat))
    maps = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(controls.spearman_per_pair(maps, maps), [1.0, 1.0])
    np.testing.assert_allclose(controls.spearman_per_pair(maps, -maps), [-1.0, -1.0])


def test_deleting_the_shared_region_lowers_a_flat_embeddings_similarity():
    # FlattenEmbedding: s = cos(gallery, probe). Gallery lit on the left half only; a map marking the left
    # half removes all shared evidence (s → 0), a map marking the right half leaves s unchanged.
    gallery = torch.zeros(1, 1, 10, 10)
    gallery[..., :5] = 1.0
    probe = torch.ones(1, 1, 10, 10)
    left = torch.zeros(1, 10, 10)
    left[..., :5] = 1.0
    clean = float(torch.nn.functional.cosine_similarity(gallery.flatten(1), probe.flatten(1)))
    effect_left = controls.region_deletion_effect(FlattenEmbedding(), gallery, probe, left, share=50)
    effect_right = controls.region_deletion_effect(FlattenEmbedding(), gallery, probe, 1.0 - left, share=50)
    np.testing.assert_allclose(effect_left, [-clean], atol=1e-6)
    np.testing.assert_allclose(effect_right, [1.0 - clean], atol=1e-6)
