"""Figures of the locality measurement: the CAM assumption, receptive fields against CAM cells, per-stage gradients,
in-cell mass against depth, one cell's gradient, and FAME maps per feature-map location (paper Fig. 1).

Draws measurements made by :mod:`fame_utils.locality`; knows nothing of notebooks or benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from fame_utils.locality.cells import Location, in_cell_mass
from fame_utils.locality.gradients import stage_cell_gradients
from fame_utils.locality.receptive_field import ReceptiveField
from fame_utils.viz.maps import blank_axis, draw_box, draw_cell, map_colorbar, overlay

__all__ = ["plot_cam_assumption", "plot_receptive_fields", "plot_stage_gradients", "plot_locality_vs_depth", "cell_figure", "plot_cell_rows"]


def plot_cam_assumption(display: np.ndarray, grid: Sequence[int] = (7, 7), location: Location = (2, 4)) -> Figure:
    """Three panels: the photo with the CAM grid, the one cell CAM attributes to ``location``, and the
    upsampled (nearest) one-hot map of that location — the patch CAM paints for it."""
    height, width = display.shape[:2]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.9), layout="constrained")
    axes[0].imshow(display)
    for r in range(grid[0]):
        for c in range(grid[1]):
            draw_cell(axes[0], r, c, grid, (height, width), lw=0.6)
    axes[0].set_title(f"the {grid[0]}×{grid[1]} feature-map grid\nover the image", fontsize=10)
    onehot = torch.zeros(1, 1, *grid)
    onehot[0, 0, location[0], location[1]] = 1
    upsampled = torch.nn.functional.interpolate(onehot, size=(height, width), mode="nearest")[0, 0].numpy()
    axes[1].imshow(display)
    draw_cell(axes[1], *location, grid, (height, width), lw=2)
    axes[1].set_title(f"location {location}\nand its CAM cell", fontsize=10)
    axes[2].imshow(display * (0.25 + 0.75 * upsampled[..., None]))
    axes[2].set_title("upsampled one-hot map:\nwhat CAM assumes the location sees", fontsize=10)
    for ax in axes:
        ax.axis("off")
    return fig


def plot_receptive_fields(views: Mapping[str, Any], tables: Mapping[str, pd.DataFrame]) -> Figure:
    """One row per network: the central location's CAM cell (white) and theoretical field (cyan) per stage.

    Args:
        views: per network, an object with a ``display`` image ``(H, W, 3)``.
        tables: per network, :func:`fame_utils.locality.stats.receptive_fields`.
    """
    columns = max(len(t) for t in tables.values())
    fig, axes = plt.subplots(len(tables), columns, figsize=(1.6 * columns, 1.8 * len(tables)), squeeze=False)
    for axes_row, (network, table) in zip(axes, tables.items()):
        display = views[network].display
        for ax in axes_row:
            ax.axis("off")
        for ax, entry in zip(axes_row, table.itertuples()):
            grid = tuple(int(v) for v in entry.grid.split("×"))
            ax.imshow(display)
            draw_box(ax, (entry.c0, entry.r0, entry.c1, entry.r1), "cyan", 1.5)
            draw_cell(ax, entry.row, entry.col, grid, display.shape[:2])
            size = getattr(entry, "rf_height", None)
            label = f"RF {int(size)} px" if size is not None and not pd.isna(size) else f"RF ≥ {entry.clipped_height} px"
            ax.set_title(f"{entry.stage}\n{entry.grid}, {label}", fontsize=7)
        axes_row[0].text(-0.1, 0.5, network, transform=axes_row[0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
    fig.suptitle("Theoretical receptive field (cyan) vs CAM cell (white) of the central location", fontsize=10)
    fig.tight_layout()
    return fig


def plot_stage_gradients(views: Mapping[str, Any], position: Location = (3, 3), view_grid: int = 7) -> Figure:
    """One row per network, one panel per stage: the input gradient of the cell under ``position``
    (on a ``view_grid²`` grid), with its CAM cell in white and its in-cell mass ρ in the title.

    Args:
        views: per network, an object with ``model``, ``stages``, ``image`` (the input) and ``display``.
    """
    columns = max(len(v.stages) for v in views.values())
    fig, axes = plt.subplots(len(views), columns, figsize=(1.6 * columns + 0.6, 1.8 * len(views)), squeeze=False, layout="constrained")
    for axes_row, (network, view) in zip(axes, views.items()):
        for ax in axes_row:
            ax.axis("off")
        for ax, (stage, location, grid, gradient) in zip(axes_row, stage_cell_gradients(view.model, view.stages, view.image, position, view_grid)):
            ax.imshow(overlay(view.display, gradient / gradient.max().clamp_min(1e-12)))
            draw_cell(ax, *location, grid, gradient.shape)
            mass = f"ρ={float(in_cell_mass(gradient[None], grid, [location])[0]):.2f}" if gradient.sum() > 0 else "dead cell"
            ax.set_title(f"{stage}\n{grid[0]}×{grid[1]}, {mass}", fontsize=7)
        axes_row[0].text(-0.1, 0.5, network, transform=axes_row[0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
    map_colorbar(fig, axes.ravel().tolist(), label="|gradient| / its maximum", aspect=12 * len(views), pad=0.01)
    fig.suptitle("Input gradient of one cell per stage (white: its CAM cell)", fontsize=10)
    return fig


def plot_locality_vs_depth(summary: pd.DataFrame, target_layers: Mapping[str, str] | None = None, x: str = "relative_depth") -> Figure:
    """The quantity the locality verdict rests on, per stage: ρ / ρ_uniform, how many times more of a cell's gradient lies
    in its CAM cell than a uniform map would put there (1 = no concentration at all). One panel per weights setting
    (trained, random), one line per network with its band (:func:`fame_utils.locality.stats.summarize_locality`);
    a large hollow marker at each network's CAM layer (``target_layers``: network → stage)."""
    settings = sorted(dict.fromkeys(summary["weights"]), key=lambda setting: setting != "trained")
    fig, axes = plt.subplots(1, len(settings), figsize=(5.6 * len(settings), 4.4), sharey=True, squeeze=False, layout="constrained")
    colours = dict(zip(dict.fromkeys(summary["network"]), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for ax, setting in zip(axes[0], settings):
        for network, group in summary[summary["weights"] == setting].groupby("network", sort=False):
            group = group.sort_values(x)
            colour = colours[network]
            ax.plot(group[x], group["ratio"], marker="o", markersize=4, color=colour, label=network)
            ax.fill_between(group[x], group["low"] / group["uniform"], group["high"] / group["uniform"], color=colour, alpha=0.2)
            cam = group[group["stage"] == (target_layers or {}).get(network)]
            ax.plot(cam[x], cam["ratio"], linestyle="none", marker="o", markersize=13, markerfacecolor="none", markeredgecolor=colour, markeredgewidth=2)
        ax.axhline(1.0, color="0.3", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(f"{setting} weights", fontsize=10)
        ax.set_xlabel("relative depth (conv layers / conv layers at last stage)" if x == "relative_depth" else x)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("ρ / ρ_uniform (in-cell mass over a uniform map's)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    handles += [Line2D([], [], linestyle="none", marker="o", markersize=11, markerfacecolor="none", markeredgecolor="0.3", markeredgewidth=2),
                Line2D([], [], color="0.3", linestyle=":")]
    labels += ["CAM layer", "uniform map (ratio 1)"]
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
    fig.suptitle("How concentrated a cell's input gradient is in its CAM cell, by depth", fontsize=11)
    return fig


def cell_figure(
    display: np.ndarray, gradient: torch.Tensor, location: Location, grid: Sequence[int], field: ReceptiveField, mass: float | None, title: str
) -> Figure:
    """One cell's gradient map over the image with its CAM cell (white) and theoretical receptive field (cyan, dashed);
    ``mass`` is its in-cell mass ρ (None: an all-zero gradient)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(display)
    ax.imshow((gradient / gradient.max().clamp_min(1e-12)).numpy(), cmap="jet", alpha=0.5)
    draw_cell(ax, *location, grid, gradient.shape, lw=1.5)
    draw_box(ax, (field.c0, field.r0, field.c1, field.r1), "cyan", 1.5, "--")
    shown = "all-zero gradient (dead cell)" if mass is None else f"ρ = {mass:.3f}"
    ax.set_title(f"{title}\n{shown}; receptive field {field.height}×{field.width} px", fontsize=9)
    ax.axis("off")
    return fig


def plot_cell_rows(rows: Sequence[tuple[str, np.ndarray, Mapping[Location, torch.Tensor], tuple[int, int], int]], alpha: float = 0.5) -> Figure:
    """Paper Fig. 1 layout: one figure row per ``(label, display, maps by location, grid, feature-map row)``;
    panel ``c`` shows the map of location (row, c) over the image with its white 1-px CAM cell border
    (missing maps stay blank)."""
    columns = max(grid[1] for _, _, _, grid, _ in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.4 * columns + 0.6, 1.5 * len(rows)), squeeze=False, layout="constrained")
    for axes_row, (label, display, maps, grid, row) in zip(axes, rows):
        for col, ax in enumerate(axes_row):
            blank_axis(ax)
            if (row, col) not in maps:
                continue
            ax.imshow(overlay(display, maps[(row, col)], alpha))
            draw_cell(ax, row, col, grid, display.shape[:2])
            ax.set_title(f"({row}, {col})", fontsize=7)
        axes_row[0].set_ylabel(f"{label}\nrow {row}", fontsize=7)
    map_colorbar(fig, axes.ravel().tolist(), label="FAME map", aspect=12 * len(rows), pad=0.01)
    return fig
