"""Reading Table 1 (notebook 04): sanity counts against the floor maps, the sheets and the class-map correlation."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fame_utils.workbook import nb04_classification as report
from fame_utils.fame import FameConfig
from fame_utils.evaluation.classification import ClassificationSample
from test_metrics_classification import fake_spec
from tiny_models import pooled_classifier

METHODS = ["A", "B", "Random", "Centre Gaussian"]


def _summary() -> pd.DataFrame:
    """Hand-made means, the same on both networks: A beats Random on both AUCs, B on neither; B is worse than the centre Gaussian on insertion."""
    means = {
        "A": {"deletion_auc": 3.0, "insertion_auc": 1.0, "iou@0.5 (default)": 40.0},
        "B": {"deletion_auc": 1.0, "insertion_auc": 4.0, "iou@0.5 (default)": 60.0},
        "Random": {"deletion_auc": 2.0, "insertion_auc": 3.0, "iou@0.5 (default)": 50.0},
        "Centre Gaussian": {"deletion_auc": 2.5, "insertion_auc": 2.0, "iou@0.5 (default)": 55.0},
    }
    rows = [{"network": net, "method": m, "metric": metric, "mean": value, "low": 0.0, "high": 9.0, "n": 4}
            for net in ("net1", "net2") for m, values in means.items() for metric, value in values.items()]
    return pd.DataFrame(rows)


def test_sanity_record_counts_real_methods_beating_the_random_map() -> None:
    record = report.sanity_record(_summary(), METHODS)
    assert record["networks"] == ["net1", "net2"] and record["real_method_count"] == 2
    assert record["methods_beating_random_deletion"] == {"net1": 1, "net2": 1}
    assert record["methods_beating_random_insertion"] == {"net1": 1, "net2": 1}
    assert record["methods_beating_random_iou05"] == {"net1": 1, "net2": 1}
    assert record["means"]["net1|B|insertion_auc"] == 4.0 and len(record["means"]) == 2 * 4 * 3


def test_sanity_lines_name_the_methods_in_words() -> None:
    lines = report.sanity_lines(_summary(), METHODS)
    assert lines[:3] == ["net1: beat the random map on insertion AUC: A",
                         "net1: beat the random map on deletion AUC: A",
                         "net1: worse than the centre Gaussian on insertion AUC: B"]
    assert len(lines) == 6


def _fame_summary() -> pd.DataFrame:
    """Hand-made Table 1 means on two networks with the labels the findings name."""
    means = {
        "FullGrad": (60.0, 2.0, 3.0, 70.0), "FAME": (30.0, 1.0, 2.5, 50.0), "FAME-paper-faithful": (35.0, 1.5, 2.0, 52.0),
        "Random": (33.0, 3.0, 2.8, 45.0), "Centre Gaussian": (40.0, 1.2, 2.6, 60.0),
    }
    metrics = ("iou@0.5 (default)", "insertion_auc", "deletion_auc", "iou@0.3 (default)")
    rows = [{"network": net, "method": report.method_label(m), "metric": metric, "mean": value + shift, "low": 0.0, "high": 99.0, "n": 4}
            for net, shift in (("net1", 0.0), ("net2", 0.5)) for m, values in means.items() for metric, value in zip(metrics, values)]
    return pd.DataFrame(rows)


def test_findings_name_winners_on_every_network_with_their_numbers() -> None:
    methods = ["FullGrad", "FAME", "FAME-paper-faithful", "Random", "Centre Gaussian"]
    lines = report.findings(_fame_summary(), methods, {"net1|0.5": 33.0, "net2|0.5": 34.0})
    assert lines[0] == "Networks: net1 / net2; every number below is given per network in that order."
    assert "expected IoU is 33.0 / 34.0; methods above it on every network: FullGrad, FAME (paper-faithful). FAME: 30.0 / 30.5; FullGrad: 60.0 / 60.5." in lines[1]
    # insertion: lower is better; Random 3.0/3.5, Centre 1.2/1.7 → all three beat Random, only FAME beats the centre prior
    assert "better than the random map on every network: FullGrad, FAME, FAME (paper-faithful);" in lines[2]
    assert "(1.20 / 1.70) on every network: FAME;" in lines[2] and lines[2].endswith("best method per network: FAME / FAME.")
    # deletion: higher is better; Random 2.8/3.3 → FullGrad only
    assert "(2.80 / 3.30) on every network: FullGrad; FAME 2.50 / 3.00." in lines[3]
    assert lines[4] == "Default vs paper-faithful FAME: IoU@0.3 50.0 / 50.5 vs 52.0 / 52.5; insertion 1.00 / 1.50 vs 1.50 / 2.00."


def test_class_similarity_line_ranks_most_class_specific_first() -> None:
    line = report.class_similarity_line({"Grad-CAM": 0.94, "Finer-CAM": -0.21, "FAME": 0.6})
    assert line == "Mean correlation between the class maps, most class-specific first: Finer-CAM -0.21, FAME 0.60, Grad-CAM 0.94."


def _tiny_spec() -> SimpleNamespace:
    module = pooled_classifier()
    spec = SimpleNamespace(**vars(fake_spec(resize=20, crop=16)), module=module, target_layer="0", device=torch.device("cpu"))
    spec.to_display = lambda tensor: (tensor.permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1).numpy()
    return spec


def _photos() -> list[ClassificationSample]:
    rng = np.random.default_rng(0)
    return [ClassificationSample(f"p{i}", Image.fromarray(rng.integers(0, 255, (20, 25, 3), dtype=np.uint8)), i, (2, 2, 14, 12)) for i in range(2)]


def test_benchmark_networks_sheets_and_class_maps_on_a_tiny_classifier() -> None:
    specs = {"tiny": _tiny_spec()}
    results = report.benchmark_networks(specs, _photos(), ["Grad-CAM", "Random", "Centre Gaussian"], FameConfig(iterations=2),
                                        torch.Generator().manual_seed(0), percents=(0, 50, 100))
    summary = report.combined_summary(results)
    assert set(summary["method"]) == {"Grad-CAM", "Random", "Centre Gaussian"} and set(summary["n"]) <= {2}
    fig = report.network_photo_sheet(results, specs, ["p1", "p0"], ["Grad-CAM"], photo_first=True, with_input=True)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]  # the sheet's panels, without its colour key
    assert [ax.get_ylabel() for ax in panels[::2]] == ["p1\ntiny", "p0\ntiny"]
    plt.close(fig)
    with pytest.raises(ValueError, match="'p9' was not benchmarked on tiny"):
        report.network_photo_sheet(results, specs, ["p9"], ["Grad-CAM"])
    maps = report.class_maps(specs["tiny"], results["tiny"].samples[0], [0, 1, 2], ["Grad-CAM"], FameConfig(iterations=2))
    assert maps["Grad-CAM"].shape == (3, 16, 16)
    assert not torch.equal(maps["Grad-CAM"][0], maps["Grad-CAM"][1])


def _prepared(boxes: list, size: int = 20) -> list:
    from fame_utils.evaluation.classification import PreparedSample

    image = torch.zeros(3, size, size)
    return [PreparedSample(f"p{k}", 0, image, image, {"default": box, "paper-faithful": None}) for k, box in enumerate(boxes)]


def test_expected_random_iou_is_the_kept_share_on_full_frame_boxes_and_q_b_over_union_otherwise() -> None:
    from fame_utils.evaluation.classification import expected_random_iou

    assert expected_random_iou(_prepared([(0, 0, 20, 20)]), 0.3) == pytest.approx(70.0)
    # b = 1/4, q = 1/2: (1/8) / (1/2 + 1/4 − 1/8) = 1/5; the photo without a box does not count.
    assert expected_random_iou(_prepared([(0, 0, 10, 10), None]), 0.5) == pytest.approx(20.0)
    assert expected_random_iou(_prepared([(0, 0, 20, 20), (0, 0, 10, 10)]), 0.5) == pytest.approx((50.0 + 20.0) / 2)
    with pytest.raises(ValueError, match="no sample has a 'paper-faithful' box"):
        expected_random_iou(_prepared([(0, 0, 10, 10)]), 0.5, convention="paper-faithful")
    with pytest.raises(ValueError, match="tau must lie in"):
        expected_random_iou(_prepared([(0, 0, 10, 10)]), 1.0)


def test_expected_random_iou_matches_seeded_uniform_noise() -> None:
    from fame_utils.baselines.reference import random_maps
    from fame_utils.metrics.classification import iou

    samples = _prepared([(10, 30, 110, 90)], size=128)
    noise = random_maps(torch.zeros(200, 3, 128, 128), seed=0)
    measured = 100 * np.mean([iou(noise[k], (10, 30, 110, 90), 0.5) for k in range(200)])
    assert measured == pytest.approx(report.random_iou_floor({"net": SimpleNamespace(samples=samples)})["net|0.5"], abs=0.2)
