"""Claims of notebook 01 (CAM's locality assumption), checked on the numbers its smoke run recorded."""

from __future__ import annotations

import pytest

from conftest import smoke_results

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def results() -> dict:
    return smoke_results("01_cam_locality")


def test_every_network_was_measured_trained_and_random(results: dict) -> None:
    assert set(results["cam_layer_mass"]) == set(results["random_cam_layer_mass"])
    assert {"efficientnet_lite0", "sface", "dlib_resnet"} <= set(results["cam_layer_mass"])


def test_cam_layer_field_covers_nearly_the_whole_input(results: dict) -> None:
    fractions = results["cam_layer_field_fraction"]
    assert fractions["efficientnet_lite0"] == 1.0 and fractions["sface"] == 1.0
    assert fractions["dlib_resnet"] >= 0.95


def test_most_gradient_mass_lies_outside_the_cam_cell(results: dict) -> None:
    for network, high in results["cam_layer_mass_high"].items():
        assert high < 0.5, network


def test_gradient_is_more_concentrated_than_a_uniform_map(results: dict) -> None:
    for network, mass in results["cam_layer_mass"].items():
        assert mass > results["cam_layer_uniform"][network], network


def test_relative_concentration_falls_tenfold_from_first_stage_to_cam_layer(results: dict) -> None:
    for network, ratio in results["cam_layer_ratio"].items():
        assert results["first_stage_ratio"][network] > 10 * ratio, network
    for network, ratio in results["random_cam_layer_ratio"].items():
        assert results["random_first_stage_ratio"][network] > 10 * ratio, network


def test_random_weights_leak_too(results: dict) -> None:
    for network, mass in results["random_cam_layer_mass"].items():
        assert mass < 0.5, network
