"""IoU, ROAD deletion/insertion curves, imputation and the classification benchmark on tiny networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from pytorch_grad_cam.metrics.road import NoisyLinearImputer

from fame_utils.metrics import Normalizer, RoadCurves, iou, road_curves, road_imputation
from tiny_models import RegionSum


# ---------------------------------------------------------------- IoU
def box_map(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    saliency = np.zeros((height, width))
    saliency[y0:y1, x0:x1] = 1.0
    return saliency


def test_iou_perfect_map_is_one():
    box = (2, 1, 6, 4)
    assert iou(box_map(8, 8, box), box, 0.5) == 12 / (12 + 1e-8)


def test_iou_disjoint_map_is_zero():
    assert iou(box_map(8, 8, (0, 0, 3, 3)), (4, 4, 8, 8), 0.3) == 0.0


def test_iou_half_overlap():
    # S = left half of the 4×4 box (8 pixels) → |S∩B| = 8, |S∪B| = 16.
    assert iou(box_map(8, 8, (0, 0, 2, 4)), (0, 0, 4, 4), 0.7) == pytest.approx(0.5)
    # S twice the box: 16 / 32.
    assert iou(box_map(8, 8, (0, 0, 8, 4)), (0, 0, 4, 4), 0.7) == pytest.approx(0.5)


def test_iou_empty_threshold_set_and_empty_box_give_zero():
    saliency = np.full((6, 6), 0.2)
    assert iou(saliency, (1, 1, 4, 4), 0.3) == 0.0
    assert iou(np.zeros((6, 6)), (2, 2, 2, 2), 0.5) == 0.0


def test_iou_threshold_is_inclusive_and_rows_are_y():
    saliency = np.zeros((4, 8))
    saliency[0:2, 0:4] = 0.5  # 2 rows (y) × 4 columns (x)
    assert iou(saliency, (0, 0, 4, 2), 0.5) == 8 / (8 + 1e-8)
    assert iou(saliency, (0, 0, 2, 4), 0.5) == pytest.approx(4 / 12)


def test_iou_falls_as_the_threshold_rises():
    ys, xs = np.mgrid[0:21, 0:21]
    radial = np.exp(-((xs - 10) ** 2 + (ys - 10) ** 2) / 40.0)
    values = [iou(radial, (5, 5, 16, 16), t) for t in (0.3, 0.5, 0.7, 0.9)]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]


def test_iou_rejects_boxes_outside_the_map_and_bad_maps():
    with pytest.raises(ValueError, match="box"):
        iou(np.zeros((4, 4)), (0, 0, 5, 4), 0.5)
    with pytest.raises(ValueError, match="box"):
        iou(np.zeros((4, 4)), (3, 0, 2, 4), 0.5)
    with pytest.raises(ValueError, match="saliency"):
        iou(np.zeros((1, 4, 4)), (0, 0, 2, 2), 0.5)


# ---------------------------------------------------------------- ROAD curves
MEAN, STD = (0.2, 0.3, 0.4), (0.5, 0.25, 0.5)


@pytest.fixture()
def road_setup():
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, 4, 4, generator=generator, dtype=torch.float64)
    ranks = torch.stack([torch.randperm(16, generator=generator) for _ in range(2)]).reshape(2, 4, 4).double()
    return pixels, ranks


def expected_drops(pixels: torch.Tensor, ranks: torch.Tensor, removed_from_rank: int) -> torch.Tensor:
    """Σ over channels and region pixels with rank ≥ ``removed_from_rank`` of x / σ (the removed pixels' share)."""
    std = torch.tensor(STD, dtype=torch.float64).view(1, 3, 1, 1)
    removed = (ranks >= removed_from_rank)[:, None]
    return ((pixels / std) * removed)[:, :, 0:2, 0:3].sum(dim=(1, 2, 3))


def test_deletion_curve_matches_the_analytic_logit_drop(road_setup):
    pixels, ranks = road_setup
    # Ranks 0..15, N = 16: P removes the top k_P = 16 P / 100 ranks, so P = 25 removes ranks ≥ 12,
    # P = 50 ranks ≥ 8, P = 100 everything, P = 0 nothing.
    curves = road_curves(RegionSum(), pixels, ranks, [0, 0], Normalizer(MEAN, STD), percents=[0, 25, 50, 100])
    # A removed pixel goes from (x − μ)/σ to −μ/σ, so the logit drops by x/σ per channel.
    expected = torch.stack([expected_drops(pixels, ranks, r) for r in (16, 12, 8, 0)], dim=1)
    assert torch.allclose(curves.deletion_drop.double(), expected, atol=1e-5)
    assert torch.equal(curves.deletion_drop[:, 0], torch.zeros(2))


def test_insertion_curve_is_the_complementary_drop(road_setup):
    pixels, ranks = road_setup
    curves = road_curves(RegionSum(), pixels, ranks, [0, 0], Normalizer(MEAN, STD), percents=[0, 25, 50, 100])
    total = expected_drops(pixels, ranks, 0)
    # Insertion hides exactly the pixels deletion keeps: the two drops add up to the full drop.
    assert torch.allclose((curves.insertion_drop + curves.deletion_drop).double(), total[:, None].expand(2, 4), atol=1e-5)
    assert torch.allclose(curves.insertion_drop[:, 0].double(), total, atol=1e-5)


def test_curve_aucs_and_raw_logits(road_setup):
    pixels, ranks = road_setup
    curves = road_curves(RegionSum(), pixels, ranks, [0, 1], Normalizer(MEAN, STD))
    assert isinstance(curves, RoadCurves) and curves.deletion.shape == (2, 11)
    # Class 1 has a constant logit 0: nothing ever drops.
    assert float(curves.deletion_drop[1].abs().max()) == 0.0
    manual = np.trapezoid(curves.deletion_drop[0].numpy(), np.arange(0, 101, 10)) / 100
    assert curves.deletion_auc()[0] == pytest.approx(manual)
    assert curves.deletion_auc()[1] == 0.0 and curves.insertion_auc()[1] == 0.0


def test_deletion_by_a_good_map_falls_faster_than_by_a_bad_one(road_setup):
    pixels, _ = road_setup
    inside = torch.zeros(1, 4, 4, dtype=torch.float64)
    inside[:, 0:2, 0:3] = 1.0 + torch.rand(1, 2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    good = road_curves(RegionSum(), pixels[:1], inside, [0], Normalizer(MEAN, STD))
    bad = road_curves(RegionSum(), pixels[:1], 1.0 - inside, [0], Normalizer(MEAN, STD))
    assert good.deletion_auc()[0] > bad.deletion_auc()[0]
    assert good.insertion_auc()[0] < bad.insertion_auc()[0]


def test_road_curves_check_lengths(road_setup):
    pixels, ranks = road_setup
    with pytest.raises(ValueError, match="2 images but 1 classes"):
        road_curves(RegionSum(), pixels, ranks, [0], Normalizer(MEAN, STD))
    with pytest.raises(ValueError, match="saliency"):
        road_curves(RegionSum(), pixels, ranks[:1], [0, 0], Normalizer(MEAN, STD))


def test_normalizer_round_trip_and_bgr():
    pixels = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(4))
    normalizer = Normalizer((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.allclose(normalizer(pixels), pixels * 2 - 1)
    bgr = Normalizer(MEAN, STD, bgr=True)
    assert torch.allclose(bgr.inverse(bgr(pixels)), pixels, atol=1e-6)
    assert torch.allclose(bgr(pixels)[:, 0], (pixels[:, 2] - MEAN[2]) / STD[2])


# ---------------------------------------------------------------- imputation
def test_road_imputation_is_grad_cams_noisy_linear_imputer():
    generator = torch.Generator().manual_seed(5)
    pixels = torch.rand(2, 3, 9, 9, generator=generator)
    keep = torch.rand(2, 9, 9, generator=generator) > 0.4
    filled = road_imputation(pixels, keep, noise_std=0.0)
    expected = torch.stack([NoisyLinearImputer(noise=0.0)(image, known.float()) for image, known in zip(pixels, keep)])
    assert torch.allclose(filled, expected, atol=1e-6)
    known = keep[:, None].expand_as(pixels)
    assert torch.equal(filled[known], pixels[known])


def test_single_missing_pixel_becomes_roads_weighted_neighbour_mean():
    pixels = (torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5) / 25) ** 1.5
    keep = torch.ones(1, 5, 5, dtype=torch.bool)
    keep[0, 2, 2] = False
    keep[0, 0, 0] = False
    filled = road_imputation(pixels, keep, noise_std=0.0)
    p = pixels[0, 0]
    centre = (p[1, 2] + p[3, 2] + p[2, 1] + p[2, 3]) / 6 + (p[1, 1] + p[1, 3] + p[3, 1] + p[3, 3]) / 12
    corner = ((p[0, 1] + p[1, 0]) / 6 + p[1, 1] / 12) / (2 / 6 + 1 / 12)
    assert float(filled[0, 0, 2, 2]) == pytest.approx(float(centre), abs=1e-6)
    assert float(filled[0, 0, 0, 0]) == pytest.approx(float(corner), abs=1e-6)


def test_road_imputation_reconstructs_a_linear_ramp_and_is_seeded():
    ramp = torch.linspace(0, 1, 12).repeat(12, 1)[None, None].expand(1, 3, 12, 12).contiguous()
    keep = torch.ones(1, 12, 12, dtype=torch.bool)
    keep[0, 4:8, 3:9] = False
    filled = road_imputation(ramp, keep, noise_std=0.0)
    assert torch.allclose(filled, ramp, atol=1e-5)
    noisy = [road_imputation(ramp, keep, generator=torch.Generator().manual_seed(2)) for _ in range(2)]
    assert torch.equal(noisy[0], noisy[1])
    residual = (noisy[0] - filled)[:, :, 4:8, 3:9]
    assert 0.005 < float(residual.std()) < 0.015


def test_road_imputation_edge_cases_and_errors():
    pixels = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    assert torch.equal(road_imputation(pixels, torch.ones(1, 6, 6, dtype=torch.bool)), pixels)
    assert torch.equal(road_imputation(pixels, torch.zeros(1, 6, 6, dtype=torch.bool)), torch.zeros_like(pixels))
    with pytest.raises(ValueError, match="keep"):
        road_imputation(pixels, torch.ones(6, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="noise_std"):
        road_imputation(pixels, torch.ones(1, 6, 6, dtype=torch.bool), noise_std=-1)


def test_imputed_deletion_curve_is_opt_in_and_keeps_p0_exact(road_setup):
    pixels, ranks = road_setup
    black = road_curves(RegionSum(), pixels, ranks, [0, 0], Normalizer(MEAN, STD))
    imputed = road_curves(RegionSum(), pixels, ranks, [0, 0], Normalizer(MEAN, STD), imputation=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(imputed.deletion_drop[:, 0], torch.zeros(2))
    assert not torch.allclose(black.deletion, imputed.deletion)


# ---------------------------------------------------------------- boxes through the network's resize/crop
from types import SimpleNamespace  # noqa: E402

from PIL import Image  # noqa: E402

from fame_utils.metrics import box_in_input  # noqa: E402
from fame_utils.models.spec import ClassifierPreprocess  # noqa: E402


def fake_spec(resize: int = 232, crop: int = 224) -> SimpleNamespace:
    return SimpleNamespace(name="tiny", preprocess=ClassifierPreprocess(resize, crop, (0.5,) * 3, (0.5,) * 3), mean=(0.5,) * 3, std=(0.5,) * 3, bgr=False)


def test_box_of_a_500x375_image_in_both_conventions():
    spec = fake_spec()
    box = (100, 50, 300, 250)
    # Aspect-preserving: s = 232/375, offsets ((500 s − 224)/2, (375 s − 224)/2) = (42.67, 4).
    s = 232 / 375
    expected = tuple(int(min(max(v, 0), 224)) for v in (100 * s - (500 * s - 224) / 2, 50 * s - 4, 300 * s - (500 * s - 224) / 2, 250 * s - 4))
    assert box_in_input(box, (500, 375), spec) == expected == (19, 26, 142, 150)
    # Per-axis (paper): s_x = 232/500, s_y = 232/375, both shifted by 4.
    assert box_in_input(box, (500, 375), spec, paper_faithful=True) == (42, 26, 135, 150)
    assert box_in_input((0, 0, 500, 375), (500, 375), spec, paper_faithful=True) == (0, 0, 224, 224)


def test_box_mapping_needs_a_resize_and_crop_classifier():
    with pytest.raises(ValueError, match="resize/crop"):
        box_in_input((0, 0, 5, 5), (10, 10), SimpleNamespace(name="face", preprocess=lambda image: image))


# ---------------------------------------------------------------- Table 1 machinery on a tiny classifier
def test_benchmark_records_every_method_and_photo():
    from fame_utils.fame import FameConfig
    from fame_utils.evaluation.classification import ClassificationSample, format_table, prepare_samples, run_benchmark, summarize

    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    spec = SimpleNamespace(**vars(fake_spec(resize=20, crop=16)), module=module, target_layer="0", device=torch.device("cpu"))
    rng = np.random.default_rng(0)
    photos = [ClassificationSample(f"p{i}", Image.fromarray(rng.integers(0, 255, (20, 25, 3), dtype=np.uint8)), i % 3, (2, 2, 14, 12)) for i in range(3)]
    prepared = prepare_samples(spec, photos)
    assert prepared[0].tensor.shape == (3, 16, 16) and float(prepared[0].pixels.min()) >= 0.0
    result = run_benchmark(spec, prepared, ["Grad-CAM", "Random"], FameConfig(iterations=2), torch.Generator().manual_seed(0), percents=(0, 50, 100), progress=False)
    assert len(result.records) == 6 and result.maps["Random"].shape == (3, 16, 16)
    assert result.curves["Grad-CAM"].deletion.shape == (3, 3)
    assert result.records["iou@0.5 (default)"].between(0, 100).all()
    summary = summarize(result.records, seed=0)
    assert set(summary["n"]) == {3}
    table = format_table(summary)
    assert list(table["method"]) == ["Grad-CAM", "Random"] and "deletion (black) AUC (logit drop) ↑" in table.columns


def test_benchmark_reports_road_next_to_black_deletion():
    from fame_utils.fame import FameConfig
    from fame_utils.evaluation.classification import ClassificationSample, format_table, prepare_samples, run_benchmark, summarize

    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    spec = SimpleNamespace(**vars(fake_spec(resize=20, crop=16)), module=module, target_layer="0", device=torch.device("cpu"))
    rng = np.random.default_rng(1)
    photos = [ClassificationSample(f"p{i}", Image.fromarray(rng.integers(0, 255, (20, 25, 3), dtype=np.uint8)), i, (2, 2, 14, 12)) for i in range(2)]
    prepared = prepare_samples(spec, photos)
    plain = run_benchmark(spec, prepared, ["Grad-CAM"], FameConfig(iterations=2), torch.Generator().manual_seed(0), percents=(0, 50, 100), progress=False)
    both = run_benchmark(spec, prepared, ["Grad-CAM"], FameConfig(iterations=2), torch.Generator().manual_seed(0), percents=(0, 50, 100), imputation=True, progress=False)
    assert "road_morf_auc" not in plain.records and np.allclose(both.records["deletion_auc"], plain.records["deletion_auc"])
    assert not np.allclose(both.records["road_morf_auc"], both.records["deletion_auc"])
    columns = format_table(summarize(both.records)).columns
    assert {"deletion (black) AUC (logit drop) ↑", "ROAD MoRF AUC (logit drop) ↑", "ROAD LeRF AUC (logit drop) ↓"} <= set(columns)
