"""Cascading model randomisation on a tiny seeded classifier: groups top-down, exact re-initialisation, maps compared."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fame_utils.evaluation.randomisation import block_groups, cascading_randomisation, map_similarity, randomised_copy, summarise_randomisation
from fame_utils.fame import FameConfig, explain_class
from tiny_models import cam_classifier

# cam_classifier: features.0 conv, features.1 BN, features.2 ReLU, features.3 conv, features.4 ReLU, pool, flatten, head.
STAGES = ["features.2", "features.3"]
GROUPS = [("output", ["head"]), ("features.3", ["features.3"]), ("features.2", ["features.0", "features.1"])]


def _trained() -> torch.nn.Module:
    """cam_classifier with a non-default BatchNorm scale too, so every BatchNorm tensor differs from its initial value."""
    model = cam_classifier()
    with torch.no_grad():
        model.features[1].weight.copy_(torch.linspace(0.5, 1.5, 6))
    return model


def _changed_keys(first: torch.nn.Module, second: torch.nn.Module) -> set[str]:
    a, b = first.state_dict(), second.state_dict()
    return {key for key in a if not torch.equal(a[key], b[key])}


def _group_keys(model: torch.nn.Module, members: list[str]) -> set[str]:
    return {key for key in model.state_dict() if any(key.startswith(name + ".") for name in members) and not key.endswith("num_batches_tracked")}


def test_groups_run_from_the_output_down_and_cover_every_module_with_state() -> None:
    assert block_groups(_trained(), STAGES) == GROUPS
    with pytest.raises(ValueError, match="unknown: \\['features.9'\\]"):
        block_groups(_trained(), ["features.9"])
    with pytest.raises(ValueError, match="shallow → deep"):
        block_groups(_trained(), ["features.3", "features.2"])


def test_stage_k_reinitialises_exactly_the_top_k_groups_and_leaves_the_model_untouched() -> None:
    model = _trained()
    untouched = _trained()
    assert _changed_keys(model, randomised_copy(model, GROUPS, 0)) == set()
    for count in range(1, len(GROUPS) + 1):
        randomised = randomised_copy(model, GROUPS, count, seed=3)
        expected = set().union(*(_group_keys(model, members) for _, members in GROUPS[:count]))
        assert _changed_keys(model, randomised) == expected
        assert not randomised.training
    assert _changed_keys(model, untouched) == set()


def test_batchnorm_of_a_randomised_group_is_reset_like_a_fresh_network() -> None:
    bn = randomised_copy(_trained(), GROUPS, 3).features[1]
    assert torch.equal(bn.running_mean, torch.zeros(6)) and torch.equal(bn.running_var, torch.ones(6))
    assert torch.equal(bn.weight, torch.ones(6)) and torch.equal(bn.bias, torch.zeros(6))


def test_same_seed_same_weights_and_each_stage_keeps_the_random_weights_of_the_previous_one() -> None:
    model = _trained()
    assert _changed_keys(randomised_copy(model, GROUPS, 2, seed=5), randomised_copy(model, GROUPS, 2, seed=5)) == set()
    assert _changed_keys(randomised_copy(model, GROUPS, 2, seed=5), randomised_copy(model, GROUPS, 2, seed=6)) != set()
    assert _changed_keys(randomised_copy(model, GROUPS, 1, seed=5), randomised_copy(model, GROUPS, 2, seed=5)) == _group_keys(model, ["features.3"])
    state = torch.random.get_rng_state()
    randomised_copy(model, GROUPS, 3)
    assert torch.equal(torch.random.get_rng_state(), state)
    with pytest.raises(ValueError, match="between 0 and 3"):
        randomised_copy(model, GROUPS, 4)


def test_map_similarity_is_one_for_equal_maps_minus_one_for_reversed_and_zero_for_a_flat_map() -> None:
    maps = torch.rand(2, 9, 9, generator=torch.Generator().manual_seed(0))
    rho, ssim = map_similarity(maps, maps)
    np.testing.assert_allclose(rho, [1.0, 1.0])
    np.testing.assert_allclose(ssim, [1.0, 1.0])
    rho, ssim = map_similarity(maps, 1.0 - maps)
    np.testing.assert_allclose(rho, [-1.0, -1.0])
    assert np.all(ssim < 0)
    rho, _ = map_similarity(maps, torch.zeros_like(maps))
    np.testing.assert_array_equal(rho, [0.0, 0.0])
    with pytest.raises(ValueError, match="one shape"):
        map_similarity(maps, maps[:1])


def test_cascade_starts_at_similarity_one_and_full_randomisation_moves_fames_maps() -> None:
    model = _trained()
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    config = FameConfig(iterations=3, blur_kernel=5, blur_sigma=1.0)
    explainers = {"FAME": lambda net: explain_class(net, images, [0, 1, 2], config)}
    records, maps = cascading_randomisation(model, GROUPS, explainers, counts=[3], progress=False)
    assert sorted(maps) == [0, 3] and len(records) == 2 * 3
    torch.testing.assert_close(maps[0]["FAME"], explain_class(model, images, [0, 1, 2], config))
    trained = records[records.randomised == 0]
    assert (trained["last group"] == "none (trained)").all() and np.allclose(trained[["spearman", "ssim"]], 1.0)
    assert (records[records.randomised == 3]["last group"] == "features.2").all()
    assert records[records.randomised == 3].spearman.mean() < 0.9
    summary = summarise_randomisation(records)
    full = summary[(summary.randomised == 3) & (summary.metric == "spearman")].iloc[0]
    assert full["mean"] == pytest.approx(records[records.randomised == 3].spearman.mean())
    assert full["low"] <= full["mean"] <= full["high"]
    with pytest.raises(ValueError, match="0 … 3"):
        cascading_randomisation(model, GROUPS, explainers, counts=[4], progress=False)
    with pytest.raises(ValueError, match="at least one explainer"):
        cascading_randomisation(model, GROUPS, {}, counts=[1], progress=False)
