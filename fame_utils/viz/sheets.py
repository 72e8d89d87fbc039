"""Generic sheets: contact sheets, comparison grids (method × network), sweep sheets and a quick look at maps.

Missing panels are left blank; a sheet that shows maps gets a colour key (0 = least, 1 = most). Knows nothing of
methods, benchmarks or notebooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from fame_utils.viz.maps import ImageLike, blank_axis, draw_cell, heatmap, map_colorbar, overlay, to_map, to_rgb

__all__ = ["contact_sheet", "comparison_sheet", "sweep_sheet", "show_maps"]


def _panel(ax: Axes, panel: ImageLike | None, background: ImageLike | None, alpha: float, cmap: str) -> str | None:
    """Show one panel; a None panel (or a missing map) leaves the axis blank. Returns "map", "image" or None (blank)."""
    blank_axis(ax)
    if panel is None:
        return None
    if _is_map(panel):
        ax.imshow(overlay(background, panel, alpha, cmap) if background is not None else heatmap(panel, cmap), interpolation="nearest")
        return "map"
    ax.imshow(to_rgb(panel), interpolation="nearest")
    return "image"


def _is_map(panel: ImageLike) -> bool:
    if isinstance(panel, Image.Image):
        return False
    shape = tuple(panel.shape)
    return len(shape) == 2 or (len(shape) == 3 and shape[0] == 1)


def contact_sheet(
    panels: Sequence[ImageLike | None],
    rows: int,
    cols: int,
    titles: Sequence[str | None] | None = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    background: ImageLike | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    cells: Sequence[tuple[int, int] | None] | None = None,
    grid: int | Sequence[int] | None = None,
    panel_size: float = 1.4,
    title: str | None = None,
) -> Figure:
    """A rows × cols sheet filled row-major from ``panels``; None entries and missing panels stay blank.

    Args:
        panels: images (shown as they are) or maps (H, W) (overlaid on ``background`` if given).
        rows, cols: sheet layout; ``len(panels)`` may be smaller than rows·cols (ragged last row).
        titles: one per panel (None = no title).
        row_labels, col_labels: labels along the left edge / top.
        background: the image under every map.
        alpha, cmap: overlay settings.
        cells: per panel, the feature-map location whose CAM cell to outline (needs ``grid``).
        grid: feature-map size for ``cells``.
        panel_size: inches per panel.
        title: figure title.
    """
    if rows < 1 or cols < 1:
        raise ValueError(f"rows and cols must be positive, got {rows}×{cols}.")
    if len(panels) > rows * cols:
        raise ValueError(f"{len(panels)} panels do not fit a {rows}×{cols} sheet.")
    _check_optional_length(titles, len(panels), "titles")
    _check_optional_length(cells, len(panels), "cells")
    if cells is not None and grid is None:
        raise ValueError("cells were given without grid: pass the feature-map size, e.g. grid=7.")
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel_size, rows * panel_size), squeeze=False, layout="constrained")
    kinds = []
    for index, ax in enumerate(axes.flat):
        panel = panels[index] if index < len(panels) else None
        kinds.append(_panel(ax, panel, background, alpha, cmap))
        if kinds[-1] and titles is not None and titles[index]:
            ax.set_title(titles[index], fontsize=7)
        if kinds[-1] and cells is not None and cells[index] is not None:
            height, width = _panel_size(panel)
            draw_cell(ax, *cells[index], grid, (height, width))
    return _finish(fig, axes, row_labels, col_labels, title, cmap if "map" in kinds else None)


def comparison_sheet(
    maps: Mapping[tuple[str, str], ImageLike | None],
    row_names: Sequence[str],
    col_names: Sequence[str],
    backgrounds: ImageLike | Mapping[str, ImageLike] | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    panel_size: float = 1.4,
    title: str | None = None,
    missing_text: str = "n/a",
) -> Figure:
    """A method × network (or image × method) grid: ``maps[(row, col)]``; a missing or None entry is a blank cell.

    Args:
        maps: ``{(row_name, col_name): map (H, W)}``.
        row_names, col_names: order of rows and columns (also their labels).
        backgrounds: one image for all cells, or ``{row_name or col_name: image}`` (row name wins).
        missing_text: written in blank cells so readers see the gap is deliberate.
    """
    fig, axes = plt.subplots(len(row_names), len(col_names), figsize=(len(col_names) * panel_size, len(row_names) * panel_size),
                             squeeze=False, layout="constrained")
    kinds = []
    for i, row in enumerate(row_names):
        for j, col in enumerate(col_names):
            kinds.append(_panel(axes[i, j], maps.get((row, col)), _background_for(backgrounds, row, col), alpha, cmap))
            if kinds[-1] is None and missing_text:
                axes[i, j].text(0.5, 0.5, missing_text, ha="center", va="center", fontsize=7, color="0.5", transform=axes[i, j].transAxes)
    return _finish(fig, axes, row_names, col_names, title, cmap if "map" in kinds else None)


def sweep_sheet(
    sweeps: Mapping[str, Mapping[Any, ImageLike]],
    backgrounds: ImageLike | Mapping[str, ImageLike] | None = None,
    label: str = "{}",
    alpha: float = 0.5,
    panel_size: float = 1.4,
    title: str | None = None,
) -> Figure:
    """Rows = sweeps (e.g. one per network), columns = swept values labelled ``label.format(value)``.

    Columns are the union of all rows' values in first-seen order; a row without a value gets a blank cell.
    Maps may be (H, W) or (1, H, W).
    """
    columns: list[str] = []
    maps: dict[tuple[str, str], ImageLike] = {}
    for row, values in sweeps.items():
        for value, saliency in values.items():
            column = label.format(value)
            if column not in columns:
                columns.append(column)
            maps[(row, column)] = saliency
    return comparison_sheet(maps, list(sweeps), columns, backgrounds, alpha=alpha, panel_size=panel_size, title=title)


def show_maps(
    maps: torch.Tensor | np.ndarray | Sequence[ImageLike],
    image: ImageLike | None = None,
    titles: Sequence[str] | None = None,
    cols: int | None = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    panel_size: float = 2.0,
) -> Figure:
    """Quick look: each map (overlaid on ``image`` if given) in one row, or ``cols`` per row."""
    panels = list(maps)
    cols = cols or max(len(panels), 1)
    rows = max(-(-len(panels) // cols), 1)
    return contact_sheet(panels, rows, cols, titles=titles, background=image, alpha=alpha, cmap=cmap, panel_size=panel_size)


def _background_for(backgrounds: ImageLike | Mapping[str, ImageLike] | None, row: str, col: str) -> ImageLike | None:
    if isinstance(backgrounds, Mapping):
        return backgrounds.get(row, backgrounds.get(col))
    return backgrounds


def _panel_size(panel: ImageLike) -> tuple[int, int]:
    if isinstance(panel, Image.Image):
        return panel.height, panel.width
    shape = to_map(panel).shape if _is_map(panel) else to_rgb(panel).shape
    return int(shape[0]), int(shape[1])


def _check_optional_length(values: Sequence[Any] | None, expected: int, name: str) -> None:
    if values is not None and len(values) != expected:
        raise ValueError(f"{name} has {len(values)} entries for {expected} panels; give one per panel.")


def _label_edges(axes: np.ndarray, row_labels: Sequence[str] | None, col_labels: Sequence[str] | None) -> None:
    if row_labels is not None:
        if len(row_labels) != axes.shape[0]:
            raise ValueError(f"{len(row_labels)} row labels for {axes.shape[0]} rows.")
        for ax, label in zip(axes[:, 0], row_labels):
            ax.set_ylabel(label, fontsize=8)
    if col_labels is not None:
        if len(col_labels) != axes.shape[1]:
            raise ValueError(f"{len(col_labels)} column labels for {axes.shape[1]} columns.")
        for ax, label in zip(axes[0], col_labels):
            existing = ax.get_title()
            ax.set_title(f"{label}\n{existing}" if existing else label, fontsize=8)


def _finish(
    fig: Figure, axes: np.ndarray, row_labels: Sequence[str] | None, col_labels: Sequence[str] | None, title: str | None, key_cmap: str | None
) -> Figure:
    """Label the sheet's edges, add its title and, when it shows maps (``key_cmap``), their colour key on the right."""
    _label_edges(axes, row_labels, col_labels)
    if title:
        fig.suptitle(title, fontsize=10)
    if key_cmap:
        map_colorbar(fig, axes.ravel().tolist(), cmap=key_cmap, aspect=12 * axes.shape[0], pad=0.02)
    return fig
