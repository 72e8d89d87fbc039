"""Runtime tables behind Tab. 3 (notebook 07): the fit, the cost model and the table shapes — never timing goals."""

from __future__ import annotations

import time

import pytest
import torch

from fame_utils import fame
from fame_utils.baselines import VERIFICATION_METHODS
from fame_utils.workbook import nb07_timing as timing
from tiny_models import pooled_classifier, strided_embedder

TINY_FAME = fame.FameConfig(iterations=2, blur_kernel=5, blur_sigma=1.0)


def test_linear_fit_recovers_an_exact_line_and_a_hand_computed_noisy_one() -> None:
    assert timing.linear_fit([1, 2, 3], [3, 5, 7]) == pytest.approx((2.0, 1.0, 1.0))
    slope, intercept, r2 = timing.linear_fit([0, 1, 2, 3], [0, 1, 1, 2])
    assert (slope, intercept, r2) == pytest.approx((0.6, 0.1, 0.9))
    with pytest.raises(ValueError, match="two distinct x"):
        timing.linear_fit([5, 5], [1, 2])


def test_wall_seconds_measures_at_least_the_work() -> None:
    assert timing.wall_seconds(lambda: time.sleep(0.05)) >= 0.05


def test_iteration_runtime_explains_each_input_once_per_count(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = fame.explain_class
    monkeypatch.setattr(fame, "explain_class", lambda model, x, targets, config: calls.append((targets[0], config.iterations)) or original(model, x, targets, config))
    inputs = [(torch.rand(1, 3, 16, 16), 0), (torch.rand(1, 3, 16, 16), 2)]
    table = timing.iteration_runtime(pooled_classifier(), inputs, [1, 3], base_config=TINY_FAME)
    assert calls == [(0, 1), (2, 1), (0, 3), (2, 3)]
    assert table["iterations"].tolist() == [1, 3] and table["images"].tolist() == [2, 2]
    assert (table["seconds"] > 0).all()
    assert table["seconds_per_image"].tolist() == pytest.approx((table["seconds"] / 2).tolist())
    with pytest.raises(ValueError, match="at least one"):
        timing.iteration_runtime(pooled_classifier(), [], [1])


def test_passes_per_image_is_the_cost_model_of_each_method() -> None:
    assert [timing.passes_per_image(m, 128, 50, 500) for m in VERIFICATION_METHODS] == [
        "1 fwd + 1 bwd", "1 fwd + 1 bwd", "500 fwd", "1 fwd + 128 bwd", "100 fwd + 100 bwd"]
    with pytest.raises(ValueError, match="unknown verification method"):
        timing.passes_per_image("RISE", 128, 50, 500)


def test_verification_runtime_times_every_method_on_both_sides_of_each_pair() -> None:
    generator = torch.Generator().manual_seed(1)
    gallery, probes = torch.rand(2, 3, 16, 16, generator=generator), torch.rand(2, 3, 16, 16, generator=generator)
    table = timing.verification_runtime(strided_embedder(), "body", gallery, probes, threshold=0.1, fame_config=TINY_FAME, n_masks=8)
    assert table["method"].tolist() == list(VERIFICATION_METHODS)
    assert table.set_index("method").loc["FGGB", "passes_per_image"] == "1 fwd + 6 bwd"
    assert table.set_index("method").loc["FAME", "passes_per_image"] == "4 fwd + 4 bwd"
    assert (table["pairs"] == 2).all() and (table["images"] == 4).all() and (table["seconds"] > 0).all()
    with pytest.raises(ValueError, match="equal length"):
        timing.verification_runtime(strided_embedder(), "body", gallery, probes[:1], threshold=0.1)


def test_runtime_summary_orders_methods_and_scales_fame_to_the_paper_iterations() -> None:
    import pandas as pd

    table = pd.DataFrame({"method": ["Grad-CAM", "CorrRISE", "FAME", "FGGB"], "seconds_per_image": [0.1, 30.0, 6.0, 9.0]})
    lines = timing.runtime_summary(0.095, table, fame_iterations=50)
    assert lines[0].startswith("One FAME iteration costs 95 ms per image here (5.0× the paper's 19 ms")
    assert lines[1] == ("Per explained face, fastest first: Grad-CAM 0.1 s (0.017× FAME), FAME 6 s (1× FAME), "
                        "FGGB 9 s (1.5× FAME), CorrRISE 30 s (5× FAME).")
    assert lines[2] == "At the paper's T = 500, FAME's row would take ≈ 60 s per image; it would then be the slowest method."
    assert timing.runtime_summary(0.095, table, fame_iterations=500)[2].endswith("only FGGB, CorrRISE would still be slower.")
    with pytest.raises(ValueError, match="no FAME row"):
        timing.runtime_summary(0.1, table[table.method != "FAME"], fame_iterations=50)
