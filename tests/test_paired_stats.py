"""Paired tests for Tables 1 and 2: Wilcoxon signed-rank p with the matched-pairs rank-biserial effect size, per-pair
verification AUCs, and the paired tables (one row per network × baseline × metric)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.stats import wilcoxon
from torch import nn

from fame_utils.evaluation.classification import paired_table
from fame_utils.evaluation.verification import paired_auc_table
from fame_utils.metrics.stats import bootstrap_ci, paired_comparison
from fame_utils.metrics.verification import VerificationCurves, bootstrap_auc_interval


# ---------------------------------------------------------------- paired_comparison
def test_rank_biserial_median_and_exact_p_by_hand() -> None:
    # d = reference − other = [2, −1, 0, 4, −3, 6]; the zero is dropped from the ranks: |d| = 2, 1, 4, 3, 6 → ranks 2, 1, 4, 3, 5.
    # T₊ = 2 + 4 + 5 = 11, T₋ = 1 + 3 = 4, r = (11 − 4) / 15; median of the six d = (0 + 2) / 2 = 1.
    # Exact two-sided p, n = 5 non-zero: subsets of {1..5} with rank sum ≤ 4 are {}, {1}, {2}, {3}, {4}, {1,2}, {1,3} → 2 · 7/32.
    result = paired_comparison([3, 5, 1, 8, 2, 9], [1, 6, 1, 4, 5, 3])
    assert result.n == 6
    assert result.median_difference == 1.0
    assert result.rank_biserial == pytest.approx(7 / 15, abs=1e-12)
    assert result.p_value == pytest.approx(14 / 32, abs=1e-12)


def test_rank_biserial_uses_average_ranks_for_tied_magnitudes() -> None:
    # d = [1, −1, 2]: |d| ranks 1.5, 1.5, 3 → T₊ = 4.5, T₋ = 1.5, r = 3 / 6.
    assert paired_comparison([1.0, 0.0, 2.0], [0.0, 1.0, 0.0]).rank_biserial == pytest.approx(0.5, abs=1e-12)


def test_symmetric_differences_give_zero_effect() -> None:
    result = paired_comparison([1, -1, 2, -2, 3, -3], [0] * 6)
    assert (result.rank_biserial, result.median_difference) == (0.0, 0.0)
    assert result.p_value == pytest.approx(1.0)


def test_all_positive_differences_give_effect_one_and_all_negative_minus_one() -> None:
    other = np.arange(7.0)
    assert paired_comparison(other + np.linspace(0.1, 3, 7), other).rank_biserial == 1.0
    assert paired_comparison(other, other + np.linspace(0.1, 3, 7)).rank_biserial == -1.0


def test_p_value_is_scipys_wilcoxon_on_the_pairs_without_nan() -> None:
    rng = np.random.default_rng(3)
    reference, other = rng.normal(size=30), rng.normal(0.4, 1.0, size=30)
    reference[[2, 11]], other[[5]] = np.nan, np.nan
    result = paired_comparison(reference, other)
    keep = np.isfinite(reference) & np.isfinite(other)
    assert result.n == 27
    assert result.p_value == wilcoxon(reference[keep], other[keep]).pvalue
    assert result.median_difference == pytest.approx(float(np.median(reference[keep] - other[keep])), abs=1e-12)


def test_all_zero_differences_give_no_effect_and_p_one() -> None:
    assert tuple(paired_comparison([0.5, 1.0, 2.0], [0.5, 1.0, 2.0])) == (3, 0.0, 0.0, 1.0)


def test_length_mismatch_names_both_lengths() -> None:
    with pytest.raises(ValueError, match="reference has 5 values, other has 4"):
        paired_comparison(np.zeros(5), np.zeros(4))


def test_no_finite_pair_is_refused() -> None:
    with pytest.raises(ValueError, match="none of the 2 units"):
        paired_comparison([np.nan, 1.0], [2.0, np.nan])


# ---------------------------------------------------------------- per-pair verification AUC
def _curves(deletion: list[list[float]], insertion: list[list[float]], labels: list[int], percents=(0.0, 20.0, 100.0)) -> VerificationCurves:
    return VerificationCurves(tuple(percents), np.asarray(deletion, dtype=float), np.asarray(insertion, dtype=float), np.asarray(labels), 0.5)


def test_pair_aucs_by_hand_and_their_mean_is_the_table_auc() -> None:
    # θ = 0.5, P = 0, 20, 100. Correct (deletion): genuine [0.9, 0.4, 0.2] → 1, 0, 0; impostor [0.6, 0.3, 0.1] → 0, 1, 1;
    # genuine [0.8, 0.7, 0.3] → 1, 1, 0. Trapezoid / 100 × 100: 20·½ = 10; 20·½ + 80 = 90; 20 + 80·½ = 60.
    curves = _curves([[0.9, 0.6, 0.8], [0.4, 0.3, 0.7], [0.2, 0.1, 0.3]], [[0.1, 0.2, 0.2], [0.6, 0.2, 0.9], [0.9, 0.1, 0.9]], [1, 0, 1])
    np.testing.assert_allclose(curves.pair_aucs("deletion"), [10.0, 90.0, 60.0], atol=1e-12)
    assert curves.pair_aucs("deletion").mean() == pytest.approx(curves.deletion_auc, abs=1e-12) == pytest.approx(160 / 3, abs=1e-12)
    # Insertion: genuine [0.1, 0.6, 0.9] → 0, 1, 1 → 90; impostor [0.2, 0.2, 0.1] → 1, 1, 1 → 100; genuine [0.2, 0.9, 0.9] → 90.
    np.testing.assert_allclose(curves.pair_aucs("insertion"), [90.0, 100.0, 90.0], atol=1e-12)
    assert curves.pair_aucs("insertion").mean() == pytest.approx(curves.insertion_auc, abs=1e-12)
    with pytest.raises(ValueError, match="kind"):
        curves.pair_aucs("both")


def test_table2_interval_is_the_scipy_bootstrap_of_the_mean_pair_auc() -> None:
    rng = np.random.default_rng(5)
    curves = _curves(rng.uniform(size=(3, 12)), rng.uniform(size=(3, 12)), [1, 0] * 6)
    _, low, high = bootstrap_ci(curves.pair_aucs("insertion"), 0.9, resamples=300, seed=4)
    assert bootstrap_auc_interval(curves, "insertion", n_boot=300, level=0.9, seed=4) == pytest.approx((low, high), abs=1e-9)


# ---------------------------------------------------------------- Table 2 paired table
def test_paired_auc_table_has_one_row_per_network_baseline_sweep_with_the_pair_auc_test() -> None:
    fame = _curves([[0.9, 0.6, 0.8], [0.4, 0.3, 0.7], [0.2, 0.1, 0.3]], [[0.1, 0.9, 0.2], [0.6, 0.2, 0.9], [0.9, 0.1, 0.9]], [1, 0, 1])
    same = _curves(fame.deletion_scores, fame.insertion_scores, [1, 0, 1])
    flat = _curves([[0.9, 0.1, 0.9]] * 3, [[0.9, 0.1, 0.9]] * 3, [1, 0, 1])  # always correct: per-pair AUC 100
    table = paired_auc_table({"net1": {"FAME": fame, "A": same, "B": flat}, "net2": {"B": flat, "FAME": fame}})
    assert list(zip(table["network"], table["baseline"], table["metric"])) == [
        ("net1", "A", "deletion AUC"), ("net1", "A", "insertion AUC"), ("net1", "B", "deletion AUC"), ("net1", "B", "insertion AUC"),
        ("net2", "B", "deletion AUC"), ("net2", "B", "insertion AUC")]
    assert set(table["reference"]) == {"FAME"}
    identical = table.iloc[0]
    assert (identical.n, identical.median_difference, identical.rank_biserial, identical.p_value) == (3, 0.0, 0.0, 1.0)
    # FAME − B on deletion: [10, 90, 60] − 100 = [−90, −10, −40], all negative.
    against_flat = table[(table.network == "net1") & (table.baseline == "B") & (table.metric == "deletion AUC")].iloc[0]
    assert (against_flat.median_difference, against_flat.rank_biserial) == (pytest.approx(-40.0), -1.0)
    assert against_flat.p_value == wilcoxon([10.0, 90.0, 60.0], [100.0] * 3).pvalue


def test_paired_auc_table_refuses_other_pairs_and_a_missing_reference() -> None:
    fame = _curves([[0.9, 0.6]] * 3, [[0.9, 0.6]] * 3, [1, 0])
    other = _curves([[0.9, 0.6]] * 3, [[0.9, 0.6]] * 3, [0, 1])
    with pytest.raises(ValueError, match="'A' was swept on 2 pairs with other labels"):
        paired_auc_table({"net": {"FAME": fame, "A": other}})
    with pytest.raises(ValueError, match="reference 'FAME' has no curves on net"):
        paired_auc_table({"net": {"A": other}})


# ---------------------------------------------------------------- Table 1 paired table
def _records() -> pd.DataFrame:
    rows = []
    values = {"FAME": [50.0, 60.0, np.nan, 40.0], "CAM": [40.0, 45.0, 30.0, 45.0], "Random": [10.0, 20.0, 30.0, np.nan]}
    for network in ("n1", "n2"):
        for method, ious in values.items():
            for k, value in enumerate(ious):
                rows.append({"network": network, "sample": f"s{k}", "method": method, "iou@0.5 (default)": value,
                             "deletion_auc": float(k) if method == "FAME" else 0.0, "road_morf_auc": np.nan})
    return pd.DataFrame(rows)


def test_paired_table_has_one_row_per_network_baseline_metric_on_the_same_photos() -> None:
    table = paired_table(_records())
    assert len(table) == 2 * 2 * 3
    assert table.groupby(["network", "baseline", "metric"]).size().eq(1).all()
    assert set(table["baseline"]) == {"CAM", "Random"} and set(table["reference"]) == {"FAME"}
    row = table[(table.network == "n1") & (table.baseline == "CAM") & (table.metric == "iou@0.5 (default)")].iloc[0]
    # Photos s0, s1, s3 (s2 lacks FAME): d = [10, 15, −5] → ranks 2, 3, 1, r = (5 − 1) / 6, median 10.
    assert (row.n, row.median_difference) == (3, 10.0) and row.rank_biserial == pytest.approx(4 / 6, abs=1e-12)
    assert row.p_value == wilcoxon([10.0, 15.0, -5.0]).pvalue
    random = table[(table.network == "n2") & (table.baseline == "Random") & (table.metric == "iou@0.5 (default)")].iloc[0]
    assert random.n == 2  # s2 lacks FAME, s3 lacks Random
    deletion = table[(table.network == "n1") & (table.baseline == "CAM") & (table.metric == "deletion_auc")].iloc[0]
    assert (deletion.n, deletion.median_difference, deletion.rank_biserial) == (4, 1.5, 1.0)  # d = [0, 1, 2, 3]
    empty = table[table.metric == "road_morf_auc"]
    assert (empty["n"] == 0).all() and empty[["median_difference", "rank_biserial", "p_value"]].isna().all().all()


def test_paired_table_needs_the_reference_method() -> None:
    with pytest.raises(ValueError, match="reference 'FAME-X' has no records on n1"):
        paired_table(_records(), reference="FAME-X")


def test_paired_table_on_a_real_benchmark_run() -> None:
    from fame_utils.evaluation.classification import ClassificationSample, prepare_samples, run_benchmark
    from fame_utils.fame import FameConfig
    from fame_utils.models.spec import ClassifierPreprocess

    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    spec = SimpleNamespace(name="tiny", preprocess=ClassifierPreprocess(20, 16, (0.5,) * 3, (0.5,) * 3), mean=(0.5,) * 3, std=(0.5,) * 3, bgr=False,
                           module=module, target_layer="0", device=torch.device("cpu"))
    rng = np.random.default_rng(0)
    photos = [ClassificationSample(f"p{i}", Image.fromarray(rng.integers(0, 255, (20, 25, 3), dtype=np.uint8)), i % 3, (2, 2, 14, 12)) for i in range(4)]
    result = run_benchmark(spec, prepare_samples(spec, photos), ["FAME", "Grad-CAM", "Random"], FameConfig(iterations=2, blur_kernel=5, blur_sigma=1.0), torch.Generator().manual_seed(0),
                           percents=(0, 50, 100), progress=False)
    table = paired_table(result.records)
    metrics = [c for c in result.records.columns if c not in ("network", "sample", "method")]
    assert len(table) == 2 * len(metrics) and set(table["n"]) == {4}
    records = result.records.set_index(["method", "sample"])
    row = table[(table.baseline == "Random") & (table.metric == "deletion_auc")].iloc[0]
    expected = paired_comparison(records.loc["FAME", "deletion_auc"].to_numpy(), records.loc["Random", "deletion_auc"].to_numpy())
    assert tuple(row[["n", "median_difference", "rank_biserial", "p_value"]]) == tuple(expected)
