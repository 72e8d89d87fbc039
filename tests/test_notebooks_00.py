"""Claims of notebooks/00_data_tour.ipynb, checked on the numbers its smoke run recorded."""

from __future__ import annotations

import pytest

from conftest import smoke_results

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="module")
def results():
    return smoke_results("00_data_tour")


def test_object_photos_and_boxes_are_counted(results):
    assert results["n_photos"] >= 20
    assert results["n_boxes"] > results["n_photos"]  # several photos have more than one object
    assert results["n_multi_object"] >= 3
    assert 15 <= results["n_classes"] <= results["n_boxes"]


def test_face_pairs_cover_every_pair_of_five_identities(results):
    assert results["n_faces"] == 10 and results["n_identities"] == 5
    assert results["n_genuine"] == 8
    assert results["n_pairs"] == results["n_faces"] * (results["n_faces"] - 1) // 2
    assert results["n_impostor"] == results["n_pairs"] - results["n_genuine"]


def test_alignment_puts_eyes_near_the_template(results):
    assert 0 <= results["alignment_eye_offset_px"] <= 4.0


def test_mtcnn_finds_most_solvay_faces(results):
    assert results["solvay_truth"] == 30
    assert results["solvay_matched"] <= min(results["solvay_truth"], results["solvay_detections"])
    assert results["solvay_matched_fraction"] >= 0.9
    assert results["solvay_median_iou"] >= 0.5


def test_the_only_missed_solvay_box_is_the_spurious_balustrade_box(results):
    missed = results["solvay_missed_boxes"]
    assert len(missed) == results["solvay_truth"] - results["solvay_matched"]
    assert all(box == [35, 376, 114, 454] for box in missed)
