"""Claims of notebook 05 (face verification), checked on its smoke run's recorded numbers."""

from __future__ import annotations

import math

import pytest

from conftest import smoke_results

pytestmark = pytest.mark.notebooks

STEM = "05_face_verification"
METHODS = ("Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME")


@pytest.fixture(scope="module")
def results() -> dict:
    return smoke_results(STEM)


def test_clean_verification_numbers_are_in_range(results: dict) -> None:
    assert results["networks"]
    for name in results["networks"]:
        assert -1 <= results[f"{name}_threshold"] <= 1
        assert 0 <= results[f"{name}_eer"] <= 0.5
        assert 0.5 <= results[f"{name}_clean_accuracy"] <= 1


def test_every_method_has_finite_aucs_in_percent(results: dict) -> None:
    assert set(results["deletion_auc"]) == set(METHODS) == set(results["insertion_auc"])
    for kind in ("deletion_auc", "insertion_auc"):
        for method, value in results[kind].items():
            assert value is not None and math.isfinite(value) and 0 <= value <= 100, (kind, method, value)
    for cell in results["per_network"].values():
        assert 0 <= cell["deletion"] <= 100 and 0 <= cell["insertion"] <= 100


def test_deleting_top_pixels_hurts_more_than_keeping_only_them(results: dict) -> None:
    # Holds for FAME, CorrRISE, FGGB and the face-centred reference ranking; a random ranking sits in between.
    for method in ("CorrRISE", "FGGB", "FAME"):
        assert results["deletion_auc"][method] < results["insertion_auc"][method], method
    centre = results["reference_auc"]["centre Gaussian (reference)"]
    assert centre["deletion"] < centre["insertion"]


def test_a_method_failing_the_sanity_check_ranks_the_border_first(results: dict) -> None:
    # The notebook states that the cosine-target CAMs fail deletion < insertion because their e+ mass sits
    # on the crop border; every failure must come with a centre share below 1 (uniform = 1).
    assert set(results["centre_share"]) == set(METHODS)
    for method in METHODS:
        if not results["deletion_below_insertion"][method]:
            assert results["centre_share"][method] < 1, method
    # Per network: wherever Grad-CAM fails, its e+ mass on that network sits on the border.
    for cell, aucs in results["per_network"].items():
        network, method = cell.split("/", 1)
        if method == "Grad-CAM" and aucs["deletion"] >= aucs["insertion"]:
            assert results["centre_share_per_network"][cell] < 1, cell
    for method in ("CorrRISE", "FGGB", "FAME"):
        assert results["deletion_below_insertion"][method], method


def test_named_winners_are_consistent_with_the_table(results: dict) -> None:
    assert results["best_deletion"] == min(results["deletion_auc"], key=results["deletion_auc"].get)
    assert results["best_insertion"] == max(results["insertion_auc"], key=results["insertion_auc"].get)
    assert results["evaluated_pairs"] >= 2
