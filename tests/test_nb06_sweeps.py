"""Sweep tables (notebook 06) on hand-made maps and perturbations with known values."""

from __future__ import annotations

import pytest
import torch

from fame_utils.workbook import nb06_sweeps as sweeps
from fame_utils.fame import FameConfig


def _loss(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).sum(1)


def test_iteration_rows_report_change_bound_loss_and_correlation() -> None:
    image = torch.zeros(1, 1, 2, 2)
    perturbed = {1: image - 1 / 255, 3: image - 3 / 255}
    ramp = torch.arange(4.0).reshape(1, 2, 2)
    maps = {3: ramp, 1: 2 * ramp + 1}
    rows = sweeps.iteration_rows("net", image, _loss, maps, perturbed, FameConfig(iterations=3))
    assert [row["iterations"] for row in rows] == [1, 3]
    assert rows[0]["max_change_255"] == pytest.approx(1.0) and rows[1]["bound_255"] == pytest.approx(3.0)
    assert rows[1]["loss"] == pytest.approx(-12 / 255)
    assert rows[0]["corr_with_last"] == pytest.approx(1.0) and rows[0]["network"] == "net"


def test_blur_rows_give_sigma_and_the_area_above_half() -> None:
    saliency = torch.tensor([[[0.0, 0.5], [0.9, 0.2]]])
    rows = sweeps.blur_rows("net", {49: saliency, 5: torch.zeros(1, 2, 2)})
    assert rows[0] == {"network": "net", "kernel": 49, "sigma": 7.69, "area_above_half": 0.5}
    assert rows[1]["sigma"] == 0.78 and rows[1]["area_above_half"] == 0.0


def test_step_size_table_reports_eta_change_and_final_loss_in_grey_levels() -> None:
    image = torch.zeros(1, 1, 2, 2)
    table = sweeps.step_size_table(image, _loss, {1 / 255: image + 1 / 255, 4 / 255: image + torch.tensor([[[[4.0, 0], [0, 0]]]]) / 255})
    assert table["eta_255"].tolist() == pytest.approx([1.0, 4.0])
    assert table["mean_change_255"].tolist() == pytest.approx([1.0, 1.0])
    assert table["logit_after"].tolist() == pytest.approx([4 / 255, 4 / 255])
