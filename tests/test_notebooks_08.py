"""Notebook 08 (controls) recorded its ablation, the model-randomisation check, the e₊/e₋ rank correlations and the closing claims table."""

from __future__ import annotations

import pytest

from conftest import smoke_results

pytestmark = pytest.mark.notebooks

DIRECTIONS = ["LOTS (FAME)", "random direction", "gradient sign", "unnormalised gradient", "single step"]


@pytest.fixture(scope="module")
def results() -> dict:
    return smoke_results("08_controls")


def test_ablation_covers_every_direction_and_lots_maps_are_fames(results: dict) -> None:
    assert set(results["ablation_means"]) == set(DIRECTIONS)
    assert results["spearman_to_lots"]["LOTS (FAME)"] == pytest.approx(1.0)
    assert results["spearman_to_lots"]["random direction"] < 0.99


def test_one_step_e_plus_and_e_minus_are_the_same_map(results: dict) -> None:
    # ∇(1 − s) = −∇s and the map keeps |Δ|: after one step the two maps coincide for every pair.
    assert results["single_step_min_spearman"] > 0.999
    by_steps = results["spearman_by_steps"]
    assert len(by_steps) >= 2 and by_steps["1"] == pytest.approx(1.0, abs=1e-3)


def test_closing_table_states_each_claim_with_a_verdict(results: dict) -> None:
    claims = results["claims"]
    assert len(claims) == 5 and all(isinstance(row["holds here"], bool) for row in claims)
    assert claims[1]["holds here"] is False  # e₊ and e₋ are not different maps after one step or a few
    assert set(results["deletion_effects"]) == {"e+ (FAME)", "e- (FAME)", "signed e+ − e-", "random"}


def test_randomisation_covers_both_networks_and_starts_at_the_trained_maps(results: dict) -> None:
    assert set(results["randomisation"]) == {"Lite0", "SFace"}
    assert set(results["randomisation"]["Lite0"]) == {"FAME", "Grad-CAM", "FullGrad"}
    assert set(results["randomisation"]["SFace"]) == {"FAME", "Grad-CAM"}  # the baselines have no similarity FullGrad
    trained = [row for row in results["randomisation_summary"] if row["randomised"] == 0]
    assert len(trained) == 2 * 5  # 5 network × method lines, two metrics each
    assert all(row["mean"] == pytest.approx(1.0) and row["low"] == pytest.approx(1.0) for row in trained)


def test_fame_maps_move_away_from_the_trained_maps_once_every_group_is_random(results: dict) -> None:
    for network, methods in results["randomisation"].items():
        assert methods["FAME"]["spearman"] < 0.9, network
        assert methods["FAME"]["ssim"] < 0.9, network
        assert all(m["passes"] == (m["spearman"] < 0.5) for m in methods.values())
    assert [row["holds here"] for row in results["claims"][3:]] == [results["randomisation"][n]["FAME"]["passes"] for n in ("Lite0", "SFace")]
