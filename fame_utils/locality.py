"""CAM's locality assumption, measured: CAM cells, in-cell attribution mass and receptive fields.

CAM-style methods upsample an ``h×w`` feature map to the image, as if location ``(r, c)`` saw only
the image patch under it, its *CAM cell*: rows ``[⌊r·H/h⌉, ⌊(r+1)·H/h⌉)`` and the same for columns
(fame-method.md §4). This module measures how much of a location's attribution falls in that cell:

    ρ_k = Σ_{p ∈ cell k} A_k(p) / Σ_p A_k(p)

(Decision 7, an extension beyond the paper). A uniform map gives ρ = cell area / image area, a map
entirely inside its cell gives 1.

Rounding: cell edges use round-half-up, ``⌊x + 0.5⌋``, computed in integers. Python's ``round`` rounds
ties to even; the two differ only when ``r·H/h`` is exactly ``k + 0.5`` (never for a 7×7 grid on 224
or 112 pixels). Half-up keeps cells of equal size when ties occur on both edges.

Two kinds of maps are measured: FAME maps (``fame_utils.fame.explain_locations``) and one-step input
gradients of FAME's location loss ``ℓ_k(x) = Σ_c |a_c(x)[r, c]|`` (:func:`cell_gradients`, the
*effective receptive field*). The *theoretical receptive field* (every pixel that can influence the
location at all) comes from :func:`theoretical_receptive_field`.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from fame_utils.layers import capture_layer, forward_to_layer, resolve_layer

__all__ = [
    "Location",
    "ReceptiveField",
    "cell_bounds",
    "cell_masks",
    "grid_locations",
    "in_cell_mass",
    "uniform_mass",
    "cell_gradients",
    "effective_receptive_field",
    "theoretical_receptive_field",
    "receptive_field_size",
    "layer_grid",
    "conv_depth",
    "stage_shapes",
    "locality_by_stage",
    "summarize_locality",
    "bootstrap_band",
    "plot_locality_vs_depth",
    "view_position",
    "show_cell",
    "NetworkView",
    "receptive_fields",
    "plot_cam_assumption",
    "plot_receptive_fields",
    "plot_stage_gradients",
    "stage_cell_gradients",
    "show_network_cell",
    "locality_verdict",
    "verdict_record",
    "network_inputs",
    "trained_and_random_locality",
    "verdict_lines",
    "plot_cell_rows",
]

Location = tuple[int, int]


# ---------------------------------------------------------------------------------------------
# CAM cells and in-cell mass
# ---------------------------------------------------------------------------------------------


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


def grid_locations(grid: Sequence[int]) -> list[Location]:
    """All locations of an ``(h, w)`` grid in row-major order."""
    h, w = (int(v) for v in grid)
    return [(r, c) for r in range(h) for c in range(w)]


def cell_masks(grid: Sequence[int], size: Sequence[int], locations: Sequence[Location] | None = None) -> torch.Tensor:
    """Boolean masks ``(L, H, W)`` of the CAM cells of ``locations`` (default: all, row-major)."""
    chosen = grid_locations(grid) if locations is None else list(locations)
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
    chosen = grid_locations(grid) if locations is None else list(locations)
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


# ---------------------------------------------------------------------------------------------
# Gradients of one cell (effective receptive field)
# ---------------------------------------------------------------------------------------------


def _single_image(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch tensor (C, H, W) or (1, C, H, W), got {type(image).__name__}.")
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3:
        raise ValueError(f"image must have shape (C, H, W) or (1, C, H, W), got {tuple(image.shape)}.")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or inf values.")
    return image


def layer_grid(model: nn.Module, layer: nn.Module | str, input_shape: Sequence[int]) -> tuple[int, int]:
    """Spatial size ``(h, w)`` of ``layer``'s output for an input of shape ``(C, H, W)``."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    with torch.no_grad():
        output = forward_to_layer(model, layer, torch.zeros(1, *input_shape, device=device, dtype=dtype))
    if output.ndim != 4:
        raise ValueError(f"layer output has shape {tuple(output.shape)}; a spatial (B, C, h, w) map is needed.")
    return int(output.shape[2]), int(output.shape[3])


