"""Claims of notebook 03 (feature-map atlas), checked on the numbers its smoke run recorded."""

from __future__ import annotations

import pytest

from conftest import smoke_results

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def results() -> dict:
    return smoke_results("03_feature_map_atlas")


def test_shipped_classifier_and_both_face_networks_were_explained(results: dict) -> None:
    assert {"efficientnet_lite0", "sface", "dlib_resnet"} <= set(results["fame_mass"])
    assert all(count >= 1 for count in results["locations"].values())


def test_no_location_keeps_half_of_its_fame_map_in_its_cell(results: dict) -> None:
    for network, largest in results["fame_max"].items():
        assert largest < 0.5, network
        assert results["fame_mass"][network] <= largest


def test_fame_and_gradient_in_cell_mass_agree_within_a_factor_of_three(results: dict) -> None:
    for network, fame in results["fame_mass"].items():
        gradient = results["gradient_mass"][network]
        assert gradient / 3 <= fame <= 3 * gradient, network
