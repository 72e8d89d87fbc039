"""Notebook 08 (controls) recorded its ablation, the e₊/e₋ rank correlations and the closing claims table."""

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
    assert len(claims) == 3 and all(isinstance(row["holds here"], bool) for row in claims)
    assert claims[1]["holds here"] is False  # e₊ and e₋ are not different maps after one step or a few
    assert set(results["deletion_effects"]) == {"e+ (FAME)", "e- (FAME)", "signed e+ − e-", "random"}