def cell_gradients(
    model: nn.Module,
    layer: nn.Module | str,
    image: torch.Tensor,
    locations: Sequence[Location] | None = None,
    batch_size: int = 49,
) -> torch.Tensor:
    """Input-gradient magnitude of FAME's location loss, one map per location.

    For location ``k = (r, c)``: ``G_k(p) = mean_channels |∂ℓ_k/∂x(p)|`` with
    ``ℓ_k(x) = Σ_c |a_c(x)[r, c]|`` — the direction of FAME's first step (its effective receptive
    field). The image is replicated once per location and the forward stops at ``layer``, so one
    backward pass gives a chunk of ``batch_size`` maps.

    Args:
        model: the network in eval mode (BatchNorm must not mix the replicas).
        layer: module or dotted name whose output ``(B, C, h, w)`` holds the locations.
        image: ``(C, H, W)`` tensor the model takes (already preprocessed).
        locations: ``(row, col)`` list; default all locations row-major.
        batch_size: replicas per backward pass.

    Returns:
        ``(L, H, W)`` float32 maps on the CPU (all zero where the location is dead for this image).
    """
    image = _single_image(image)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    if model.training:
        raise ValueError("put the model in eval mode first (model.eval()): BatchNorm in training mode mixes the replicas.")
    chosen = grid_locations(layer_grid(model, layer, image.shape)) if locations is None else list(locations)
    if not chosen:
        raise ValueError("locations is empty; pass at least one (row, col).")
    maps: list[torch.Tensor] = []
    for start in range(0, len(chosen), batch_size):
        chunk = chosen[start : start + batch_size]
        batch = image.detach().unsqueeze(0).repeat(len(chunk), 1, 1, 1).requires_grad_(True)
        activation = forward_to_layer(model, layer, batch)
        if activation.ndim != 4:
            raise ValueError(f"layer output has shape {tuple(activation.shape)}; a spatial (B, C, h, w) map is needed.")
        _check_locations(chunk, (int(activation.shape[2]), int(activation.shape[3])))
        rows = torch.tensor([r for r, _ in chunk], device=activation.device)
        cols = torch.tensor([c for _, c in chunk], device=activation.device)
        selected = activation[torch.arange(len(chunk), device=activation.device), :, rows, cols]
        (gradient,) = torch.autograd.grad(selected.abs().sum(), batch)
        maps.append(gradient.abs().mean(1).detach().float().cpu())
    return torch.cat(maps)


def _check_locations(locations: Sequence[Location], grid: tuple[int, int]) -> None:
    for row, col in locations:
        if not (0 <= row < grid[0] and 0 <= col < grid[1]):
            raise ValueError(f"location {(row, col)} lies outside the {grid[0]}×{grid[1]} output of the layer.")


def effective_receptive_field(model: nn.Module, layer: nn.Module | str, image: torch.Tensor, location: Location) -> torch.Tensor:
    """``(H, W)`` input-gradient magnitude of one location (see :func:`cell_gradients`)."""
    return cell_gradients(model, layer, image, [location], batch_size=1)[0]


# ---------------------------------------------------------------------------------------------
# Theoretical receptive field (probing a positive linear copy)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceptiveField:
    """Pixel box ``rows [r0, r1) × cols [c0, c1)`` that can influence one location."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def height(self) -> int:
        """Rows covered."""
        return self.r1 - self.r0

    @property
    def width(self) -> int:
        """Columns covered."""
        return self.c1 - self.c0


_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.Dropout, nn.Dropout2d)


def _is_activation(module: nn.Module) -> bool:
    return type(module).__module__ == nn.modules.activation.__name__ or "swish" in type(module).__name__.lower()


class _SupportGradient(torch.autograd.Function):
    """Identity forward; backward keeps only *where* the gradient is non-zero (1 there, 0 elsewhere).

    In the positive linear copy no gradient can cancel, so this loses nothing about the support and
    stops gradients from underflowing over dozens of layers (edge pixels of a deep field otherwise
    receive ~1e-60 of the centre's gradient).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (grad != 0).to(grad.dtype)


def _binarise_output(_module: nn.Module, _inputs: tuple, output: object) -> object:
    return _SupportGradient.apply(output) if isinstance(output, torch.Tensor) else output


def _linearised_copy(model: nn.Module) -> nn.Module:
    """A float32 copy in which every path from input to output has a positive weight.

    Activations and norms become identities, max-pools become average pools of the same geometry,
    convolutions and linear layers get the constant weight ``1/fan_in`` and zero bias, and every other
    parameter its absolute value. Every leaf module's output gradient is reduced to its support.
    """
    probe = copy.deepcopy(model).float().eval()
    for parent in list(probe.modules()):
        for name, child in list(parent.named_children()):
            replacement = _linear_replacement(child)
            if replacement is not None:
                setattr(parent, name, replacement)
    with torch.no_grad():
        for module in probe.modules():
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
            else:
                for parameter in module.parameters(recurse=False):
                    parameter.abs_()
    for module in probe.modules():
        if not list(module.children()):
            module.register_forward_hook(_binarise_output)
    return probe


def _linear_replacement(module: nn.Module) -> nn.Module | None:
    if _is_activation(module) or isinstance(module, _NORMS):
        return nn.Identity()
    if isinstance(module, nn.MaxPool2d):
        if type(module) is not nn.MaxPool2d or module.dilation not in (1, (1, 1)):
            raise ValueError(f"cannot linearise {type(module).__name__} (custom forward or dilation); use a plain nn.MaxPool2d.")
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode, count_include_pad=True)
    return None


