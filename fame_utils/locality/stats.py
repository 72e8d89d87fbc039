"""Per-stage tables of the locality measurement: gradient in-cell mass per stage, its summary with bootstrap bands,
and the receptive field of each stage's central location.

Builds pandas tables from the cell, gradient and receptive-field measurements; it knows nothing of plotting or notebooks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fame_utils._checks import single_image
from fame_utils.fame.explain import all_locations
from fame_utils.locality.cells import Location, in_cell_mass, uniform_mass
from fame_utils.locality.gradients import stage_gradients
from fame_utils.locality.receptive_field import linearised_copy, stage_supports, unclipped_sizes
from fame_utils.locality.stages import stage_shapes
from fame_utils.metrics.stats import bootstrap_interval
from fame_utils.runtime import LOCATION_BATCH

__all__ = ["locality_by_stage", "bootstrap_band", "summarize_locality", "receptive_fields"]


def _sample_locations(grid: tuple[int, int], max_cells: int, generator: torch.Generator) -> list[Location]:
    every = all_locations(grid)
    if len(every) <= max_cells:
        return every
    picked = torch.randperm(len(every), generator=generator)[:max_cells].sort().values.tolist()
    return [every[i] for i in picked]


def locality_by_stage(
    model: nn.Module,
    stages: Sequence[str],
    images: Sequence[torch.Tensor],
    *,
    network: str,
    weights: str = "trained",
    image_names: Sequence[str] | None = None,
    max_cells: int = 49,
    batch_size: int = LOCATION_BATCH,
    seed: int = 0,
) -> pd.DataFrame:
    """Gradient-based in-cell mass of every sampled cell, per stage and image.

    Stages whose grid has more than ``max_cells`` locations use a seeded random sample of them (the
    same cells for every image). Per image and chunk of at most ``batch_size`` replicas, one forward pass runs to
    the deepest stage and one backward pass per stage gives every replica its own cell's gradient
    (BatchNorm in eval mode keeps the replicas independent). All-zero gradient maps (a location dead for this image) are dropped
    with a warning; the ``n_dropped`` column says how many per stage and image.

    Returns:
        One row per (stage, image, cell): ``network, weights, stage, stage_index, depth`` (convolutions
        up to the stage), ``relative_depth`` (depth / depth of the last stage), ``grid_h, grid_w, image,
        row, col, cell, mass`` (ρ) and ``uniform`` (ρ of a uniform map for that cell), ``n_dropped``.
    """
    if not images:
        raise ValueError("images is empty; pass at least one preprocessed image tensor.")
    names = [f"image{i}" for i in range(len(images))] if image_names is None else list(image_names)
    if len(names) != len(images):
        raise ValueError(f"got {len(names)} image_names for {len(images)} images.")
    input_shape = tuple(single_image(images[0])[0].shape)
    shapes = stage_shapes(model, stages, input_shape)
    depths = [depth for depth, _ in shapes]
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict] = []
    chosen = [_sample_locations(grid, max_cells, generator) for _, grid in shapes]
    with tqdm(total=len(images), desc=f"{network} ({weights})", leave=False) as bar:
        for name, image in zip(names, images):
            all_maps = stage_gradients(model, stages, image, chosen, batch_size)
            for index, (stage, maps) in enumerate(zip(stages, all_maps)):
                grid = shapes[index][1]
                keep = maps.flatten(1).sum(1) > 0
                kept = [loc for loc, k in zip(chosen[index], keep.tolist()) if k]
                dropped = len(chosen[index]) - len(kept)
                if dropped:
                    warnings.warn(f"{network} ({weights}) {stage} on {name}: {dropped} of {len(chosen[index])} cells have an all-zero gradient and are left out.", stacklevel=2)
                if not kept:
                    continue
                masses = in_cell_mass(maps[keep], grid, kept)
                uniform = uniform_mass(grid, maps.shape[1:], kept)
                for (row, col), mass, base in zip(kept, masses.tolist(), uniform.tolist()):
                    rows.append(
                        dict(network=network, weights=weights, stage=stage, stage_index=index, depth=depths[index],
                             relative_depth=depths[index] / depths[-1], grid_h=grid[0], grid_w=grid[1], image=name,
                             row=row, col=col, cell=row * grid[1] + col, mass=mass, uniform=base, n_dropped=dropped)
                    )
            bar.update(1)
    return pd.DataFrame(rows)


def bootstrap_band(frame: pd.DataFrame, value: str = "mass", n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Two-level bootstrap percentile band of the mean of ``value``: images, then cells within images.

    Cells of one image are correlated, so images are resampled first (:func:`~fame_utils.metrics.stats.bootstrap_interval`)
    and cells inside each drawn image second (a second generator seeded from ``seed``). With one image the band
    reflects cell-to-cell spread only.
    """
    if frame.empty:
        raise ValueError("cannot bootstrap an empty table.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    groups = [g[value].to_numpy(dtype=float) for _, g in frame.groupby("image", sort=True)]
    cells = np.random.default_rng((seed, 1))

    def mean_of_drawn_cells(drawn: np.ndarray) -> np.ndarray:
        return np.array([np.concatenate([cells.choice(groups[i], size=len(groups[i]), replace=True) for i in row]).mean() for row in drawn])

    return bootstrap_interval(mean_of_drawn_cells, len(groups), level, n_boot, seed)


def summarize_locality(frame: pd.DataFrame, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean in-cell mass per network, weights and stage with a seeded bootstrap band.

    Columns: ``network, weights, stage, stage_index, depth, relative_depth, grid, mass, low, high,
    uniform, ratio`` (mass / uniform: how many times more concentrated than a uniform map),
    ``n_images, n_cells``.
    """
    keys = ["network", "weights", "stage_index"]
    rows = []
    for (network, weights, stage_index), group in frame.groupby(keys, sort=True):
        low, high = bootstrap_band(group, "mass", n_boot, level, seed)
        mass, uniform = float(group["mass"].mean()), float(group["uniform"].mean())
        first = group.iloc[0]
        rows.append(dict(network=network, weights=weights, stage=first["stage"], stage_index=int(stage_index), depth=int(first["depth"]),
                         relative_depth=float(first["relative_depth"]), grid=f"{first['grid_h']}×{first['grid_w']}", mass=mass,
                         low=low, high=high, uniform=uniform, ratio=mass / uniform, n_images=int(group["image"].nunique()), n_cells=len(group)))
    return pd.DataFrame(rows)




def receptive_fields(model: nn.Module, stages: Sequence[str], input_shape: Sequence[int], max_scale: int | None = 8) -> pd.DataFrame:
    """Theoretical receptive field of the central location of every stage (one linearised copy).

    Columns: ``stage, grid, depth, row, col, r0, r1, c0, c1`` (the clipped box on this input),
    ``clipped_height, clipped_width``, ``covers_image`` and ``image_fraction`` (clipped field area / image area)
    and, when ``max_scale`` is set, ``rf_height, rf_width`` (unclipped, see
    :func:`~fame_utils.locality.receptive_field.unclipped_sizes`; None if wider than ``max_scale`` images).
    """
    shapes = stage_shapes(model, stages, input_shape)
    probe = linearised_copy(model)
    _, height, width = (int(v) for v in input_shape)
    centres = [(grid[0] // 2, grid[1] // 2) for _, grid in shapes]
    boxes = stage_supports(probe, stages, input_shape, centres)
    rows = [dict(stage=stage, grid=f"{grid[0]}×{grid[1]}", depth=depth, row=location[0], col=location[1],
                 r0=box.r0, r1=box.r1, c0=box.c0, c1=box.c1, clipped_height=box.height, clipped_width=box.width,
                 covers_image=box.height == height and box.width == width, image_fraction=box.height * box.width / (height * width))
            for stage, (depth, grid), location, box in zip(stages, shapes, centres, boxes)]
    if max_scale is not None:
        for row, (rf_height, rf_width) in zip(rows, unclipped_sizes(probe, stages, input_shape, max_scale)):
            row["rf_height"], row["rf_width"] = rf_height, rf_width
    return pd.DataFrame(rows)
