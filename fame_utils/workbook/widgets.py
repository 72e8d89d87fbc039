"""Widgets for the notebooks: an :class:`Explorer` wires a drawing function to ``ipywidgets`` controls; the stage-cell
explorer (notebook 01), the FAME location explorer (notebook 02) and the face-pair explorer (notebook 05) are built on it.

In JupyterLab an explorer shows its controls above an ``ipywidgets.Output``; every change of a control redraws the
figure into that output, displays it explicitly and closes it. Batch runs (papermill, nbval) show one static figure
drawn with the controls' starting values. Knows nothing of sessions or benchmarks; only notebooks use it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from fame_utils.fame import FameConfig, explain_locations, feature_grid, sweep_sigma
from fame_utils.locality.cells import view_position
from fame_utils.viz.faces import FacePairExplanations, pair_method_figure
from fame_utils.viz.maps import draw_cell, overlay
from fame_utils.workbook.nb01_locality import NetworkView, show_network_cell

__all__ = [
    "ExplorerImage",
    "STATIC_WIDGETS_ENV",
    "Explorer",
    "widgets_live",
    "show_figure",
    "show_location_map",
    "location_explorer",
    "face_explorer",
    "stage_cell_explorer",
]

STATIC_WIDGETS_ENV = "FAME_STATIC_WIDGETS"
"""Set to 1 by ``fame_utils.workbook.run`` and ``make nbval``: batch runs draw one static preview per widget."""

ExplorerImage = tuple[torch.Tensor, np.ndarray]
"""One explorer entry: the network input (C, H, W) and the same image for display, (H, W, 3) in [0, 1]."""


def widgets_live() -> bool:
    """Whether to build live ``ipywidgets`` (True in JupyterLab).

    Batch runs (papermill, nbval) set ``FAME_STATIC_WIDGETS=1``: explorers then draw one figure with their
    starting values instead, because executing widget comms headless can hang the notebook client
    (jupyter/nbclient#312).
    """
    return os.environ.get(STATIC_WIDGETS_ENV, "").lower() not in {"1", "true", "yes"}


def show_figure(figure: Figure) -> Figure:
    """Display ``figure`` in the current output (a cell, or the ``ipywidgets.Output`` being drawn into), then close
    it in pyplot so the inline backend does not show it a second time. Works for figures pyplot does not manage."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    display(figure)
    plt.close(figure)
    return figure


class Explorer:
    """A drawing function wired to one ``ipywidgets`` control per keyword argument.

    Displayed in JupyterLab, it shows the controls above an output holding the figure and redraws the figure
    whenever a control changes. In batch runs (:func:`widgets_live` is False) it displays as the one figure drawn
    with the controls' starting values.

    Attributes:
        controls: argument name → control.
        figure: the last figure drawn.
        output: the ``ipywidgets.Output`` the figure is drawn into (None in batch runs).
    """

    def __init__(self, draw: Callable[..., Figure], **controls: Any) -> None:
        """Draw the first figure.

        Args:
            draw: returns one figure for the values of its keyword arguments (pyplot-managed or not).
            controls: one ``ipywidgets`` value control (slider, dropdown, …) per argument of ``draw``.

        Raises:
            ValueError: no controls, or a control that is not an ``ipywidgets.ValueWidget``.
        """
        import ipywidgets as widgets

        if not controls:
            raise ValueError("Explorer needs at least one control.")
        wrong = [name for name, control in controls.items() if not isinstance(control, widgets.ValueWidget)]
        if wrong:
            raise ValueError(f"controls {wrong} are not ipywidgets value controls (IntSlider, Dropdown, …).")
        self._draw = draw
        self.controls = dict(controls)
        self.figure: Figure | None = None
        self.output = None
        if not widgets_live():
            self.figure = self._draw_closed()
            return
        for name, control in self.controls.items():
            control.description = control.description or name
            control.observe(self._redraw, names="value")
        self.output = widgets.Output()
        self._panel = widgets.VBox([*self.controls.values(), self.output])
        self._redraw()

    def values(self) -> dict[str, Any]:
        """The controls' current values by argument name."""
        return {name: control.value for name, control in self.controls.items()}

    def _draw_closed(self) -> Figure:
        import matplotlib.pyplot as plt

        figure = self._draw(**self.values())
        plt.close(figure)
        return figure

    def _redraw(self, _change: Mapping[str, Any] | None = None) -> None:
        with self.output:
            self.output.clear_output(wait=True)
            self.figure = show_figure(self._draw(**self.values()))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.output is None:
            display(self.figure)
        else:
            display(self._panel)


def show_location_map(
    model: nn.Module,
    images: Mapping[str, ExplorerImage],
    image: str,
    layer: nn.Module | str,
    step_size: float = 1.0,
    iterations: int = 20,
    blur_kernel: int = 49,
    row: int = 3,
    col: int = 3,
    view_grid: int = 7,
    alpha: float = 0.5,
) -> Figure:
    """FAME map of one feature-map location of ``layer`` for ``images[image]``, over the photo with its CAM cell.

    Args:
        model: network in eval mode.
        images: name → (network input, display image).
        image: which entry to explain.
        layer: the layer (any stage) whose location is explained.
        step_size: η in units of 1/255.
        iterations: T (no early stop).
        blur_kernel: Gaussian kernel (0 = no blur); σ follows it (:func:`sweep_sigma`).
        row, col: position on a ``view_grid × view_grid`` grid, mapped to the layer's own grid, so the same
            sliders pick the same image region at every stage.
        alpha: overlay weight of the heatmap.

    Returns:
        A figure (not registered with pyplot) whose ``fame_map`` attribute holds the (H, W) map and
        ``location`` the explained (row, col) of the layer's grid.

    Raises:
        ValueError: unknown image, or a position outside the view grid.
    """
    if image not in images:
        raise ValueError(f"unknown image {image!r}; choose one of {sorted(images)}.")
    tensor, display = images[image]
    grid = feature_grid(model, layer, tensor)
    location = view_position(int(row), int(col), view_grid, grid)
    config = FameConfig(
        step_size=step_size / 255,
        iterations=int(iterations),
        blur_kernel=int(blur_kernel) if blur_kernel else None,
        blur_sigma=sweep_sigma(int(blur_kernel)) if blur_kernel else 1.0,
    )
    fame_map = explain_locations(model, layer, tensor, [location], config)[0].cpu().numpy()
    fig = Figure(figsize=(4.4, 4.4))
    ax = fig.add_subplot()
    ax.imshow(overlay(display, fame_map, alpha))
    draw_cell(ax, *location, grid, fame_map.shape)
    blur = f"blur {config.blur_kernel}/{config.blur_sigma:.1f}" if config.blur_kernel else "no blur"
    ax.set_title(f"{image} · {layer}: location {location} of {grid[0]}×{grid[1]}\nη = {step_size:g}/255, T = {iterations}, {blur}", fontsize=8)
    ax.axis("off")
    fig.fame_map = fame_map
    fig.location = location
    return fig


def location_explorer(
    model: nn.Module,
    layers: Sequence[str],
    images: Mapping[str, ExplorerImage],
    layer: str | None = None,
    view_grid: int = 7,
    max_iterations: int = 200,
    iterations: int = 20,
    blur_kernel: int = 49,
) -> Explorer:
    """An :class:`Explorer` over :func:`show_location_map`: image, layer, η, T, blur kernel, row and column.

    Args:
        model: network in eval mode.
        layers: the layers to choose from (e.g. every stage of the network).
        images: name → (network input, display image).
        layer: the starting layer (default: the last of ``layers``).
        view_grid: the row/column sliders span a ``view_grid × view_grid`` grid, mapped to each layer's grid.
        max_iterations: the iteration slider's maximum; ``iterations`` and ``blur_kernel`` are starting values.

    Sliders redraw on release only: each change re-runs FAME for one location.

    Raises:
        ValueError: no layers or images, or a starting layer that is not among ``layers``.
    """
    import ipywidgets as widgets

    if not layers or not images:
        raise ValueError("location_explorer needs at least one layer and one image.")
    start_layer = layers[-1] if layer is None else layer
    if start_layer not in layers:
        raise ValueError(f"starting layer {start_layer!r} is not one of {list(layers)}.")

    def draw(image: str, layer: str, step_size: float, iterations: int, blur_kernel: int, row: int, col: int) -> Figure:
        return show_location_map(model, images, image, layer, step_size, iterations, blur_kernel, row, col, view_grid)

    on_release = {"continuous_update": False}
    centre = view_grid // 2
    return Explorer(
        draw,
        image=widgets.Dropdown(options=sorted(images), description="image"),
        layer=widgets.Dropdown(options=list(layers), value=start_layer, description="layer"),
        step_size=widgets.FloatLogSlider(value=1.0, base=2, min=-2, max=3, step=1, description="η (/255)", **on_release),
        iterations=widgets.IntSlider(value=min(iterations, max_iterations), min=1, max=max_iterations, description="iterations", **on_release),
        blur_kernel=widgets.IntSlider(value=blur_kernel, min=1, max=75, step=2, description="blur kernel", **on_release),
        row=widgets.IntSlider(value=centre, min=0, max=view_grid - 1, description="row", **on_release),
        col=widgets.IntSlider(value=centre, min=0, max=view_grid - 1, description="col", **on_release),
    )


def face_explorer(explanations: Mapping[str, FacePairExplanations], method: str | None = None) -> Explorer:
    """An :class:`Explorer` over :func:`fame_utils.viz.faces.pair_method_figure`: network, pair and method.

    Args:
        explanations: network name → its explored pairs (the same pair numbers for every network).
        method: the starting method (default: the first one).

    The pair list shows each pair's number (as on the method sheets), whether it is genuine and both identities.

    Raises:
        ValueError: no networks, networks explored on different pairs, or an unknown starting method.
    """
    import ipywidgets as widgets

    if not explanations:
        raise ValueError("face_explorer needs the explanations of at least one network.")
    first = next(iter(explanations.values()))
    differing = [name for name, data in explanations.items() if np.asarray(data.pairs).tolist() != np.asarray(first.pairs).tolist()]
    if differing:
        raise ValueError(f"networks {differing} were explored on other pairs than {first.network} ({np.asarray(first.pairs).tolist()}).")
    methods = list(first.maps)
    start_method = methods[0] if method is None else method
    if start_method not in methods:
        raise ValueError(f"starting method {start_method!r} is not one of {methods}.")
    pairs = [(f"pair {pair} · {'genuine' if label else 'impostor'} · {gallery} / {probe}", int(pair))
             for pair, label, (gallery, probe) in zip(first.pairs, first.labels, first.identities)]

    def draw(network: str, pair: int, method: str) -> Figure:
        return pair_method_figure(explanations[network], pair, method)

    return Explorer(
        draw,
        network=widgets.Dropdown(options=list(explanations), description="network"),
        pair=widgets.Dropdown(options=pairs, description="pair", layout=widgets.Layout(width="40em")),
        method=widgets.Dropdown(options=methods, value=start_method, description="method"),
    )


def stage_cell_explorer(views: Mapping[str, NetworkView], view_grid: int = 7) -> Explorer:
    """An :class:`Explorer` over :func:`~fame_utils.workbook.nb01_locality.show_network_cell`: input, stage, row, column.

    Args:
        views: label (e.g. "network · image") → the network and the image to show.
        view_grid: the row/column sliders span a ``view_grid × view_grid`` grid, mapped to each stage's grid.

    The stage slider is an index, clamped to the chosen network's last stage.

    Raises:
        ValueError: no views.
    """
    import ipywidgets as widgets

    if not views:
        raise ValueError("stage_cell_explorer needs at least one view.")
    deepest = max(len(view.stages) for view in views.values()) - 1
    centre = view_grid // 2

    def draw(view: str, stage_index: int, row: int, col: int) -> Figure:
        return show_network_cell(dict(views), view, stage_index, row, col, view_grid)

    return Explorer(
        draw,
        view=widgets.Dropdown(options=list(views), description="input", layout=widgets.Layout(width="28em")),
        stage_index=widgets.IntSlider(value=min(3, deepest), min=0, max=deepest, description="stage"),
        row=widgets.IntSlider(value=centre, min=0, max=view_grid - 1, description="row"),
        col=widgets.IntSlider(value=centre, min=0, max=view_grid - 1, description="col"),
    )
