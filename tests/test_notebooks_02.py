"""Claims of notebook 02 (Building FAME step by step), checked on its smoke run's recorded numbers."""

from __future__ import annotations

import pytest

from conftest import smoke_results

pytestmark = pytest.mark.notebooks

STEM = "02_building_fame"


@pytest.fixture(scope="module")
def results() -> dict:
    return smoke_results(STEM)


def test_one_step_moves_the_strongest_element_by_exactly_eta(results: dict) -> None:
    assert results["one_step_max_change"] == pytest.approx(results["eta"], abs=1e-6)
    assert results["one_step_elements_at_eta"] >= 1
    assert results["one_step_loss_after"] < results["loss_initial"]


def test_accumulated_change_respects_the_step_bound(results: dict) -> None:
    for steps, change in results["snapshot_max_change"].items():
        assert 0 < change <= int(steps) * results["eta"] + 1e-6


def test_location_loss_falls(results: dict) -> None:
    assert results["location_loss_final"] < results["loss_initial"]


def test_cell_gradient_is_mostly_outside_its_cell(results: dict) -> None:
    assert results["uniform_in_cell_mass"] == pytest.approx(1 / (results["grid"][0] * results["grid"][1]))
    assert 0 < results["gradient_in_cell_mass"] < 0.5  # most of the gradient lies outside the cell


def test_postprocessing_ranges(results: dict) -> None:
    assert results["minmax_min"] == 0 and results["minmax_max"] == pytest.approx(1, abs=1e-6)
    assert 0 < results["maxnorm_min"] and results["maxnorm_max"] == pytest.approx(1, abs=1e-6)
    assert results["attribution_equals_steps"] < 1e-6
    assert 0 < results["map_in_cell_mass"] < 1


def test_class_logit_falls_and_modes_agree_while_positive(results: dict) -> None:
    assert results["logit_final"] < results["logit_initial"]
    if results["logit_final"] > 0:
        assert results["logit_final_paper_faithful"] == pytest.approx(results["logit_final"], abs=1e-4)
        assert results["class_steps_paper_faithful"] == results["class_steps"]
    assert -1 <= results["class_map_mode_correlation"] <= 1
