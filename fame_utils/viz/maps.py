"""Drawing primitives: images and maps as arrays, jet overlays, boxes, CAM-cell borders and blank axes.

A panel is the image blended with a jet heatmap at α = 0.5, ``(1 − α)·image + α·jet(map)``; the CAM cell of
location (i, j) on an h×w grid is drawn as a white 1-px border around its pixel rows and columns
(:func:`fame_utils.locality.cells.cell_bounds`). Knows nothing of methods, benchmarks or notebooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colorbar import Colorbar
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image

from fame_utils.locality.cells import cell_bounds

__all__ = ["ImageLike", "to_rgb", "to_map", "heatmap", "overlay", "draw_box", "draw_cell", "blank_axis", "map_colorbar"]

ImageLike = Any  # PIL image, (H, W, 3) / (H, W) array, or (3, H, W) / (H, W, 3) / (H, W) tensor


def to_rgb(image: ImageLike) -> np.ndarray:
    """Return ``image`` as an (H, W, 3) float64 array in [0, 1].

    Accepts a PIL image, a uint8 or float array (H, W, 3) or (H, W), or a tensor (3, H, W), (H, W, 3)
    or (H, W). Float input must already lie in [0, 1] (use ``ModelSpec.to_display`` for network tensors).

    Raises:
        ValueError: unsupported shape or float values outside [0, 1].
    """
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = image.permute(1, 2, 0)
        image = image.numpy()
    array = np.asarray(image)
    if array.dtype == np.uint8:
        array = array / 255.0
    array = array.astype(np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3), (3, H, W) or (H, W); got shape {array.shape}.")
    if array.size and (array.min() < -1e-6 or array.max() > 1 + 1e-6):
        raise ValueError(f"image values must lie in [0, 1] (got [{array.min():.3g}, {array.max():.3g}]); un-normalise network tensors first.")
    return np.clip(array, 0.0, 1.0)


def to_map(saliency: ImageLike) -> np.ndarray:
    """Return a saliency map (H, W) (tensor or array, a leading axis of 1 is dropped) as float64."""
    if isinstance(saliency, torch.Tensor):
        saliency = saliency.detach().cpu().numpy()
    array = np.asarray(saliency, dtype=np.float64)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"a saliency map must be (H, W), got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError("saliency map contains NaN or infinite values.")
    return array


def heatmap(saliency: ImageLike, cmap: str = "jet") -> np.ndarray:
    """Colour a map in [0, 1] with ``cmap``: (H, W) → (H, W, 3) float64 (values are clipped to [0, 1])."""
    colours = matplotlib.colormaps[cmap](np.clip(to_map(saliency), 0.0, 1.0))
    return colours[..., :3].astype(np.float64)


def overlay(image: ImageLike, saliency: ImageLike, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend: (1 − α)·image + α·cmap(saliency), (H, W, 3) float64 in [0, 1]. α = 0 gives the image, 1 the heatmap.

    Raises:
        ValueError: α outside [0, 1] or map and image of different sizes.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}.")
    rgb, colours = to_rgb(image), heatmap(saliency, cmap)
    if rgb.shape != colours.shape:
        raise ValueError(f"map size {colours.shape[:2]} differs from image size {rgb.shape[:2]}; compute the map at input resolution.")
    return (1.0 - alpha) * rgb + alpha * colours


def draw_box(ax: Axes, box: Sequence[float], color: str = "white", lw: float = 1, linestyle: str = "-") -> Rectangle:
    """Draw the end-exclusive pixel box ``(x0, y0, x1, y1)`` on an ``imshow`` axis (pixel centres at integers) and return the patch."""
    x0, y0, x1, y1 = box
    patch = Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=lw, linestyle=linestyle)
    ax.add_patch(patch)
    return patch


def draw_cell(ax: Axes, row: int, col: int, grid: int | Sequence[int], size: int | Sequence[int], color: str = "white", lw: float = 1) -> Rectangle:
    """Draw the CAM cell of location (row, col) on ``ax`` (an ``imshow`` of the image) and return the patch.

    The border runs along the pixel edges of rows [r0, r1) and columns [c0, c1) from
    :func:`fame_utils.locality.cells.cell_bounds`.
    """
    grid_hw = (grid, grid) if isinstance(grid, int) else tuple(grid)
    size_hw = (size, size) if isinstance(size, int) else tuple(size)
    r0, r1, c0, c1 = cell_bounds(row, col, grid_hw, size_hw)
    return draw_box(ax, (c0, r0, c1, r1), color, lw)


def blank_axis(ax: Axes) -> None:
    """Hide an axis' ticks and frame (the image panels of every sheet)."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def map_colorbar(fig: Figure, axes: Axes | Sequence[Axes], label: str = "map value", cmap: str = "jet", **kwargs: Any) -> Colorbar:
    """Colour key of the heatmaps on ``axes``: 0 (least attribution) to 1 (most), the range of every normalised map.

    Extra keyword arguments go to ``Figure.colorbar`` (e.g. ``location``, ``shrink``, ``fraction``).
    """
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=axes, **kwargs)
    bar.set_label(label, fontsize=8)
    bar.set_ticks([0.0, 0.5, 1.0])
    bar.ax.tick_params(labelsize=7)
    return bar
