"""Percentile deletion/insertion masks and the normalised area under a curve, shared by both tasks' metrics.

Both the classification metrics (ROAD deletion/insertion) and the verification sweep
rank a saliency map's pixels the same way:

* pixels are ordered by descending value; **equal values are ordered at random with a fixed seed** (the tie
  rule, docs/decisions.md#tie-rule), so every pixel has a distinct rank;
* at percent P the top ``k_P = ⌊P·N/100 + ½⌋`` ranked pixels (N = H·W) are removed by deletion and are
  the only ones shown by insertion.

So P = 0 deletes nothing, P = 100 deletes every pixel and inserts the whole image (the curve ends at the
clean score), and a map with flat regions (clipped at zero, or constant) still ranks all its pixels.
It knows nothing of networks or methods.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence, TypeVar

import numpy as np
import torch

__all__ = ["DEFAULT_PERCENTS", "PercentileMasks", "mask_extent", "normalized_auc", "percentile_masks"]

#: The 11 ratios P = 0, 10, …, 100 used by the paper's deletion/insertion sweeps.
DEFAULT_PERCENTS: tuple[int, ...] = tuple(range(0, 101, 10))

Map = TypeVar("Map", np.ndarray, torch.Tensor)


class PercentileMasks(NamedTuple):
    """Boolean keep-masks of shape ``(..., P, H, W)`` (one slice per requested percent).

    Attributes:
        deletion: True where the pixel is kept when the top-P % pixels are removed.
        insertion: True where the pixel is kept when only the top-P % pixels are shown; always the
            complement of ``deletion``.
    """

    deletion: np.ndarray | torch.Tensor
    insertion: np.ndarray | torch.Tensor


def _check_percents(percents: Sequence[float]) -> np.ndarray:
    values = np.asarray(list(percents), dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"percents must be a non-empty 1-D sequence of numbers in [0, 100], got {percents!r}.")
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 100:
        raise ValueError(f"percents must lie in [0, 100], got {values.tolist()}.")
    return values


def _as_numpy_map(saliency: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(saliency, torch.Tensor):
        array = saliency.detach().cpu().numpy()
    elif isinstance(saliency, np.ndarray):
        array = saliency
    else:
        raise TypeError(f"saliency must be a numpy array or torch tensor, got {type(saliency).__name__}.")
    if array.ndim < 2:
        raise ValueError(f"saliency must have shape (..., H, W), got shape {tuple(array.shape)}.")
    if array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError("saliency must be non-empty and finite (found NaN/inf or no pixels); check the map's normalisation.")
    return array


def percentile_masks(saliency: Map, percents: Sequence[float] = DEFAULT_PERCENTS, tie_seed: int = 0) -> PercentileMasks:
    """Deletion and insertion keep-masks for each percent P, ranked by ``saliency``.

    Pixels are ranked by descending value per map, ties in a random order drawn from ``tie_seed`` (one
    order per map size, so a map's masks do not depend on the other maps of the stack); the top
    ``k_P = ⌊P·N/100 + ½⌋`` are removed by deletion and shown by insertion.

    Args:
        saliency: one map ``(H, W)`` or a stack ``(..., H, W)`` (numpy array or torch tensor).
        percents: the percentages of top-ranked pixels to remove (deletion) or show (insertion), each in
            [0, 100].
        tie_seed: seed of the random order among equal values (same seed → same masks).

    Returns:
        :class:`PercentileMasks` with boolean masks of shape ``(..., len(percents), H, W)``, of the same
        kind (numpy or torch, device included) as ``saliency``.

    Raises:
        TypeError: ``saliency`` is neither a numpy array nor a torch tensor.
        ValueError: fewer than 2 dimensions, non-finite values, or a percent outside [0, 100].
    """
    values = _check_percents(percents)
    array = _as_numpy_map(saliency)
    flat = array.reshape(*array.shape[:-2], -1)
    tie_break = np.broadcast_to(np.random.default_rng(tie_seed).random(flat.shape[-1]), flat.shape)
    order = np.lexsort((tie_break, -flat), axis=-1)
    ranks = np.argsort(order, axis=-1).reshape(array.shape)
    counts = np.floor(values * flat.shape[-1] / 100.0 + 0.5).astype(np.int64)
    insertion = ranks[..., None, :, :] < counts[:, None, None]
    deletion = ~insertion
    if isinstance(saliency, torch.Tensor):
        return PercentileMasks(torch.from_numpy(deletion).to(saliency.device), torch.from_numpy(insertion).to(saliency.device))
    return PercentileMasks(deletion, insertion)


def mask_extent(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows of the keep-masks ``keep`` ``(N, H, W)`` keep every pixel (the clean image) and which keep none.

    A sweep knows the network's output on both without a forward pass.

    Returns:
        ``(full, empty)``: two boolean ``(N,)`` tensors.
    """
    flat = keep.flatten(1)
    return flat.all(dim=1), ~flat.any(dim=1)


def normalized_auc(values: Sequence[float] | np.ndarray | torch.Tensor, percents: Sequence[float] = DEFAULT_PERCENTS) -> float:
    """Normalised area under a curve sampled at ``percents``: ``trapezoid(values, percents) / (P_max − P_min)``.

    The result is in the units of ``values`` (a flat curve returns its level). Tables that report a
    percentage (e.g. the verification accuracy AUC) multiply this by 100 themselves.

    Args:
        values: the curve, one value per percent.
        percents: strictly increasing abscissae (at least two).

    Raises:
        ValueError: lengths differ, fewer than two points, percents not strictly increasing, or
            non-finite values.
    """
    curve = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    grid = np.asarray(list(percents), dtype=np.float64)
    if curve.ndim != 1 or curve.shape != grid.shape:
        raise ValueError(f"values and percents must be 1-D of the same length, got {curve.shape} and {grid.shape}.")
    if grid.size < 2 or np.any(np.diff(grid) <= 0):
        raise ValueError(f"percents must be at least two strictly increasing numbers, got {grid.tolist()}.")
    if not np.all(np.isfinite(curve)):
        raise ValueError(f"values must be finite, got {curve.tolist()}.")
    return float(np.trapezoid(curve, grid) / (grid[-1] - grid[0]))
