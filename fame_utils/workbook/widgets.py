"""Widgets for the notebooks: the live/static switch, and the FAME location explorer (plain callbacks returning a figure).

:func:`show_location_map` runs FAME for one feature-map location of one image and draws the map over
the photo with the location's CAM cell. :func:`location_explorer` wires it to sliders; the notebook
cell only displays what it returns. Only notebooks use this module.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from fame_utils.fame import FameConfig, explain_locations, feature_grid, sweep_sigma
from fame_utils.viz.maps import draw_cell, overlay

__all__ = ["ExplorerImage", "STATIC_WIDGETS_ENV", "widgets_live", "interact_or_show", "show_location_map", "location_explorer"]

STATIC_WIDGETS_ENV = "FAME_STATIC_WIDGETS"
"""Set to 1 by ``fame_utils.workbook.run`` and ``make nbval``: batch runs draw one static preview per widget."""

ExplorerImage = tuple[torch.Tensor, np.ndarray]
"""One explorer entry: the network input (C, H, W) and the same image for display, (H, W, 3) in [0, 1]."""


def widgets_live() -> bool:
    """Whether to build live ``ipywidgets`` (True in JupyterLab).

    Batch runs (papermill, nbval) set ``FAME_STATIC_WIDGETS=1``: the notebooks then call the widget's
    callback once with its starting values instead, because executing widget comms headless can hang
    the notebook client (jupyter/nbclient#312). The callbacks themselves are unit-tested.
    """
    return os.environ.get(STATIC_WIDGETS_ENV, "").lower() not in {"1", "true", "yes"}


def interact_or_show(draw: Callable[..., Any], start: Mapping[str, Any], **controls: Any) -> Any:
    """Wire a drawing function to widgets in JupyterLab, or draw it once with its starting values in batch runs.

    Args:
        draw: draws one figure for the values of its keyword arguments (its return value is ignored).
        start: the values drawn in batch runs (:func:`widgets_live` is False).
        controls: one ``ipywidgets`` control (or abbreviation) per argument of ``draw``.

    Returns:
        The ``ipywidgets.interactive`` to display when live, else None (the figure is already shown).
    """
    import matplotlib.pyplot as plt

    @functools.wraps(draw)
    def show(**values: Any) -> None:
        draw(**values)
        plt.show()

    if not widgets_live():
        show(**start)
        return None
    import ipywidgets as widgets

    return widgets.interactive(show, **controls)


def show_location_map(
    model: nn.Module,
    layer: nn.Module | str,
    images: Mapping[str, ExplorerImage],
    image: str,
    step_size: float = 1.0,
    iterations: int = 20,
    blur_kernel: int = 49,
    row: int = 0,
    col: int = 0,
    alpha: float = 0.5,
) -> Figure:
    """FAME map of location (row, col) of ``layer`` for ``images[image]``, over the photo with its CAM cell.

    Args:
        model, layer: network (eval mode) and the layer whose location is explained.
        images: name → (network input, display image).
        image: which entry to explain.
        step_size: η in units of 1/255.
        iterations: T (no early stop).
        blur_kernel: Gaussian kernel (0 = no blur); σ follows it (:func:`sweep_sigma`).
        row, col: the location (clipped to the layer's grid, so one slider range fits every image size).
        alpha: overlay weight of the heatmap.

    Returns:
        A figure (not registered with pyplot) whose ``fame_map`` attribute holds the (H, W) map and
        ``location`` the explained (row, col).
    """
    if image not in images:
        raise ValueError(f"unknown image {image!r}; choose one of {sorted(images)}.")
    tensor, display = images[image]
    grid = feature_grid(model, layer, tensor)
    location = (min(max(int(row), 0), grid[0] - 1), min(max(int(col), 0), grid[1] - 1))
    config = FameConfig(
        step_size=step_size / 255,
        iterations=int(iterations),
        blur_kernel=int(blur_kernel) if blur_kernel else None,
        blur_sigma=sweep_sigma(int(blur_kernel)) if blur_kernel else 1.0,
    )
    fame_map = explain_locations(model, layer, tensor, [location], config)[0].cpu().numpy()
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.imshow(overlay(display, fame_map, alpha))
    draw_cell(ax, *location, grid, fame_map.shape)
    blur = f"blur {config.blur_kernel}/{config.blur_sigma:.1f}" if config.blur_kernel else "no blur"
    ax.set_title(f"{image}: location {location} of {grid[0]}×{grid[1]}\nη = {step_size:g}/255, T = {iterations}, {blur}", fontsize=8)
    ax.axis("off")
    fig.fame_map = fame_map
    fig.location = location
    return fig


def location_explorer(
    model: nn.Module,
    layer: nn.Module | str,
    images: Mapping[str, ExplorerImage],
    grid: tuple[int, int] = (7, 7),
    max_iterations: int = 200,
    iterations: int = 20,
    blur_kernel: int = 49,
):
    """An ``ipywidgets.interactive`` over :func:`show_location_map` (image, η, T, blur, row, col).

    Sliders update on release only (each change re-runs FAME). ``.result`` holds the last figure.
    ``iterations`` and ``blur_kernel`` are the sliders' starting values. In batch runs
    (:func:`widgets_live` is False) the figure for the starting values is returned instead.
    """
    import ipywidgets as widgets

    start = dict(step_size=1.0, iterations=min(iterations, max_iterations), blur_kernel=blur_kernel, row=grid[0] // 2, col=grid[1] // 2)
    if not widgets_live():
        return show_location_map(model, layer, images, sorted(images)[0], **start)

    def callback(image: str, step_size: float, iterations: int, blur_kernel: int, row: int, col: int) -> Figure:
        return show_location_map(model, layer, images, image, step_size, iterations, blur_kernel, row, col)

    continuous = {"continuous_update": False}
    return widgets.interactive(
        callback,
        image=widgets.Dropdown(options=sorted(images), description="image"),
        step_size=widgets.FloatLogSlider(value=start["step_size"], base=2, min=-2, max=3, step=1, description="η (/255)", **continuous),
        iterations=widgets.IntSlider(value=start["iterations"], min=1, max=max_iterations, description="iterations", **continuous),
        blur_kernel=widgets.IntSlider(value=start["blur_kernel"], min=1, max=75, step=2, description="blur kernel", **continuous),
        row=widgets.IntSlider(value=start["row"], min=0, max=grid[0] - 1, description="row", **continuous),
        col=widgets.IntSlider(value=start["col"], min=0, max=grid[1] - 1, description="col", **continuous),
    )
