"""Notebook 03 (the feature-map atlas, paper Figs. 1, 7, 8): FAME's map of every CAM-layer location of one image.

For each location k of a network's CAM target layer, FAME with the location loss gives the pixels that drive
k to zero; the one-step input gradient of k is computed for the same locations, and both are scored by their
in-cell mass ρ (:func:`fame_utils.locality.in_cell_mass`). Only notebook 03 needs these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fame_utils import cache, locality, viz
from fame_utils.data import face_pairs
from fame_utils.fame import FameConfig, all_locations, explain_locations
from fame_utils.locality import Location
from fame_utils.models import ModelSpec
from fame_utils.runtime import LOCATION_BATCH

__all__ = ["Atlas", "atlas_locations", "atlas_input", "compute_atlas", "paper_atlas_weights", "cell_row_panels", "atlas_sheet", "mass_table"]

PAPER_RESNETS = ("resnet34", "resnet50", "resnet101")
PAPER_IRESNETS = ("iresnet18", "iresnet50", "iresnet101")
#: The modules that compute the atlas maps (their source is part of every cache key).
_ATLAS_CODE = ("fame_utils.fame", "fame_utils.locality", "fame_utils.layers", "fame_utils.models")


@dataclass(frozen=True)
class Atlas:
    """FAME and gradient maps of one network's CAM-layer locations on one image.

    Attributes:
        name: network name.
        layer: the CAM target layer.
        display: the image as shown, ``(H, W, 3)`` in [0, 1].
        grid: the layer's ``(h, w)`` grid.
        maps: FAME map ``(H, W)`` per computed location.
        fame_mass, gradient_mass: ρ per location with a non-empty FAME *and* gradient map (``scored`` order).
        uniform: a uniform map's ρ for the same locations.
        scored: those locations.
    """

    name: str
    layer: str
    display: np.ndarray
    grid: tuple[int, int]
    maps: dict[Location, torch.Tensor]
    fame_mass: torch.Tensor
    gradient_mass: torch.Tensor
    uniform: torch.Tensor
    scored: list[Location]


def atlas_locations(grid: Sequence[int], all_cells: bool = True) -> list[Location]:
    """Every location of ``grid`` in row-major order, or (``all_cells=False``) the first, middle and last of its middle row."""
    h, w = grid
    if all_cells:
        return all_locations((h, w))
    return list(dict.fromkeys([(h // 2, 0), (h // 2, w // 2), (h // 2, w - 1)]))


def atlas_input(spec: ModelSpec, photo: np.ndarray) -> torch.Tensor:
    """The network's input: ``photo`` for a classifier, the first shipped gallery face (aligned at the network's size) for a face network."""
    if spec.task == "classification":
        return spec.preprocess(photo)
    size = spec.input_size if spec.input_size in (112, 150) else 112
    return spec.preprocess(face_pairs(size=size)[0].gallery)


def compute_atlas(
    name: str, spec: ModelSpec, image: torch.Tensor, config: FameConfig, all_cells: bool = True, batch_size: int = LOCATION_BATCH, progress: bool = True,
    use_cache: bool = True,
) -> Atlas:
    """FAME (location loss) and one-step gradients for the atlas locations of ``spec.target_layer``.

    Args:
        name: network name (for labels).
        spec: the network.
        image: one preprocessed image ``(C, H, W)``.
        config: FAME settings.
        all_cells: every location, or three of the middle row (see :func:`atlas_locations`).
        batch_size: locations optimised together.
        progress: show a progress bar.
        use_cache: serve the FAME and gradient maps from :mod:`fame_utils.cache` when computed before for the same
            network, image, locations, batch size and settings.

    Returns:
        The :class:`Atlas`; locations where FAME or the gradient is all zero are left out of the ρ statistics.

    Raises:
        ValueError: no location has a non-empty FAME and gradient map.
    """
    grid = locality.layer_grid(spec.module, spec.target_layer, image.shape)
    cells = atlas_locations(grid, all_cells)
    def compute() -> dict[str, torch.Tensor]:
        return {"fame": explain_locations(spec.module, spec.target_layer, image, cells, config, batch_size=batch_size, progress=progress).cpu(),
                "gradient": locality.cell_gradients(spec.module, spec.target_layer, image, cells).cpu()}

    settings = dict(layer=str(spec.target_layer), locations=cells, fame=config, batch_size=batch_size, device=str(image.device))
    computed = cache.cached(cache.map_key(name, spec.module, [image], "FAME locations", settings, _ATLAS_CODE), compute) if use_cache else compute()
    maps, gradients = computed["fame"], computed["gradient"]
    keep = [i for i in range(len(cells)) if maps[i].sum() > 0 and gradients[i].sum() > 0]
    if not keep:
        raise ValueError(f"{name}: FAME or the gradient is all zero at every atlas location of {spec.target_layer} "
                         f"(dead activations?); try another image, more iterations or a larger step size.")
    scored = [cells[i] for i in keep]
    return Atlas(name=name, layer=str(spec.target_layer), display=spec.to_display(image), grid=tuple(grid), maps=dict(zip(cells, maps)),
                 fame_mass=locality.in_cell_mass(maps[keep], grid, scored), gradient_mass=locality.in_cell_mass(gradients[keep], grid, scored),
                 uniform=locality.uniform_mass(grid, image.shape[1:], scored), scored=scored)


def paper_atlas_weights(resnet_weights: str | Path | None, iresnet_checkpoints: dict[str, str | Path]) -> dict[str, str | Path | None]:
    """Weights of the paper's atlas networks from the notebook parameters (``None`` = not given).

    Args:
        resnet_weights: ``"hub"``, a directory holding ``resnet34.pth`` … ``resnet101.pth``, or None.
        iresnet_checkpoints: ``{"iresnet18": path, ...}`` (AdaFace ``.ckpt``).
    """
    if resnet_weights in (None, "hub"):
        resnets = dict.fromkeys(PAPER_RESNETS, resnet_weights)
    else:
        resnets = {name: Path(resnet_weights) / f"{name}.pth" for name in PAPER_RESNETS}
    return {**resnets, **{name: iresnet_checkpoints.get(name) for name in PAPER_IRESNETS}}


def cell_row_panels(atlas: Atlas, rows: Sequence[int]) -> list[tuple[str, np.ndarray, dict[Location, torch.Tensor], tuple[int, int], int]]:
    """Fig. 1 rows of one atlas, in the form :func:`fame_utils.viz.locality.plot_cell_rows` takes."""
    return [(atlas.name, atlas.display, atlas.maps, atlas.grid, row) for row in rows]


def atlas_sheet(atlas: Atlas):
    """Figs. 7/8: panel (r, c) is location (r, c)'s FAME map over the image with its CAM cell; missing locations blank."""
    h, w = atlas.grid
    positions = [(row, col) for row in range(h) for col in range(w)]
    return viz.contact_sheet([atlas.maps.get(position) for position in positions], h, w, background=atlas.display,
                             cells=[position if position in atlas.maps else None for position in positions], grid=(h, w),
                             row_labels=[f"row {row}" for row in range(h)], title=f"{atlas.name}: attribution per feature map location")


def mass_table(atlases: dict[str, Atlas]) -> pd.DataFrame:
    """Per network: mean and largest FAME ρ, mean gradient ρ and uniform ρ over the scored locations."""
    return pd.DataFrame([dict(network=name, layer=atlas.layer, grid=f"{atlas.grid[0]}×{atlas.grid[1]}", locations=len(atlas.scored),
                              fame_mass=float(atlas.fame_mass.mean()), fame_max=float(atlas.fame_mass.max()),
                              gradient_mass=float(atlas.gradient_mass.mean()), uniform=float(atlas.uniform.mean()))
                         for name, atlas in atlases.items()])
