"""FAME step by step (notebook 02): each stage on tiny models with hand-computed results."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from tiny_models import linear_classifier, pointwise_net
from fame_utils import fame
from fame_utils.workbook import nb02_walkthrough as walkthrough


def _image() -> torch.Tensor:
    return torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))


def test_cell_gradient_of_a_pointwise_network_is_the_hand_computed_map_inside_its_cell() -> None:
    net = pointwise_net()
    image = _image()
    location = (1, 2)
    gradient = walkthrough.cell_gradient(image, fame.location_loss(net, "2", [location]), (4, 4), location)
    weights = net[0].weight[:, :, 0, 0].detach()
    expected = torch.zeros(16, 16)
    expected[4:8, 8:12] = weights.sum() / 16  # every channel is active (positive weights and inputs): Σ_k Σ_c w_ck / 16
    assert torch.allclose(gradient.gradient_map, expected, atol=1e-6)
    assert gradient.in_cell_mass == pytest.approx(1.0, abs=1e-6)
    assert gradient.uniform_mass == 1 / 16
    with torch.no_grad():
        assert gradient.loss == pytest.approx(float(net(image)[0, :, 1, 2].abs().sum()), rel=1e-6)


def test_first_step_moves_the_largest_gradient_elements_by_exactly_eta() -> None:
    weights = torch.tensor([1.0, -2.0, 0.5, 2.0, -0.25, 0.0, 1.5, -1.0, 0.0, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0]).reshape(1, 1, 4, 4)

    def linear_loss(x: torch.Tensor) -> torch.Tensor:
        return (x * weights).sum(dim=(1, 2, 3))

    image = torch.full((1, 1, 4, 4), 0.5)
    eta = 0.125
    step = walkthrough.first_step(image, linear_loss, fame.FameConfig(step_size=eta, iterations=50))
    assert torch.equal(step.delta, -eta * weights[0] / 2)
    assert step.max_change == eta
    assert step.elements_at_eta == 2
    assert step.loss_after == pytest.approx(float(linear_loss(image)) - eta * float((weights**2).sum()) / 2)


def test_postprocessing_stages_follow_eq_4_on_a_hand_made_perturbation() -> None:
    image = torch.zeros(1, 1, 8, 8)
    perturbed = image.clone()
    perturbed[0, 0, 2, 3] = 0.5
    perturbed[0, 0, 5, 1] = -0.25
    config = fame.FameConfig(blur_kernel=None)
    stages = walkthrough.postprocessing_stages(image, perturbed, config)
    assert torch.equal(stages["signed"], perturbed[0, 0])
    expected = torch.zeros(8, 8)
    expected[2, 3], expected[5, 1] = 1.0, 0.5
    assert torch.equal(stages["absolute"], expected) and torch.equal(stages["blurred"], expected)
    assert torch.allclose(stages["minmax"], expected / (1 + 1e-8)) and torch.allclose(stages["max"], expected / (1 + 1e-8))
    assert torch.equal(stages["attribution"], stages["minmax"])
    faithful = walkthrough.postprocessing_stages(image, perturbed, config.replace(paper_faithful=True, normalization="max"))
    assert torch.equal(faithful["attribution"], faithful["max"])


def test_postprocessing_stages_blur_then_normalise_to_zero_and_one() -> None:
    image = _image()
    perturbed = image + 0.01 * torch.randn(image.shape, generator=torch.Generator().manual_seed(1))
    stages = walkthrough.postprocessing_stages(image, perturbed, fame.FameConfig(blur_kernel=5, blur_sigma=1.0))
    assert float(stages["minmax"].min()) == 0 and float(stages["minmax"].max()) == pytest.approx(1, abs=1e-6)
    assert float(stages["max"].min()) > 0  # blurring lifts the floor: max-normalisation keeps it
    assert torch.allclose(stages["attribution"], fame.attribution(image, perturbed, fame.FameConfig(blur_kernel=5, blur_sigma=1.0))[0])


def test_class_modes_agree_while_the_logit_is_positive() -> None:
    net = linear_classifier()
    image = torch.full((1, 1, 4, 4), 10 / 16)  # z₀ = 10
    runs = walkthrough.class_mode_runs(net, image, 0, fame.FameConfig(step_size=1 / 16, iterations=4, blur_kernel=None))
    default, faithful = (runs[label] for label in walkthrough.CLASS_MODES)
    assert default.logit == faithful.logit == 6.0
    assert default.steps == faithful.steps == 4
    assert torch.equal(default.trace.losses[:, 0], torch.tensor([10.0, 9.0, 8.0, 7.0, 6.0]))


def test_class_modes_part_once_the_logit_crosses_zero() -> None:
    net = linear_classifier()
    image = torch.full((1, 1, 4, 4), 2.5 / 16)  # z₀ = 2.5, each step changes it by exactly 1
    runs = walkthrough.class_mode_runs(net, image, 0, fame.FameConfig(step_size=1 / 16, iterations=5, blur_kernel=None))
    default, faithful = (runs[label] for label in walkthrough.CLASS_MODES)
    assert default.logit == -2.5  # z₀ keeps falling
    assert torch.equal(faithful.trace.losses[:, 0], torch.tensor([2.5, 1.5, 0.5, 0.5, 0.5, 0.5]))  # |z₀| bounces around 0
    assert faithful.logit == -0.5 and faithful.steps == 5  # |z₀| never drops below ε = 1e-3


def test_figures_draw_the_expected_panels_and_curves() -> None:
    shown = np.zeros((16, 16, 3))
    net = pointwise_net()
    image = _image()
    loss_fn = fame.location_loss(net, "2", [(1, 2)])
    config = fame.FameConfig(step_size=0.01, iterations=3, blur_kernel=5, blur_sigma=1.0)
    trace = fame.OptimizationTrace()
    perturbed = fame.optimize(image, loss_fn, config, trace=trace)
    figures = {
        "cells": walkthrough.cells_figure(shown, (4, 4), (1, 2)),
        "gradient": walkthrough.gradient_figure(shown, walkthrough.cell_gradient(image, loss_fn, (4, 4), (1, 2)), (4, 4), (1, 2)),
        "step": walkthrough.first_step_figure(walkthrough.first_step(image, loss_fn, config), 0.01, (4, 4), (1, 2)),
        "post": walkthrough.postprocessing_figure(walkthrough.postprocessing_stages(image, perturbed, config), shown, config, (4, 4), (1, 2)),
    }
    assert [len(figures[name].axes) for name in figures] == [1, 2, 2, 6]
    assert len(figures["cells"].axes[0].patches) == 16 + 1
    assert [ax.get_title() for ax in figures["post"].axes][2] == "3 · blurred 5/1"
    class_runs = walkthrough.class_mode_runs(linear_classifier(), torch.full((1, 1, 4, 4), 0.5), 0, fame.FameConfig(step_size=1 / 16, iterations=2, blur_kernel=None))
    curves = walkthrough.loss_curves_figure(trace.losses[:, 0], (1, 2), class_runs, "tabby")
    assert [len(ax.get_lines()) for ax in curves.axes] == [1, 3]  # the location loss; two modes + the zero line
    assert curves.axes[1].get_title() == "class 'tabby'"
    plt.close("all")


def _recorded(location_steps: int) -> dict:
    return {"eta": 1 / 255, "snapshot_max_change": {"1": 1 / 255, "10": 8 / 255}, "location_steps": location_steps,
            "location_loss_final": 0.0, "gradient_in_cell_mass": 0.125, "uniform_in_cell_mass": 1 / 49,
            "map_in_cell_mass": 0.25, "one_step_elements_at_eta": 3, "loss_initial": 12.5, "logit_initial": 8.0,
            "logit_final": -2.5, "class_steps": 100, "logit_final_paper_faithful": 0.0004, "class_steps_paper_faithful": 40,
            "class_map_mode_correlation": 0.9}


def test_findings_quote_the_recorded_numbers() -> None:
    lines = walkthrough.findings(_recorded(location_steps=18), iterations=100)
    assert lines[0].startswith("Gradient of one location: 0.125 of its mass") and "0.020" in lines[0] and "0.250" in lines[0]
    assert "1.00 η after 1, 8.00 η after 10 steps" in lines[1] and "3 element(s)" in lines[1]
    assert "after 18 of T = 100 steps and stopped there" in lines[2]
    assert "8.00" in lines[3] and "-2.50 in 100 steps" in lines[3] and "0.00 in 40 steps" in lines[3] and "r = 0.900" in lines[3]


def test_findings_say_when_every_step_was_taken() -> None:
    assert walkthrough.findings(_recorded(location_steps=100), iterations=100)[2].endswith("after all T = 100 steps it is 0.")

