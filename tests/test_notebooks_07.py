"""Notebook 07 (runtime) recorded complete tables; timings themselves are never asserted (they depend on the machine)."""

from __future__ import annotations

import pytest

from conftest import smoke_results

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def results() -> dict:
    return smoke_results("07_runtime")


def test_table3a_has_one_row_per_iteration_count(results: dict) -> None:
    rows = results["table3a"]
    counts = [row["iterations"] for row in rows]
    assert counts == sorted(counts) and len(set(counts)) == len(counts) >= 2
    assert all(row["seconds"] > 0 and row["seconds_per_image"] == pytest.approx(row["seconds"] / row["images"], rel=1e-3) for row in rows)


def test_table3b_covers_every_verification_method_with_its_cost_model(results: dict) -> None:
    rows = {row["method"]: row for row in results["table3b"]}
    assert set(rows) | set(results["skipped_methods"]) == {"Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME"}
    assert set(rows) == set(results["methods"]) and "FAME" in rows and "Grad-CAM" in rows
    assert rows["FAME"]["passes_per_image"] == f"{2 * results['face_iterations']} fwd + {2 * results['face_iterations']} bwd"
    assert all(row["seconds"] > 0 and row["images"] == 2 * row["pairs"] for row in rows.values())
    assert -1 <= results["eer_threshold"] <= 1
