"""Claims of notebooks/04_image_classification.ipynb, checked on the numbers its smoke run recorded (or the default run's:
``FAME_SMOKE_DIR=figures``)."""

from __future__ import annotations

import math

import pytest

from conftest import smoke_results

pytestmark = pytest.mark.notebooks

CAMS = ["Grad-CAM", "Grad-CAM-EW", "HiResCAM", "FullGrad", "Finer-CAM"]
SANITY = ["Random", "Centre Gaussian"]


@pytest.fixture(scope="module")
def results():
    return smoke_results("04_image_classification")


def mean(results, network, method, metric):
    return results["means"][f"{network}|{method}|{metric}"]


def test_every_method_and_metric_was_recorded_and_is_finite(results):
    assert set(CAMS + SANITY + ["FAME", "FAME (paper-faithful)", "Finer-FAME (ours)"]) == set(results["methods"])
    for key, value in results["means"].items():
        assert value is not None and math.isfinite(value), key
        if "|iou@" in key:
            assert 0.0 <= value <= 100.0, key
    assert results["real_method_count"] == len(results["methods"]) - len(SANITY)


def test_every_cam_beats_the_random_map_on_insertion(results):
    for network in results["networks"]:
        for method in CAMS:
            assert mean(results, network, method, "insertion_auc") < mean(results, network, "Random", "insertion_auc"), (network, method)
        assert results["methods_beating_random_insertion"][network] >= len(CAMS)


def test_random_map_iou_matches_its_box_share_expectation(results):
    # Uniform noise keeps a share q = 1 − τ of the pixels anywhere: on a box covering a share b of the crop the
    # expected IoU is q·b / (q + b − q·b) (smoke photos: full-frame boxes, so 100 q).
    if "random_iou_expected" not in results:
        pytest.skip("this run predates the recorded random-IoU expectation")
    for network in results["networks"]:
        for tau in (0.3, 0.5, 0.7):
            expected = results["random_iou_expected"][f"{network}|{tau:g}"]
            assert mean(results, network, "Random", f"iou@{tau:g} (default)") == pytest.approx(expected, abs=2.0)


def test_grad_cam_equals_hires_cam_on_efficientnet_lite(results):
    # 1×1 head conv → global average pool → linear: the class gradient is spatially constant, so the maps agree up to
    # float rounding — exactly after thresholding, and in ROAD AUC up to the near-ties that rounding reorders.
    for network in results["networks"]:
        for metric in ("iou@0.3 (default)", "iou@0.5 (default)", "iou@0.7 (default)"):
            assert mean(results, network, "Grad-CAM", metric) == pytest.approx(mean(results, network, "HiResCAM", metric), abs=1e-9)
        for metric in ("deletion_auc", "insertion_auc"):
            assert mean(results, network, "Grad-CAM", metric) == pytest.approx(mean(results, network, "HiResCAM", metric), abs=2e-4)


def test_paper_faithful_fame_keeps_min_max_maps_so_its_iou_matches_fames_while_the_logit_is_positive(results):
    # Normalisation is its own knob (min-max in both modes): with the smoke profile's T = 5 the logit stays
    # positive, z_o and |z_o| take the same steps, and the thresholded maps agree.
    if results["profile"] != "smoke":
        pytest.skip("at T ≥ 100 the logit crosses zero and the |z_o| loss turns round, so the two maps part by design")
    for network in results["networks"]:
        for tau in ("0.3", "0.5", "0.7"):
            metric = f"iou@{tau} (default)"
            assert mean(results, network, "FAME (paper-faithful)", metric) == pytest.approx(mean(results, network, "FAME", metric), abs=1e-6)


def test_fame_modes_share_road_numbers_until_the_logit_turns_at_zero(results):
    # z_o and |z_o| descend along the same path while z_o > 0: with the smoke profile's T = 5 it stays positive and the
    # rows coincide. At T ≥ 100 the logit crosses zero, |z_o| turns round, and the rows part by less than 0.5 AUC.
    tolerance = 1e-6 if results["profile"] == "smoke" else 0.5
    for network in results["networks"]:
        for metric in ("deletion_auc", "insertion_auc"):
            assert mean(results, network, "FAME", metric) == pytest.approx(mean(results, network, "FAME (paper-faithful)", metric), abs=tolerance)


def test_deletion_counts_are_reported_honestly(results):
    for network in results["networks"]:
        assert 0 <= results["methods_beating_random_deletion"][network] <= results["real_method_count"]


def test_finer_cam_separates_the_three_cat_classes_more_than_grad_cam(results):
    similarity = results["finer_class_similarity"]
    assert set(similarity) == {"Grad-CAM", "Finer-CAM", "FAME", "Finer-FAME (ours)"}
    assert all(-1.0 <= v <= 1.0 for v in similarity.values())
    assert similarity["Grad-CAM"] > 0.8
    assert similarity["Finer-CAM"] < similarity["Grad-CAM"] - 0.3


def test_default_run_centre_gaussian_beats_fame_but_not_the_cams_on_insertion(results):
    # The default-profile claims of the notebook text (20 photos, T = 100); the smoke run is too small for them.
    if results["profile"] == "smoke":
        pytest.skip("2 photos and T = 5: the smoke run's centre Gaussian beats every method on insertion")
    for network in results["networks"]:
        centre = mean(results, network, "Centre Gaussian", "insertion_auc")
        assert all(mean(results, network, method, "insertion_auc") < centre for method in CAMS), network
        assert all(mean(results, network, method, "insertion_auc") > centre for method in ("FAME", "FAME (paper-faithful)", "Finer-FAME (ours)")), network
        assert results["methods_beating_random_deletion"][network] == 0