def _probe_support(probe: nn.Module, layer: str, input_shape: Sequence[int], location: Location | None, probe_value: float) -> torch.Tensor:
    """Boolean ``(H, W)``: input pixels with a non-zero gradient of the location's channel sum."""
    parameter = next(probe.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.full((1, *input_shape), probe_value, device=device, requires_grad=True)
    activation = forward_to_layer(probe, layer, x)
    grid = (int(activation.shape[2]), int(activation.shape[3]))
    row, col = location if location is not None else (grid[0] // 2, grid[1] // 2)
    if not (0 <= row < grid[0] and 0 <= col < grid[1]):
        raise ValueError(f"location {(row, col)} lies outside the {grid[0]}×{grid[1]} output of the layer.")
    (gradient,) = torch.autograd.grad(activation[0, :, row, col].sum(), x)
    return (gradient[0] != 0).any(0).cpu()


def _stage_supports(probe: nn.Module, stages: Sequence[str], input_shape: Sequence[int], locations: Sequence[Location] | None) -> list[ReceptiveField]:
    """Receptive-field boxes of one location per stage from a single forward pass of the probe copy."""
    parameter = next(probe.parameters(), None)
    x = torch.full((1, *input_shape), 1000.0, device=parameter.device if parameter is not None else "cpu", requires_grad=True)
    with contextlib.ExitStack() as stack:
        captures = [stack.enter_context(capture_layer(probe, stage)) for stage in stages]
        forward_to_layer(probe, stages[-1], x)
    boxes = []
    for index, capture in enumerate(captures):
        activation = capture.get()
        row, col = locations[index] if locations is not None else (activation.shape[2] // 2, activation.shape[3] // 2)
        (gradient,) = torch.autograd.grad(activation[0, :, row, col].sum(), x, retain_graph=index < len(captures) - 1)
        boxes.append(_support_box((gradient[0] != 0).any(0).cpu()))
    return boxes


def _support_box(support: torch.Tensor) -> ReceptiveField:
    rows = torch.nonzero(support.any(1)).flatten()
    cols = torch.nonzero(support.any(0)).flatten()
    if rows.numel() == 0:
        raise ValueError("no input pixel influences this location in the linearised copy; the model probably applies a nonlinearity outside modules on negative values.")
    return ReceptiveField(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def theoretical_receptive_field(
    model: nn.Module,
    layer: str,
    input_shape: Sequence[int],
    location: Location | None = None,
    probe_value: float = 1000.0,
) -> ReceptiveField:
    """Every input pixel that can influence ``layer``'s location, clipped to the image.

    Probing instead of walking kernel sizes: a copy of the model is made linear with positive weights
    (activations and norms → identity, max-pool → average pool, conv/linear weights = 1/fan_in), so no
    path can cancel or be switched off, and the gradient of the location's channel sum w.r.t. a constant
    input is non-zero exactly on its receptive field. This follows residual branches, depthwise
    convolutions, asymmetric "same" padding and cropping exactly as the module graph runs them. The
    probe input is a large positive constant so that affine input scaling inside ``forward`` (and any
    functional ReLU after it) stays positive.

    Args:
        model: the network (not modified).
        layer: dotted name of the layer (resolved on the copy).
        input_shape: ``(C, H, W)`` of the preprocessed input.
        location: ``(row, col)``; default the central location.
    """
    resolve_layer(model, layer)
    return _support_box(_probe_support(_linearised_copy(model), layer, input_shape, location, probe_value))


def receptive_field_size(model: nn.Module, layer: str, input_shape: Sequence[int], max_scale: int = 8) -> tuple[int | None, int | None]:
    """Unclipped theoretical receptive field ``(height, width)`` in pixels of an interior location.

    Rows and columns are probed separately on a tall (``max_scale·H × W``) and a wide
    (``H × max_scale·W``) input, whose central location's field is not clipped along the long side.
    Deep layers see more than the whole image; this number says how much more. ``None`` for a side
    whose field still touches the border at ``max_scale``.
    """
    resolve_layer(model, layer)
    probe = _linearised_copy(model)
    channels, height, width = (int(v) for v in input_shape)
    tall = _support_box(_probe_support(probe, layer, (channels, height * max_scale, width), None, 1000.0))
    wide = _support_box(_probe_support(probe, layer, (channels, height, width * max_scale), None, 1000.0))
    rows = tall.height if tall.r0 > 0 and tall.r1 < height * max_scale else None
    cols = wide.width if wide.c0 > 0 and wide.c1 < width * max_scale else None
    return rows, cols


# ---------------------------------------------------------------------------------------------
# Measuring locality per stage
# ---------------------------------------------------------------------------------------------


def conv_depth(model: nn.Module, layer: nn.Module | str, input_shape: Sequence[int]) -> int:
    """Number of convolutions executed before ``layer``'s output exists (its depth in conv layers)."""
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    try:
        layer_grid(model, layer, input_shape)
    finally:
        for handle in handles:
            handle.remove()
    return calls[0]


def stage_shapes(model: nn.Module, stages: Sequence[str], input_shape: Sequence[int]) -> list[tuple[int, tuple[int, int]]]:
    """``(conv depth, (h, w))`` of every stage output, from one forward pass up to the deepest stage."""
    modules = [resolve_layer(model, stage) for stage in stages]
    seen: dict[int, tuple[int, tuple[int, int]]] = {}
    calls = [0]

    def count(*_: object) -> None:
        calls[0] += 1

    def record(index: int):
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            if index not in seen and isinstance(output, torch.Tensor) and output.ndim == 4:
                seen[index] = (calls[0], (int(output.shape[2]), int(output.shape[3])))
        return hook

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    handles += [module.register_forward_hook(record(i)) for i, module in enumerate(modules)]
    try:
        parameter = next(model.parameters(), None)
        x = torch.zeros(1, *input_shape, device=parameter.device if parameter is not None else "cpu")
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    missing = [stages[i] for i in range(len(stages)) if i not in seen]
    if missing:
        raise ValueError(f"stages {missing} produced no spatial (B, C, h, w) output in the forward pass.")
    return [seen[i] for i in range(len(stages))]


def _sample_locations(grid: tuple[int, int], max_cells: int, generator: torch.Generator) -> list[Location]:
    every = grid_locations(grid)
    if len(every) <= max_cells:
        return every
    picked = torch.randperm(len(every), generator=generator)[:max_cells].sort().values.tolist()
    return [every[i] for i in picked]


def _stage_gradients(model: nn.Module, stages: Sequence[str], image: torch.Tensor, chosen: Sequence[Sequence[Location]], batch_size: int) -> list[torch.Tensor]:
    """Like :func:`cell_gradients` for several stages at once: per chunk of replicas, one forward pass
    to the deepest stage and one backward pass per stage (replica b serves location b of every stage)."""
    if model.training:
        raise ValueError("put the model in eval mode first (model.eval()): BatchNorm in training mode mixes the replicas.")
    maps: list[list[torch.Tensor]] = [[] for _ in stages]
    count = max(len(locations) for locations in chosen)
    for start in range(0, count, batch_size):
        size = min(batch_size, count - start)
        batch = image.detach().unsqueeze(0).repeat(size, 1, 1, 1).requires_grad_(True)
        with contextlib.ExitStack() as stack:
            captures = [stack.enter_context(capture_layer(model, stage)) for stage in stages]
            forward_to_layer(model, stages[-1], batch)
        for index, capture in enumerate(captures):
            chunk = list(chosen[index][start : start + size])
            if not chunk:
                continue
            activation = capture.get()
            rows = torch.tensor([r for r, _ in chunk], device=activation.device)
            cols = torch.tensor([c for _, c in chunk], device=activation.device)
            selected = activation[torch.arange(len(chunk), device=activation.device), :, rows, cols]
            (gradient,) = torch.autograd.grad(selected.abs().sum(), batch, retain_graph=True)
            maps[index].append(gradient[: len(chunk)].abs().mean(1).detach().float().cpu())
    return [torch.cat(stage_maps) for stage_maps in maps]


def locality_by_stage(
    model: nn.Module,
    stages: Sequence[str],
    images: Sequence[torch.Tensor],
    *,
    network: str,
    weights: str = "trained",
    image_names: Sequence[str] | None = None,
    max_cells: int = 49,
    batch_size: int = 49,
    seed: int = 0,
) -> pd.DataFrame:
    """Gradient-based in-cell mass of every sampled cell, per stage and image.

    Stages whose grid has more than ``max_cells`` locations use a seeded random sample of them (the
    same cells for every image). Per image and chunk of ``batch_size`` replicas, one forward pass runs to
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
    input_shape = tuple(_single_image(images[0]).shape)
    shapes = stage_shapes(model, stages, input_shape)
    depths = [depth for depth, _ in shapes]
    generator = torch.Generator().manual_seed(seed)
    rows: list[dict] = []
    chosen = [_sample_locations(grid, max_cells, generator) for _, grid in shapes]
    with tqdm(total=len(images), desc=f"{network} ({weights})", leave=False) as bar:
        for name, image in zip(names, images):
            all_maps = _stage_gradients(model, stages, _single_image(image), chosen, batch_size)
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

    Cells of one image are correlated, so images are resampled first and cells inside each drawn image
    second. With one image the band reflects cell-to-cell spread only.
    """
    if frame.empty:
        raise ValueError("cannot bootstrap an empty table.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}.")
    rng = np.random.default_rng(seed)
    groups = [g[value].to_numpy(dtype=float) for _, g in frame.groupby("image", sort=True)]
    means = np.empty(n_boot)
    for b in range(n_boot):
        drawn = rng.integers(0, len(groups), len(groups))
        means[b] = np.concatenate([rng.choice(groups[i], size=len(groups[i]), replace=True) for i in drawn]).mean()
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


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


def plot_locality_vs_depth(summary: pd.DataFrame, x: str = "relative_depth"):
    """One panel per weights setting (trained, random): mean ρ per stage with its band, one line per
    network, and each network's uniform-map baseline dashed. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    settings = sorted(dict.fromkeys(summary["weights"]), key=lambda setting: setting != "trained")
    fig, axes = plt.subplots(1, len(settings), figsize=(5.5 * len(settings), 4), sharey=True, squeeze=False)
    colours = dict(zip(dict.fromkeys(summary["network"]), plt.rcParams["axes.prop_cycle"].by_key()["color"] * 4))
    for ax, setting in zip(axes[0], settings):
        for network, group in summary[summary["weights"] == setting].groupby("network", sort=False):
            group = group.sort_values(x)
            colour = colours[network]
            ax.plot(group[x], group["mass"], marker="o", color=colour, label=network)
            ax.fill_between(group[x], group["low"], group["high"], color=colour, alpha=0.2)
            ax.plot(group[x], group["uniform"], linestyle="--", color=colour, alpha=0.7)
        ax.set_yscale("log")
        ax.set_title(f"{setting} weights")
        ax.set_xlabel("relative depth (conv layers / conv layers at last stage)" if x == "relative_depth" else x)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("in-cell mass ρ (dashed: uniform map)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("In-cell gradient mass vs depth (extension beyond the paper, Decision 7)")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Widget callback
# ---------------------------------------------------------------------------------------------


def view_position(row: int, col: int, view_grid: int, grid: Sequence[int]) -> Location:
    """The cell of ``grid`` under the centre of position ``(row, col)`` of a ``view_grid²`` grid.

    Lets one pair of sliders pick the same image region at every stage, whatever its grid size.
    """
    if not (0 <= row < view_grid and 0 <= col < view_grid):
        raise ValueError(f"position {(row, col)} lies outside the {view_grid}×{view_grid} view grid.")
    return (int((row + 0.5) * grid[0] / view_grid), int((col + 0.5) * grid[1] / view_grid))


def show_cell(model: nn.Module, stages: Sequence[str], image: torch.Tensor, display: np.ndarray, stage: str, row: int, col: int, view_grid: int = 7, title: str = ""):
    """Widget callback: one cell's gradient map with its CAM cell (white) and receptive field (cyan).

    Args:
        model: the network; ``stages`` its stage names; ``stage`` one of them.
        image: preprocessed ``(C, H, W)`` input; ``display``: the same image as ``(H, W, 3)`` in [0, 1].
        row, col: position on a ``view_grid × view_grid`` grid (mapped onto the stage's grid).

    Returns:
        The matplotlib figure; its ``cell_mass`` attribute holds ρ of the shown cell (None when the
        cell's gradient is all zero).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    if stage not in stages:
        raise ValueError(f"stage {stage!r} is not one of {list(stages)}.")
    image = _single_image(image)
    grid = layer_grid(model, stage, image.shape)
    location = view_position(row, col, view_grid, grid)
    gradient = effective_receptive_field(model, stage, image, location)
    field = theoretical_receptive_field(model, stage, image.shape, location)
    r0, r1, c0, c1 = cell_bounds(*location, grid, gradient.shape)
    mass = float(in_cell_mass(gradient[None], grid, [location])[0]) if gradient.sum() > 0 else None
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.imshow(display)
    ax.imshow((gradient / gradient.max().clamp_min(1e-12)).numpy(), cmap="jet", alpha=0.5)
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor="white", linewidth=1.5))
    ax.add_patch(Rectangle((field.c0 - 0.5, field.r0 - 0.5), field.width, field.height, fill=False, edgecolor="cyan", linewidth=1.5, linestyle="--"))
    shown = "all-zero gradient (dead cell)" if mass is None else f"ρ = {mass:.3f}"
    ax.set_title(f"{title} {stage} cell {location} of {grid[0]}×{grid[1]}\n{shown}; receptive field {field.height}×{field.width} px".strip(), fontsize=9)
    ax.axis("off")
    fig.cell_mass = mass
    return fig


# ---------------------------------------------------------------------------------------------
# Notebook helpers: tables and figures
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkView:
    """What the locality figures and the widget need of one network: model, stages and one image."""

    model: nn.Module
    stages: Sequence[str]
    image: torch.Tensor
    display: np.ndarray


def receptive_fields(model: nn.Module, stages: Sequence[str], input_shape: Sequence[int], max_scale: int | None = 8) -> pd.DataFrame:
    """Theoretical receptive field of the central location of every stage (one linearised copy).

    Columns: ``stage, grid, depth, row, col, r0, r1, c0, c1`` (the clipped box on this input),
    ``clipped_height, clipped_width`` and, when ``max_scale`` is set, ``rf_height, rf_width`` (unclipped,
    see :func:`receptive_field_size`; None if wider than ``max_scale`` images), ``covers_image`` and
    ``image_fraction`` (clipped field area / image area).
    """
    shapes = stage_shapes(model, stages, input_shape)
    probe = _linearised_copy(model)
    channels, height, width = (int(v) for v in input_shape)
    centres = [(grid[0] // 2, grid[1] // 2) for _, grid in shapes]
    boxes = _stage_supports(probe, stages, input_shape, centres)
    rows = []
    for stage, (depth, grid), location, box in zip(stages, shapes, centres, boxes):
        row = dict(stage=stage, grid=f"{grid[0]}×{grid[1]}", depth=depth, row=location[0], col=location[1],
                   r0=box.r0, r1=box.r1, c0=box.c0, c1=box.c1, clipped_height=box.height, clipped_width=box.width,
                   covers_image=box.height == height and box.width == width, image_fraction=box.height * box.width / (height * width))
        rows.append(row)
    if max_scale is not None:
        tall = _stage_supports(probe, stages, (channels, height * max_scale, width), None)
        wide = _stage_supports(probe, stages, (channels, height, width * max_scale), None)
        for row, t, w in zip(rows, tall, wide):
            row["rf_height"] = t.height if 0 < t.r0 and t.r1 < height * max_scale else None
            row["rf_width"] = w.width if 0 < w.c0 and w.c1 < width * max_scale else None
    return pd.DataFrame(rows)


def plot_cam_assumption(display: np.ndarray, grid: Sequence[int] = (7, 7), location: Location = (2, 4)):
    """Three panels: the photo with the CAM grid, the one cell CAM attributes to ``location``, and the
    upsampled (nearest) one-hot map of that location — the patch CAM paints for it."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    height, width = display.shape[:2]
    r0, r1, c0, c1 = cell_bounds(*location, grid, (height, width))
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    axes[0].imshow(display)
    for r in range(grid[0]):
        for c in range(grid[1]):
            b = cell_bounds(r, c, grid, (height, width))
            axes[0].add_patch(Rectangle((b[2] - 0.5, b[0] - 0.5), b[3] - b[2], b[1] - b[0], fill=False, edgecolor="white", linewidth=0.6))
    axes[0].set_title(f"{grid[0]}×{grid[1]} feature-map grid")
    onehot = torch.zeros(1, 1, *grid)
    onehot[0, 0, location[0], location[1]] = 1
    upsampled = torch.nn.functional.interpolate(onehot, size=(height, width), mode="nearest")[0, 0].numpy()
    axes[1].imshow(display)
    axes[1].add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor="white", linewidth=2))
    axes[1].set_title(f"location {location}: its CAM cell")
    axes[2].imshow(display * (0.25 + 0.75 * upsampled[..., None]))
    axes[2].set_title("upsampled one-hot map: what CAM assumes it sees")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_receptive_fields(views: dict[str, NetworkView], tables: dict[str, pd.DataFrame]):
    """One row per network: the central location's CAM cell (white) and theoretical field (cyan) per stage."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    columns = max(len(t) for t in tables.values())
    fig, axes = plt.subplots(len(tables), columns, figsize=(1.6 * columns, 1.8 * len(tables)), squeeze=False)
    for axes_row, (network, table) in zip(axes, tables.items()):
        display = views[network].display
        height, width = display.shape[:2]
        for ax in axes_row:
            ax.axis("off")
        for ax, entry in zip(axes_row, table.itertuples()):
            grid = tuple(int(v) for v in entry.grid.split("×"))
            r0, r1, c0, c1 = cell_bounds(entry.row, entry.col, grid, (height, width))
            ax.imshow(display)
            ax.add_patch(Rectangle((entry.c0 - 0.5, entry.r0 - 0.5), entry.c1 - entry.c0, entry.r1 - entry.r0, fill=False, edgecolor="cyan", linewidth=1.5))
            ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, edgecolor="white", linewidth=1))
            size = getattr(entry, "rf_height", None)
            label = f"RF {int(size)} px" if size is not None and not pd.isna(size) else f"RF ≥ {entry.clipped_height} px"
            ax.set_title(f"{entry.stage}\n{entry.grid}, {label}", fontsize=7)
        axes_row[0].text(-0.1, 0.5, network, transform=axes_row[0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
    fig.suptitle("Theoretical receptive field (cyan) vs CAM cell (white) of the central location", fontsize=10)
    fig.tight_layout()
    return fig


def stage_cell_gradients(model: nn.Module, stages: Sequence[str], image: torch.Tensor, position: Location = (3, 3), view_grid: int = 7) -> list[tuple[str, Location, tuple[int, int], torch.Tensor]]:
    """For every stage, ``(stage, location, grid, (H, W) gradient map)`` of the cell under ``position``
    (see :func:`view_position`), from one forward pass and one backward pass per stage."""
    image = _single_image(image)
    x = image.detach().unsqueeze(0).requires_grad_(True)
    with contextlib.ExitStack() as stack:
        captures = [stack.enter_context(capture_layer(model, stage)) for stage in stages]
        forward_to_layer(model, stages[-1], x)
    results = []
    for index, (stage, capture) in enumerate(zip(stages, captures)):
        activation = capture.get()
        grid = (int(activation.shape[2]), int(activation.shape[3]))
        location = view_position(*position, view_grid, grid)
        (gradient,) = torch.autograd.grad(activation[0, :, location[0], location[1]].abs().sum(), x, retain_graph=index < len(stages) - 1)
        results.append((stage, location, grid, gradient[0].abs().mean(0).detach().float().cpu()))
    return results


def plot_stage_gradients(views: dict[str, NetworkView], position: Location = (3, 3), view_grid: int = 7):
    """One row per network, one panel per stage: the input gradient of the cell under ``position``
    (on a ``view_grid²`` grid), with its CAM cell in white and its in-cell mass ρ in the title."""
    import matplotlib.pyplot as plt

    from fame_utils.viz import draw_cell, overlay

    columns = max(len(v.stages) for v in views.values())
    fig, axes = plt.subplots(len(views), columns, figsize=(1.6 * columns, 1.8 * len(views)), squeeze=False)
    for axes_row, (network, view) in zip(axes, views.items()):
        for ax in axes_row:
            ax.axis("off")
        for ax, (stage, location, grid, gradient) in zip(axes_row, stage_cell_gradients(view.model, view.stages, view.image, position, view_grid)):
            ax.imshow(overlay(view.display, gradient / gradient.max().clamp_min(1e-12)))
            draw_cell(ax, *location, grid, gradient.shape)
            mass = f"ρ={float(in_cell_mass(gradient[None], grid, [location])[0]):.2f}" if gradient.sum() > 0 else "dead cell"
            ax.set_title(f"{stage}\n{grid[0]}×{grid[1]}, {mass}", fontsize=7)
        axes_row[0].text(-0.1, 0.5, network, transform=axes_row[0].transAxes, rotation=90, va="center", ha="right", fontsize=8)
    fig.suptitle("Input gradient of one cell per stage (white: its CAM cell)", fontsize=10)
    fig.tight_layout()
    return fig


def show_network_cell(views: dict[str, NetworkView], network: str, stage_index: int, row: int, col: int, view_grid: int = 7):
    """Widget callback: :func:`show_cell` for ``views[network]`` at stage ``stage_index`` (clamped to
    the network's last stage, since networks have different numbers of stages)."""
    if network not in views:
        raise ValueError(f"unknown network {network!r}; choose one of {list(views)}.")
    view = views[network]
    stage = view.stages[min(max(stage_index, 0), len(view.stages) - 1)]
    return show_cell(view.model, view.stages, view.image, view.display, stage, row, col, view_grid, title=network)


def locality_verdict(summary: pd.DataFrame, target_layers: dict[str, str]) -> pd.DataFrame:
    """Per network and weights: ρ at the first stage, at the CAM target layer and at the last stage,
    with the uniform baselines and ratios ρ/ρ_uniform (how concentrated relative to a uniform map)."""
    rows = []
    for (network, weights), group in summary.groupby(["network", "weights"], sort=False):
        group = group.sort_values("stage_index")
        first, last = group.iloc[0], group.iloc[-1]
        target = group[group["stage"] == target_layers.get(network, last["stage"])]
        target = target.iloc[0] if not target.empty else last
        rows.append(dict(network=network, weights=weights, first_stage=first["stage"], first_mass=first["mass"], first_ratio=first["ratio"],
                         target_stage=target["stage"], target_mass=target["mass"], target_low=target["low"], target_high=target["high"],
                         target_uniform=target["uniform"], target_ratio=target["ratio"], last_mass=last["mass"], last_ratio=last["ratio"]))
    return pd.DataFrame(rows)


def network_inputs(spec, photos: Sequence, count: int) -> list[tuple[str, torch.Tensor]]:
    """``(name, input)`` for the first ``count`` photos (classifier) or distinct shipped gallery faces (face network,
    aligned at the network's size when shipped at it, else at 112 px), through the network's preprocessing."""
    if spec.task == "classification":
        return [(photo.name, spec.preprocess(photo.image)) for photo in photos[:count]]
    from fame_utils.data import face_pairs

    faces = {}
    for pair in face_pairs(size=spec.input_size if spec.input_size in (112, 150) else 112):
        faces.setdefault(pair.gallery_id, pair.gallery)
    return [(face_id, spec.preprocess(image)) for face_id, image in list(faces.items())[:count]]


def trained_and_random_locality(
    specs: dict, inputs: dict[str, list[tuple[str, torch.Tensor]]], max_cells: int = 16, seed: int = 0
) -> pd.DataFrame:
    """:func:`locality_by_stage` for every network with its trained weights and with seeded random weights (the control).

    Args:
        specs: loaded networks by name (:class:`~fame_utils.models.ModelSpec`).
        inputs: per network, ``(image name, input)`` from :func:`network_inputs`.
        max_cells: locations sampled per stage.
        seed: location sampling seed.
    """
    from fame_utils.models import load_model

    frames = []
    for name, spec in specs.items():
        names, images = [n for n, _ in inputs[name]], [x for _, x in inputs[name]]
        random_module = load_model(name, weights=None, device=spec.device).module
        for weights, module in (("trained", spec.module), ("random", random_module)):
            frames.append(locality_by_stage(module, spec.stages, images, network=name, weights=weights, image_names=names, max_cells=max_cells, seed=seed))
    return pd.concat(frames, ignore_index=True)


_VERDICT_RECORD = {
    "cam_layer_mass": ("trained", "target_mass"), "cam_layer_mass_high": ("trained", "target_high"),
    "cam_layer_uniform": ("trained", "target_uniform"), "cam_layer_ratio": ("trained", "target_ratio"),
    "first_stage_mass": ("trained", "first_mass"), "first_stage_ratio": ("trained", "first_ratio"),
    "last_stage_mass": ("trained", "last_mass"), "random_cam_layer_mass": ("random", "target_mass"),
    "random_cam_layer_ratio": ("random", "target_ratio"), "random_first_stage_ratio": ("random", "first_ratio"),
}


def verdict_record(verdict: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The numbers notebook 01 records from a :func:`locality_verdict` table, keyed ``{quantity: {network: value}}``
    (trained weights unless the quantity starts with ``random_``)."""
    by_weights = {weights: group.set_index("network") for weights, group in verdict.groupby("weights")}
    return {key: {network: float(value) for network, value in by_weights[weights][column].items()}
            for key, (weights, column) in _VERDICT_RECORD.items() if weights in by_weights}


def verdict_lines(verdict: pd.DataFrame) -> list[str]:
    """One sentence per network: ρ at the CAM layer against uniform, ρ/uniform from the first stage to the CAM
    layer, and how the seeded random-weight control compares."""
    trained = verdict[verdict["weights"] == "trained"].set_index("network")
    random_ = verdict[verdict["weights"] == "random"].set_index("network")
    lines = []
    for name, t in trained.iterrows():
        line = (f"{name:20s} CAM layer {t.target_stage}: rho = {t.target_mass:.2f} (uniform {t.target_uniform:.3f}); "
                f"rho/uniform: first stage {t.first_ratio:.0f}x, CAM layer {t.target_ratio:.1f}x")
        if name in random_.index:
            r = random_.loc[name]
            line += (f"; random weights at CAM layer: rho = {r.target_mass:.2f} "
                     f"({'more' if r.target_mass > t.target_mass else 'less'} in-cell than trained)")
        lines.append(line)
    return lines


def plot_cell_rows(rows: Sequence[tuple[str, np.ndarray, dict[Location, torch.Tensor], tuple[int, int], int]], alpha: float = 0.5):
    """Fig. 1 layout: one figure row per ``(label, display, maps by location, grid, feature-map row)``;
    panel ``c`` shows the map of location (row, c) over the image with its white 1-px CAM cell border
    (missing maps stay blank)."""
    import matplotlib.pyplot as plt

    from fame_utils.viz import draw_cell, overlay

    columns = max(grid[1] for _, _, _, grid, _ in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.4 * columns, 1.5 * len(rows)), squeeze=False)
    for axes_row, (label, display, maps, grid, row) in zip(axes, rows):
        for col, ax in enumerate(axes_row):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if (row, col) not in maps:
                continue
            ax.imshow(overlay(display, maps[(row, col)], alpha))
            draw_cell(ax, row, col, grid, display.shape[:2])
            ax.set_title(f"({row}, {col})", fontsize=7)
        axes_row[0].set_ylabel(f"{label}\nrow {row}", fontsize=7)
    fig.tight_layout()
    return fig
