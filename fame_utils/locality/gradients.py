"""The one stage/cell gradient engine: input gradients of FAME's location loss (the effective receptive field).

For location ``k = (r, c)`` of a layer, ``G_k(p) = mean_channels |∂ℓ_k/∂x(p)|`` with ``ℓ_k(x) = Σ_c |a_c(x)[r, c]|``
— the direction of FAME's first step. It knows nothing of cells' mass, tables or plotting.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import nn

from fame_utils._checks import check_eval, check_inside, location_indices, single_image
from fame_utils.fame.explain import all_locations
from fame_utils.layers import capture_layer, forward_to_layer
from fame_utils.locality.cells import Location, view_position
from fame_utils.locality.stages import layer_grid, stage_shapes
from fame_utils.models.folding import inference_copy, matching_layer
from fame_utils.runtime import LOCATION_BATCH, balanced_chunks, fast_layout

__all__ = ["stage_gradients", "cell_gradients", "effective_receptive_field", "stage_cell_gradients"]


def stage_gradients(
    model: nn.Module, stages: Sequence[nn.Module | str], image: torch.Tensor, locations: Sequence[Sequence[Location]],
    batch_size: int = LOCATION_BATCH,
) -> list[torch.Tensor]:
    """Gradient maps of the given locations of every stage, for one image.

    The image is replicated once per location; per chunk of at most ``batch_size`` replicas (the fewest, balanced),
    one forward pass of the network's inference copy (:func:`~fame_utils.models.folding.inference_copy`, channels_last)
    runs to the deepest stage (the last of ``stages``) and one backward pass per stage gives replica b the gradient of
    location b of that stage. BatchNorm in eval mode keeps the replicas independent.

    Args:
        model: the network in eval mode.
        stages: modules or dotted names whose outputs ``(B, C, h, w)`` hold the locations, shallowest first.
        image: ``(C, H, W)`` or ``(1, C, H, W)`` tensor the model takes (already preprocessed).
        locations: per stage, its ``(row, col)`` list.
        batch_size: most replicas per forward pass.

    Returns:
        Per stage, ``(L, H, W)`` float32 maps on the CPU (all zero where a location is dead for this image).

    Raises:
        ValueError: training mode, a bad image, no stage or location, a location outside its stage's grid.
    """
    image = single_image(image)[0]
    check_eval(model)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    if not stages or len(locations) != len(stages) or not all(len(chosen) for chosen in locations):
        raise ValueError("give at least one stage and, per stage, at least one (row, col) location.")
    indices = [location_indices(chosen) for chosen in locations]
    maps: list[list[torch.Tensor]] = [[] for _ in stages]
    network = inference_copy(model)
    layers = [matching_layer(model, network, stage) for stage in stages]
    for chunk in balanced_chunks(max(len(chosen) for chosen in locations), batch_size):
        start, size = chunk.start, chunk.stop - chunk.start
        batch = fast_layout(image.detach().unsqueeze(0).repeat(size, 1, 1, 1)).requires_grad_(True)
        with contextlib.ExitStack() as stack:
            captures = [stack.enter_context(capture_layer(network, layer)) for layer in layers]
            forward_to_layer(network, layers[-1], batch)
        for index, capture in enumerate(captures):
            rows, cols = (part[start : start + size] for part in indices[index])
            if not len(rows):
                continue
            activation = capture.get()
            if activation.ndim != 4:
                raise ValueError(f"layer output has shape {tuple(activation.shape)}; a spatial (B, C, h, w) map is needed.")
            check_inside(rows, cols, activation.shape[-2:])
            selected = activation[torch.arange(len(rows), device=activation.device), :, rows.to(activation.device), cols.to(activation.device)]
            (gradient,) = torch.autograd.grad(selected.abs().sum(), batch, retain_graph=index < len(captures) - 1)
            maps[index].append(gradient[: len(rows)].abs().mean(1).detach().float().cpu())
    return [torch.cat(stage_maps) for stage_maps in maps]


def cell_gradients(
    model: nn.Module,
    layer: nn.Module | str,
    image: torch.Tensor,
    locations: Sequence[Location] | None = None,
    batch_size: int = LOCATION_BATCH,
) -> torch.Tensor:
    """Gradient maps ``(L, H, W)`` of ``locations`` (default: all, row-major) of one layer (see :func:`stage_gradients`)."""
    chosen = all_locations(layer_grid(model, layer, single_image(image)[0].shape)) if locations is None else list(locations)
    return stage_gradients(model, [layer], image, [chosen], batch_size)[0]


def effective_receptive_field(model: nn.Module, layer: nn.Module | str, image: torch.Tensor, location: Location) -> torch.Tensor:
    """``(H, W)`` input-gradient magnitude of one location (see :func:`stage_gradients`)."""
    return cell_gradients(model, layer, image, [location], batch_size=1)[0]


def stage_cell_gradients(
    model: nn.Module, stages: Sequence[str], image: torch.Tensor, position: Location = (3, 3), view_grid: int = 7
) -> list[tuple[str, Location, tuple[int, int], torch.Tensor]]:
    """For every stage, ``(stage, location, grid, (H, W) gradient map)`` of the cell under ``position`` of a
    ``view_grid²`` grid (:func:`~fame_utils.locality.cells.view_position`), from one forward pass."""
    grids = [grid for _, grid in stage_shapes(model, stages, single_image(image)[0].shape)]
    chosen = [view_position(*position, view_grid, grid) for grid in grids]
    maps = stage_gradients(model, stages, image, [[location] for location in chosen], batch_size=1)
    return [(stage, location, grid, stage_maps[0]) for stage, location, grid, stage_maps in zip(stages, chosen, grids, maps)]
