"""Notebook 02 (FAME built step by step): the measurements of each stage and the figures that show them.

Each function does one stage of the tutorial on one image — the gradient of one feature-map location, the
first LOTS step, the post-processing chain, the class loss in both modes — and returns plain numbers and
maps; the ``*_figure`` functions draw them with the location's CAM cell outlined. Only notebook 02 needs these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fame_utils import fame, viz
from fame_utils.fame import LossFn
from fame_utils.locality import Location, in_cell_mass

__all__ = [
    "CellGradient",
    "FirstStep",
    "ClassModeRun",
    "CLASS_MODES",
    "cell_gradient",
    "first_step",
    "postprocessing_stages",
    "class_mode_runs",
    "cells_figure",
    "gradient_figure",
    "first_step_figure",
    "postprocessing_figure",
    "loss_curves_figure",
    "findings",
]

CLASS_MODES = {"default (z_o)": False, "paper_faithful (|z_o|, ε = 1e-3)": True}
"""Label → ``paper_faithful`` for the two class-loss settings compared in :func:`class_mode_runs`."""


@dataclass
class CellGradient:
    """One backward pass of a location loss.

    Attributes:
        loss: L_a at the unperturbed image.
        gradient_map: |∂L_a/∂x| summed over channels, (H, W).
        in_cell_mass: share of the map's mass inside the location's CAM cell.
        uniform_mass: the share a uniform map would have (1 / number of cells).
    """

    loss: float
    gradient_map: torch.Tensor
    in_cell_mass: float
    uniform_mass: float


@dataclass
class FirstStep:
    """The first LOTS step x̄₁ = x − η g / max|g|.

    Attributes:
        delta: x̄₁ − x, (C, H, W).
        max_change: max |x̄₁ − x| (equals η: the largest gradient element moves by exactly η).
        elements_at_eta: how many elements moved by η (within 1e-7).
        loss_after: the loss at x̄₁.
    """

    delta: torch.Tensor
    max_change: float
    elements_at_eta: int
    loss_after: float


@dataclass
class ClassModeRun:
    """FAME with the class loss in one setting.

    Attributes:
        trace: the optimisation trace (loss per step).
        map: the FAME map, (H, W).
        logit: the class logit after the run.
        steps: LOTS steps taken (fewer than T when the early stop fires).
    """

    trace: fame.OptimizationTrace
    map: torch.Tensor
    logit: float
    steps: int


def cell_gradient(image: torch.Tensor, loss_fn: LossFn, grid: Sequence[int], location: Location) -> CellGradient:
    """Gradient of a location loss at ``image`` (1, C, H, W) and the share of it inside the location's cell."""
    probe = image.detach().clone().requires_grad_(True)
    loss = loss_fn(probe)
    (gradient,) = torch.autograd.grad(loss.sum(), probe)
    gradient_map = gradient[0].abs().sum(dim=0).detach()
    mass = float(in_cell_mass(gradient_map[None].cpu(), tuple(grid), [tuple(location)])[0])
    return CellGradient(float(loss.detach()[0]), gradient_map, mass, 1 / (grid[0] * grid[1]))


def first_step(image: torch.Tensor, loss_fn: LossFn, config: fame.FameConfig) -> FirstStep:
    """Take one LOTS step with ``config`` (its iteration count is ignored) and measure it."""
    stepped = fame.optimize(image, loss_fn, config.replace(iterations=1))
    delta = (stepped - image)[0]
    at_eta = torch.isclose(delta.abs(), torch.tensor(config.step_size, dtype=delta.dtype, device=delta.device), atol=1e-7, rtol=0)
    with torch.no_grad():
        loss_after = float(loss_fn(stepped)[0])
    return FirstStep(delta, float(delta.abs().max()), int(at_eta.sum()), loss_after)


