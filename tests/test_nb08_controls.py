"""Notebook 08 helpers: direction ablation and its scores, randomisation explainers and verdicts, e₊/e₋ perturbations,
signed map, region deletion and the closing table (tiny seeded models, hand-made records)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.stats import wilcoxon

from fame_utils.baselines.cam import full_grad, grad_cam, gradcam_verification
from fame_utils.data import face_pairs
from fame_utils.fame import FameConfig, explain_class, explain_verification, optimize, verification_loss
from fame_utils.metrics import Normalizer, iou
from fame_utils.workbook import nb08_controls as controls
from fame_utils.workbook.session import PROFILES, choose
from tiny_models import FlattenEmbedding, cam_classifier, cam_embedder

CONFIG = FameConfig(iterations=4, blur_kernel=5, blur_sigma=1.0)


def test_lots_variant_is_fame_and_single_step_is_fame_with_one_step():
    model = cam_classifier()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    maps = controls.direction_ablation_maps(model, images, [0, 2], CONFIG, progress=False)
    assert list(maps) == list(controls.DIRECTIONS)
    torch.testing.assert_close(maps["LOTS (FAME)"], explain_class(model, images, [0, 2], CONFIG), atol=1e-4, rtol=0)  # channels_last rounding
    torch.testing.assert_close(maps["single step"], explain_class(model, images, [0, 2], CONFIG.replace(iterations=1)), atol=1e-4, rtol=0)  # channels_last rounding
    assert not torch.allclose(maps["random direction"], maps["LOTS (FAME)"], atol=1e-2)
    assert all(float(m.min()) >= 0 and float(m.max()) <= 1 for m in maps.values())
    again = controls.direction_ablation_maps(model, images, [0, 2], CONFIG, progress=False)
    assert torch.equal(again["random direction"], maps["random direction"])
    with pytest.raises(ValueError, match="one class per image"):
        controls.direction_ablation_maps(model, images, [0], CONFIG, progress=False)


def test_ablation_maps_do_not_depend_on_the_batch_a_photo_ran_in():
    model = cam_classifier()
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    together = controls.direction_ablation_maps(model, images, [0, 2, 1], CONFIG, seed=4, progress=False, batch_size=3)
    alone = controls.direction_ablation_maps(model, images, [0, 2, 1], CONFIG, seed=4, progress=False, batch_size=1)
    for name in controls.DIRECTIONS:
        torch.testing.assert_close(together[name], alone[name], atol=1e-4, rtol=0)  # float rounding of batch and layout
    other_seed = controls.direction_ablation_maps(model, images, [0, 2, 1], CONFIG, seed=5, progress=False, batch_size=2)
    assert not torch.allclose(other_seed["random direction"], together["random direction"], atol=1e-2)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        controls.direction_ablation_maps(model, images, [0, 2, 1], CONFIG, batch_size=0)


def test_pair_perturbations_keep_each_step_count_as_a_run_of_that_many_steps_in_any_batch():
    model = cam_embedder()
    probes = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    gallery = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    kept = controls.pair_perturbations(model, probes, gallery, [1, 3], batch_size=2)
    with torch.no_grad():
        reference = model(gallery)
    for count in (1, 3):
        for mode in ("similar", "dissimilar"):
            alone = optimize(probes, verification_loss(model, reference, mode), FameConfig(iterations=count))
            torch.testing.assert_close(kept[count][mode], alone, atol=1e-6, rtol=0)
    assert not torch.equal(kept[1]["similar"], kept[3]["similar"])
    for steps in ([], [0, 3]):
        with pytest.raises(ValueError, match="step counts ≥ 1"):
            controls.pair_perturbations(model, probes, gallery, steps)


def test_equal_perturbations_give_a_flat_signed_map_and_spearman_one_for_identical_maps():
    probes = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    same = probes + 0.1
    flat = controls.signed_map(probes, {"similar": same, "dissimilar": same}, CONFIG)
    assert torch.equal(flat, torch.zeros_like(flat))
    maps = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(2))
    np.testing.assert_allclose(controls.spearman_per_pair(maps, maps), [1.0, 1.0])
    np.testing.assert_allclose(controls.spearman_per_pair(maps, -maps), [-1.0, -1.0])


def test_deleting_the_shared_region_lowers_a_flat_embeddings_similarity():
    # FlattenEmbedding: s = cos(gallery, probe). Gallery lit on the left half only; a map marking the left
    # half removes all shared evidence (s → 0), a map marking the right half leaves s unchanged.
    gallery = torch.zeros(1, 1, 10, 10)
    gallery[..., :5] = 1.0
    probe = torch.ones(1, 1, 10, 10)
    left = torch.zeros(1, 10, 10)
    left[..., :5] = 1.0
    clean = float(torch.nn.functional.cosine_similarity(gallery.flatten(1), probe.flatten(1)))
    effect_left = controls.region_deletion_effect(FlattenEmbedding(), gallery, probe, left, share=50)
    effect_right = controls.region_deletion_effect(FlattenEmbedding(), gallery, probe, 1.0 - left, share=50)
    np.testing.assert_allclose(effect_left, [-clean], atol=1e-6)
    np.testing.assert_allclose(effect_right, [1.0 - clean], atol=1e-6)


def test_ablation_records_score_each_direction_and_leave_iou_blank_without_a_box():
    model = cam_classifier()
    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    samples = [SimpleNamespace(name="a", target=1, pixels=pixels[0], boxes={"default": (0, 0, 8, 8)}),
               SimpleNamespace(name="b", target=3, pixels=pixels[1], boxes={"default": None})]
    left = torch.zeros(2, 16, 16)
    left[:, :8, :8] = 1.0
    records = controls.ablation_records(model, samples, {"LOTS (FAME)": left, "random direction": 1.0 - left}, lambda x: x, [0, 50, 100])
    assert list(records.direction) == ["LOTS (FAME)", "LOTS (FAME)", "random direction", "random direction"]
    assert records.loc[0, "iou@0.5"] == pytest.approx(100 * iou(left[0], (0, 0, 8, 8), 0.5)) == pytest.approx(100.0)
    assert records.loc[2, "iou@0.5"] == pytest.approx(0.0)
    assert records["iou@0.5"].isna().tolist() == [False, True, False, True]
    assert records["area@0.5 (% of crop)"].tolist() == [25.0, 25.0, 75.0, 75.0]  # an 8×8 corner of 16×16, then the rest
    assert records[["deletion (black) AUC ↑", "insertion (black) AUC ↓"]].notna().all().all()


def test_ablation_summary_gives_mean_interval_and_the_paired_wilcoxon_p_against_lots():
    lots = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    other = lots - np.array([0.5, 1.5, 0.2, 2.5, 0.1, 3.0, -0.4])
    records = pd.concat([pd.DataFrame({"direction": name, "photo": list("abcdefg"), **{m: values for m in controls.ABLATION_METRICS}})
                         for name, values in (("LOTS (FAME)", lots), ("random direction", other))])
    table = controls.ablation_summary(records)
    assert table.loc["LOTS (FAME)", "iou@0.5"].startswith("4.00 [")
    assert np.isnan(table.loc["LOTS (FAME)", "iou@0.5 p (vs LOTS)"])  # LOTS against itself: every difference is zero
    assert table.loc["random direction", "deletion (black) AUC ↑ p (vs LOTS)"] == pytest.approx(wilcoxon(lots, other).pvalue)
    assert np.isnan(controls.ablation_summary(records[records.photo < "f"]).loc["random direction", "iou@0.5 p (vs LOTS)"])  # 5 photos


def test_classifier_explainers_are_fame_grad_cam_and_fullgrad_on_the_model_they_are_given():
    model = cam_classifier()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    normalizer = Normalizer((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    explainers = controls.classifier_explainers(SimpleNamespace(target_layer="features.3"), images, [0, 2], CONFIG, normalizer)
    assert list(explainers) == ["FAME", "Grad-CAM", "FullGrad"]
    torch.testing.assert_close(explainers["FAME"](model), explain_class(model, images, [0, 2], CONFIG))
    torch.testing.assert_close(explainers["Grad-CAM"](model), grad_cam(model, "features.3", images, [0, 2]))
    torch.testing.assert_close(explainers["FullGrad"](model), full_grad(model, images, [0, 2], normalizer))
    assert not torch.allclose(explainers["FAME"](cam_classifier(seed=1)), explainers["FAME"](model), atol=1e-3)


def test_verification_explainers_give_e_plus_and_similarity_grad_cam():
    model = cam_embedder()
    probes, gallery = torch.rand(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    explainers = controls.verification_explainers(SimpleNamespace(target_layer="body"), probes, gallery, CONFIG)
    assert list(explainers) == ["FAME", "Grad-CAM"]
    torch.testing.assert_close(explainers["FAME"](model), explain_verification(model, probes, gallery, CONFIG, modes=("similar",))["similar"])
    torch.testing.assert_close(explainers["Grad-CAM"](model), gradcam_verification(model, "body", probes, gallery)["similar"])


def _summary(full_spearman: dict[str, float]) -> pd.DataFrame:
    rows = []
    for method, rho in full_spearman.items():
        for count, value in ((0, 1.0), (1, (1.0 + rho) / 2), (2, rho)):
            rows += [{"method": method, "randomised": count, "last group": "g", "metric": metric, "mean": value, "low": value - 0.1, "high": value + 0.1}
                     for metric in ("spearman", "ssim")]
    return pd.DataFrame(rows)


def test_randomisation_verdicts_read_the_most_randomised_stage():
    verdicts = controls.randomisation_verdicts(_summary({"FAME": 0.2, "Grad-CAM": 0.7}))
    assert verdicts == {"FAME": {"spearman": 0.2, "ssim": 0.2, "passes": True}, "Grad-CAM": {"spearman": 0.7, "ssim": 0.7, "passes": False}}


def test_randomisation_figures_have_one_panel_per_network_and_metric_and_one_line_per_method():
    fig = controls.plot_randomisation({"A": _summary({"FAME": 0.2, "Grad-CAM": 0.7}), "B": _summary({"FAME": 0.1})})
    axes = fig.axes
    methods = [[line.get_label() for line in ax.lines if not line.get_label().startswith("_")] for ax in axes]  # "_…": the zero line
    assert methods == [["FAME", "Grad-CAM"], ["FAME", "Grad-CAM"], ["FAME"], ["FAME"]]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["FAME", "Grad-CAM"]
    assert axes[0].lines[0].get_color() == axes[2].lines[0].get_color() != axes[0].lines[1].get_color()
    maps = {count: {"FAME": torch.rand(1, 8, 8), "Grad-CAM": torch.rand(1, 8, 8)} for count in (0, 2)}
    sheet = controls.randomisation_sheet(maps, [("output", ["head"]), ("stage", ["conv"])], np.zeros((8, 8, 3)))
    titles = [ax.get_title() for ax in sheet.axes if ax.get_title()]
    assert "trained" in titles and "2: +stage" in titles


def _pair(genuine: bool, shade: int) -> SimpleNamespace:
    return SimpleNamespace(genuine=genuine, gallery=Image.new("RGB", (4, 4), (shade,) * 3), probe=Image.new("RGB", (4, 4), (shade + 1,) * 3))


def test_pair_batch_takes_genuine_then_impostor_pairs_and_refuses_too_few():
    spec = SimpleNamespace(preprocess=lambda image: torch.tensor(np.array(image), dtype=torch.float32).permute(2, 0, 1))
    pairs = [_pair(False, 10), _pair(True, 20), _pair(True, 30), _pair(False, 40)]
    gallery, probes, kinds = controls.pair_batch(spec, pairs, 1, "cpu")
    assert kinds.tolist() == ["genuine", "impostor"]
    assert gallery[:, 0, 0, 0].tolist() == [20.0, 10.0] and probes[:, 0, 0, 0].tolist() == [21.0, 11.0]
    with pytest.raises(ValueError, match="found 2 genuine and 2 impostor"):
        controls.pair_batch(spec, pairs, 3, "cpu")


def test_after_one_step_e_plus_and_e_minus_rank_identically_for_every_pair():
    probes, gallery = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    rows, perturbed = controls.rank_by_steps(cam_embedder(), probes, gallery, ["genuine", "genuine", "impostor"], [1])
    np.testing.assert_allclose(rows["spearman(e+, e-)"], 1.0, atol=1e-6)
    assert rows.pair.tolist() == ["genuine", "genuine", "impostor"] and set(perturbed[1]) == {"similar", "dissimilar"}
    candidates = controls.deletion_candidates(probes, perturbed[1], FameConfig(iterations=1), seed=3)
    assert list(candidates) == ["e+ (FAME)", "e- (FAME)", "signed e+ − e-", "random"]
    assert torch.equal(candidates["random"], controls.deletion_candidates(probes, perturbed[1], FameConfig(iterations=1), seed=3)["random"])


def test_claims_table_computes_each_verdict_from_the_numbers():
    ranks = pd.DataFrame({"steps": [1, 1, 100, 100], "pair": ["genuine", "impostor"] * 2, "spearman(e+, e-)": [1.0, 1.0, 0.3, 0.5]})
    effects = {"e+ (FAME)": -0.2, "e- (FAME)": 0.1, "signed e+ − e-": -0.3, "random": -0.05}
    randomisation = {"Lite0": controls.randomisation_verdicts(_summary({"FAME": 0.2})), "SFace": controls.randomisation_verdicts(_summary({"FAME": 0.6}))}
    claims = controls.claims_table({"iou@0.5": 5.0, "area@0.5 (% of crop)": -12.0, "deletion (black) AUC ↑": 1.0, "insertion (black) AUC ↓": -0.5},
                                   ranks, effects, randomisation)
    assert claims["holds here"].tolist() == [True, True, True, True, False]
    assert "IoU +5.0 (area above τ -12.0 points)" in claims.loc[0, "measured here"]
    assert "after 100: 0.400" in claims.loc[1, "measured here"]
    worse = controls.claims_table({"iou@0.5": 5.0, "area@0.5 (% of crop)": 0.0, "deletion (black) AUC ↑": -1.0, "insertion (black) AUC ↓": -0.5}, ranks,
                                  {**effects, "e- (FAME)": -0.19}, randomisation)
    assert worse["holds here"].tolist()[:3] == [False, True, False]


def test_every_profile_asks_for_no_more_face_pairs_than_ship():
    notebook = nbformat.read(Path(controls.__file__).parents[2] / "notebooks" / "08_controls.ipynb", as_version=4)
    line = next(line for cell in notebook.cells for line in cell.source.splitlines() if line.startswith("n_pairs = choose("))
    pairs = face_pairs()
    shipped = min(sum(p.genuine for p in pairs), sum(not p.genuine for p in pairs))
    for profile in PROFILES:
        namespace = {"choose": choose, "profile": profile}
        exec(line, namespace)  # the parameters cell's own line, evaluated per profile
        assert 1 <= namespace["n_pairs"] <= shipped, profile
