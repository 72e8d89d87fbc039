"""CAM cells and in-cell attribution mass: the geometry of CAM's locality assumption.

CAM-style methods upsample an ``h×w`` feature map to the image, as if location ``(r, c)`` saw only the image
patch under it, its *CAM cell*: rows ``[⌊r·H/h⌉, ⌊(r+1)·H/h⌉)`` and the same for columns (paper Sec. 4.1). This
module measures how much of a location's attribution falls in that cell:

    ρ_k = Σ_{p ∈ cell k} A_k(p) / Σ_p A_k(p)

(an extension beyond the paper, docs/decisions.md#in-cell-mass). A uniform map gives ρ = cell area / image area,
a map entirely inside its cell gives 1.

Rounding: cell edges use round-half-up, ``⌊x + 0.5⌋``, computed in integers. Python's ``round`` rounds
ties to even; the two differ only when ``r·H/h`` is exactly ``k + 0.5`` (never for a 7×7 grid on 224
or 112 pixels). Half-up keeps cells of equal size when ties occur on both edges.

Pure geometry on maps: it knows nothing of networks, gradients or plotting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fame_utils.fame.explain import all_locations

__all__ = ["Location", "cell_bounds", "cell_masks", "in_cell_mass", "uniform_mass", "view_position"]

Location = tuple[int, int]


def _round_half_up_ratio(numerator: int, denominator: int) -> int:
    """``⌊numerator/denominator + 0.5⌋`` in exact integer arithmetic."""
    return (2 * numerator + denominator) // (2 * denominator)


def _check_grid(grid: Sequence[int], size: Sequence[int]) -> tuple[int, int, int, int]:
    if len(grid) != 2 or len(size) != 2:
        raise ValueError(f"grid and size must be (rows, cols) pairs, got grid={tuple(grid)}, size={tuple(size)}.")
    h, w = (int(v) for v in grid)
    height, width = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"grid must be positive, got {tuple(grid)}.")
    if height < h or width < w:
        raise ValueError(f"image size {(height, width)} is smaller than the grid {(h, w)}: every cell needs at least one pixel.")
    return h, w, height, width


def cell_bounds(row: int, col: int, grid: Sequence[int], size: Sequence[int]) -> tuple[int, int, int, int]:
    """Pixel box ``(r0, r1, c0, c1)`` (half-open) of the CAM cell of location ``(row, col)``.

    ``r0 = ⌊row·H/h + 0.5⌋``, ``r1 = ⌊(row+1)·H/h + 0.5⌋`` and the same for columns.

    Args:
        row, col: the feature-map location.
        grid: feature-map size ``(h, w)``.
        size: image size ``(H, W)``.
    """
    h, w, height, width = _check_grid(grid, size)
    if not (0 <= row < h and 0 <= col < w):
        raise ValueError(f"location {(row, col)} lies outside the {h}×{w} grid.")
    return (
        _round_half_up_ratio(row * height, h),
        _round_half_up_ratio((row + 1) * height, h),
        _round_half_up_ratio(col * width, w),
        _round_half_up_ratio((col + 1) * width, w),
    )


def cell_masks(grid: Sequence[int], size: Sequence[int], locations: Sequence[Location] | None = None) -> torch.Tensor:
    """Boolean masks ``(L, H, W)`` of the CAM cells of ``locations`` (default: all, row-major)."""
    chosen = all_locations(grid) if locations is None else list(locations)
    height, width = (int(v) for v in size)
    masks = torch.zeros(len(chosen), height, width, dtype=torch.bool)
    for index, (row, col) in enumerate(chosen):
        r0, r1, c0, c1 = cell_bounds(row, col, grid, size)
        masks[index, r0:r1, c0:c1] = True
    return masks


def uniform_mass(grid: Sequence[int], size: Sequence[int], locations: Sequence[Location] | None = None) -> torch.Tensor:
    """ρ of a uniform map per location: cell area / image area, shape ``(L,)``, float64."""
    masks = cell_masks(grid, size, locations)
    return masks.flatten(1).sum(1).double() / float(masks.shape[1] * masks.shape[2])


def in_cell_mass(maps: torch.Tensor | np.ndarray, grid: Sequence[int], locations: Sequence[Location] | None = None) -> torch.Tensor:
    """Fraction of each map's total mass inside its own CAM cell.

    ``ρ_k = Σ_{p ∈ cell k} A_k(p) / Σ_p A_k(p)``.

    Args:
        maps: ``(L, H, W)`` non-negative maps (FAME maps or gradient magnitudes), one per location.
        grid: feature-map size ``(h, w)``.
        locations: the ``(row, col)`` of each map; default all ``h·w`` locations in row-major order
            (then ``L`` must equal ``h·w``).

    Returns:
        ``(L,)`` float64 tensor in [0, 1].

    Raises:
        ValueError: wrong shape, length mismatch, NaN/inf or negative values, or an all-zero map
            (its mass is undefined; the message lists which maps, so the caller can drop them).
    """
    maps = torch.as_tensor(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (L, H, W), got {tuple(maps.shape)}.")
    chosen = all_locations(grid) if locations is None else list(locations)
    if len(chosen) != maps.shape[0]:
        what = f"{len(chosen)} locations" if locations is not None else f"a {grid[0]}×{grid[1]} grid ({len(chosen)} locations)"
        raise ValueError(f"got {maps.shape[0]} maps for {what}; pass one map per location.")
    values = maps.detach().to("cpu", torch.float64)
    if not torch.isfinite(values).all():
        raise ValueError("maps contain NaN or inf values.")
    if (values < 0).any():
        raise ValueError("maps must be non-negative (use attribution maps or gradient magnitudes).")
    totals = values.flatten(1).sum(1)
    empty = torch.nonzero(totals == 0).flatten().tolist()
    if empty:
        raise ValueError(f"maps {empty[:10]}{' …' if len(empty) > 10 else ''} are all zero: their in-cell mass is undefined; drop them first.")
    masks = cell_masks(grid, values.shape[1:], chosen)
    return (values * masks).flatten(1).sum(1) / totals


def view_position(row: int, col: int, view_grid: int, grid: Sequence[int]) -> Location:
    """The cell of ``grid`` under the centre of position ``(row, col)`` of a ``view_grid²`` grid.

    Lets one pair of sliders pick the same image region at every stage, whatever its grid size.
    """
    if not (0 <= row < view_grid and 0 <= col < view_grid):
        raise ValueError(f"position {(row, col)} lies outside the {view_grid}×{view_grid} view grid.")
    return (int((row + 0.5) * grid[0] / view_grid), int((col + 0.5) * grid[1] / view_grid))