def postprocessing_stages(image: torch.Tensor, perturbed: torch.Tensor, config: fame.FameConfig) -> dict[str, torch.Tensor]:
    """Every intermediate of Eq. (4) for one image, each (H, W).

    Keys: ``signed`` Gray(x̄) − Gray(x); ``absolute`` its pre-scaled magnitude; ``blurred``; ``minmax`` and
    ``max`` the two normalisations; ``attribution`` what :func:`fame_utils.fame.attribution` returns with
    ``config`` (equals ``minmax`` or ``max``, whichever the config uses).
    """
    signed = (fame.to_gray(perturbed) - fame.to_gray(image))[0]
    absolute = fame.perturbation_map(image, perturbed)
    blurred = fame.blur_map(absolute, config.blur_kernel, config.blur_sigma)
    return {"signed": signed, "absolute": absolute[0], "blurred": blurred[0],
            "minmax": fame.normalize_map(blurred, "minmax")[0], "max": fame.normalize_map(blurred, "max")[0],
            "attribution": fame.attribution(image, perturbed, config)[0]}


def class_mode_runs(model: nn.Module, image: torch.Tensor, target: int, config: fame.FameConfig, progress: bool = False) -> dict[str, ClassModeRun]:
    """FAME on the class loss in the default (z_o) and the paper-faithful (|z_o|, ε = 1e-3) setting.

    Returns:
        :data:`CLASS_MODES` label → :class:`ClassModeRun`.
    """
    runs = {}
    for label, faithful in CLASS_MODES.items():
        loss, settings = fame.class_objective(model, [target], config.replace(paper_faithful=faithful))
        trace = fame.OptimizationTrace()
        perturbed = fame.optimize(image, loss, settings, progress=progress, trace=trace)
        with torch.no_grad():
            logit = float(model(perturbed)[0, target])
        runs[label] = ClassModeRun(trace, fame.attribution(image, perturbed, settings)[0], logit, trace.steps)
    return runs


def _outline(ax, grid: Sequence[int], location: Location, size: Sequence[int], color: str = "white") -> None:
    viz.draw_cell(ax, *location, grid, size, color=color)
    ax.axis("off")


def cells_figure(shown: np.ndarray, grid: Sequence[int], location: Location):
    """The photo with every CAM cell of the grid in grey and the explained location in white."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(shown)
    for row in range(grid[0]):
        for col in range(grid[1]):
            viz.draw_cell(ax, row, col, grid, shown.shape[:2], color="0.8", lw=0.5)
    viz.draw_cell(ax, *location, grid, shown.shape[:2], color="white", lw=2)
    ax.set_title(f"{grid[0]}x{grid[1]} CAM cells; location {tuple(location)} in white", fontsize=9)
    ax.axis("off")
    return fig


def gradient_figure(shown: np.ndarray, gradient: CellGradient, grid: Sequence[int], location: Location):
    """The photo beside |∂L_a/∂x| (square root for contrast), both with the location's cell."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(7, 3.5))
    axes[0].imshow(shown)
    axes[1].imshow((gradient.gradient_map / gradient.gradient_map.max()).cpu().numpy() ** 0.5, cmap="magma")
    for ax, title in zip(axes, ["photo", "|∂L_a/∂x| (summed over channels, square root for contrast)"]):
        ax.set_title(title, fontsize=8)
        _outline(ax, grid, location, shown.shape[:2])
    return fig


def first_step_figure(step: FirstStep, eta: float, grid: Sequence[int], location: Location):
    """Gray(x̄₁ − x) signed, and the histogram of |Δ| / η over all elements."""
    import matplotlib.pyplot as plt

    gray = fame.to_gray(step.delta[None])[0].cpu().numpy()
    limit = np.abs(gray).max()
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.2))
    axes[0].imshow(gray, cmap="seismic", vmin=-limit, vmax=limit)
    axes[0].set_title("Gray(x̄₁ − x): one step, signed", fontsize=8)
    _outline(axes[0], grid, location, gray.shape, color="black")
    axes[1].hist((step.delta.abs() / eta).flatten().cpu().numpy(), bins=50, log=True)
    axes[1].set_xlabel("|Δ| / η per element")
    axes[1].set_title("most elements move far less than η", fontsize=8)
    return fig


def postprocessing_figure(stages: Mapping[str, torch.Tensor], shown: np.ndarray, config: fame.FameConfig, grid: Sequence[int], location: Location):
    """One panel per post-processing stage of :func:`postprocessing_stages`, plus the min–max map overlaid."""
    import matplotlib.pyplot as plt

    limit = float(stages["signed"].abs().max())
    maps = {"2 · abs, pre-scaled": stages["absolute"], f"3 · blurred {config.blur_kernel}/{config.blur_sigma:g}": stages["blurred"] / stages["blurred"].max(),
            "4a · min–max": stages["minmax"], "4b · max (paper text)": stages["max"]}
    fig, axes = plt.subplots(1, len(maps) + 2, figsize=(15, 2.9))
    axes[0].imshow(stages["signed"].cpu().numpy(), cmap="seismic", vmin=-limit, vmax=limit)
    axes[0].set_title("1 · Gray(x̄) − Gray(x)", fontsize=8)
    for ax, (title, panel) in zip(axes[1:], maps.items()):
        ax.imshow(panel.cpu().numpy(), cmap="jet", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    axes[-1].imshow(viz.overlay(shown, stages["minmax"]))
    axes[-1].set_title("overlay (min–max)", fontsize=8)
    for ax in axes:
        _outline(ax, grid, location, shown.shape[:2])
    return fig


def loss_curves_figure(location_losses: torch.Tensor, location: Location, class_runs: Mapping[str, ClassModeRun], class_name: str):
    """Loss per LOTS step: the location loss (left) and the class loss in each mode (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(location_losses.cpu().numpy())
    axes[0].set(xlabel="step", ylabel="L_a = ‖a[k]‖₁", title=f"location {tuple(location)}")
    for label, run in class_runs.items():
        axes[1].plot(run.trace.losses[:, 0].cpu().numpy(), label=label)
    axes[1].axhline(0, color="0.6", lw=0.8)
    axes[1].set(xlabel="step", ylabel="loss", title=f"class {class_name!r}")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def findings(results: Mapping[str, object], iterations: int) -> list[str]:
    """What notebook 02's numbers show, one sentence each, from the numbers it recorded (``Session.results``).

    Args:
        results: the recorded numbers (``gradient_in_cell_mass``, ``snapshot_max_change``, ``location_steps``, …).
        iterations: the T the location and class runs were given.
    """
    eta = float(results["eta"])
    changes = ", ".join(f"{float(change) / eta:.2f} η after {n}" for n, change in results["snapshot_max_change"].items())
    steps = int(results["location_steps"])
    stopped = (f"it reached {float(results['location_loss_final']):.3g} after {steps} of T = {iterations} steps and stopped there "
               "(a zero gradient moves nothing, so the remaining steps were skipped)" if steps < iterations
               else f"after all T = {iterations} steps it is {float(results['location_loss_final']):.3g}")
    return [
        f"Gradient of one location: {float(results['gradient_in_cell_mass']):.3f} of its mass lies in the CAM cell "
        f"(an even spread would put {float(results['uniform_in_cell_mass']):.3f} there); the FAME map keeps "
        f"{float(results['map_in_cell_mass']):.3f} in the cell.",
        f"LOTS steps: the largest pixel change is {changes} steps, never more than n·η; the first step moved "
        f"{int(results['one_step_elements_at_eta'])} element(s) by exactly η.",
        f"Location loss: {float(results['loss_initial']):.1f} before the first step; {stopped}.",
        f"Class logit z_o = {float(results['logit_initial']):.2f}: the default loss brings it to {float(results['logit_final']):.2f} "
        f"in {int(results['class_steps'])} steps, the paper-faithful |z_o| loss to {float(results['logit_final_paper_faithful']):.2f} "
        f"in {int(results['class_steps_paper_faithful'])} steps; the two class maps correlate at r = "
        f"{float(results['class_map_mode_correlation']):.3f}.",
    ]

