"""FAME's entry points: explain feature-map locations, a class, or one side of a verification pair.

Each one picks its loss, runs the optimiser and builds the map; it knows nothing of baselines, metrics or plotting.
FAME perturbs exactly the tensor the model takes, and maps are computed in that same space
(docs/decisions.md#perturbation-space).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fame_utils._checks import (
    as_batch,
    check_blur_fits,
    check_classes,
    check_inside,
    check_input,
    check_iterations,
    check_model,
    class_list,
    location_indices,
    location_list,
    single_image,
)
from fame_utils.fame.attribution import attribution
from fame_utils.fame.config import FameConfig
from fame_utils.fame.losses import class_objective, location_loss, verification_loss
from fame_utils.fame.optimizer import optimize
from fame_utils.layers import probe_layer, resolve_layer
from fame_utils.runtime import LOCATION_BATCH, balanced_chunks

__all__ = ["feature_grid", "all_locations", "explain_locations", "explain_class", "explain_verification"]


def feature_grid(model: nn.Module, layer: nn.Module | str, image: torch.Tensor) -> tuple[int, int]:
    """(h, w) of ``layer``'s feature map for ``image`` (one forward without gradients; the layer must run once)."""
    single = single_image(image)
    check_input(model, single, "image")
    activation, _ = probe_layer(model, layer, single)
    if activation.ndim != 4:
        raise ValueError(f"layer output must be a (B, C, h, w) feature map, got shape {tuple(activation.shape)}.")
    return int(activation.shape[-2]), int(activation.shape[-1])


def all_locations(grid: Sequence[int]) -> list[tuple[int, int]]:
    """Every (row, col) of an h×w grid in row-major order: index = row·w + col."""
    height, width = (int(v) for v in grid)
    return [(row, col) for row in range(height) for col in range(width)]


def explain_locations(
    model: nn.Module,
    layer: nn.Module | str,
    image: torch.Tensor,
    locations: Sequence[tuple[int, int]] | None = None,
    config: FameConfig | None = None,
    batch_size: int = LOCATION_BATCH,
    progress: bool = False,
) -> torch.Tensor:
    """FAME map of each feature-map location k = (row, col) of ``layer`` for one image (L_a, Eq. 5).

    The image is replicated once per location, in the fewest chunks of at most ``batch_size`` (sizes
    balanced); each copy gets its own location. Because early stopping is per sample, a location's map is
    the same alone or in a batch.

    Args:
        model: network in eval mode taking the tensor being perturbed.
        layer: module or dotted name (``"blocks[-1]"``); the forward stops there.
        image: (C, H, W) or (1, C, H, W).
        locations: ``(row, col)`` pairs; default all locations, row-major.
        config: hyperparameters (default :class:`FameConfig`).
        batch_size: most locations per optimisation batch (default ``runtime.LOCATION_BATCH``, measured there).
        progress: show a progress bar over chunks.

    Returns:
        (L, H, W) maps in [0, 1], in the order of ``locations``.

    Raises:
        ValueError: more than one image, a location outside the grid, an unknown or reused layer, a bad image,
            zero iterations, a blur kernel larger than the image — all before the optimisation starts.
        TypeError: a bare ``(row, col)`` instead of a list of pairs, non-integer locations.
    """
    config = config or FameConfig()
    check_iterations(config.iterations)
    check_model(model)
    resolve_layer(model, layer)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    single = single_image(image)
    check_blur_fits(config.blur_kernel, single.shape[-2:])
    picked = None if locations is None else location_list(locations)
    grid = feature_grid(model, layer, single)
    chosen = all_locations(grid) if picked is None else picked
    rows, cols = location_indices(chosen)
    check_inside(rows, cols, grid)
    chunks = balanced_chunks(len(chosen), batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="locations", leave=False)
    maps = []
    for chunk in chunks:
        part = chosen[chunk]
        batch = single.expand(len(part), -1, -1, -1).clone()
        with torch.enable_grad():
            perturbed = optimize(batch, location_loss(model, layer, part), config)
        maps.append(attribution(batch, perturbed, config))
    return torch.cat(maps)


def explain_class(
    model: nn.Module,
    images: torch.Tensor,
    classes: int | Sequence[int] | torch.Tensor,
    config: FameConfig | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """FAME map for class ``classes[b]`` of each image: minimise z_o (|z_o| with ε = 1e-3 when ``paper_faithful``).

    Args:
        model: classifier in eval mode taking ``images`` as they are (e.g. the normalised tensor).
        images: (B, C, H, W) or one (C, H, W) image.
        classes: one class index per image (the ground-truth class of the protocol).
        config: hyperparameters; :meth:`FameConfig.class_epsilon` gives the ε applied.
        progress: show a progress bar over iterations.

    Returns:
        (B, H, W) maps in [0, 1].

    Raises:
        ValueError / TypeError: bad images or model (see :mod:`fame_utils._checks`), class indices that are
            negative, out of range, bools or floats, zero iterations, a blur kernel larger than the image.
    """
    config = config or FameConfig()
    check_iterations(config.iterations)
    check_model(model)
    batch = as_batch(images)
    check_input(model, batch)
    check_blur_fits(config.blur_kernel, batch.shape[-2:])
    targets = class_list(classes, batch.shape[0], "classes", "samples")
    with torch.no_grad():
        logits = model(batch[:1])
    check_classes(targets, logits.shape[-1], "classes")
    loss, run_config = class_objective(model, targets, config)
    with torch.enable_grad():
        perturbed = optimize(batch, loss, run_config, progress=progress)
    return attribution(batch, perturbed, config)


def explain_verification(
    model: nn.Module,
    image: torch.Tensor,
    reference: torch.Tensor,
    config: FameConfig | None = None,
    modes: Sequence[str] = ("similar", "dissimilar"),
    detach_norms: bool = False,
    progress: bool = False,
    batch_size: int = 8,
) -> dict[str, torch.Tensor]:
    """FAME maps of ``image`` against the frozen embedding of ``reference`` (one side of each pair).

    e₊ (``"similar"``) minimises s(φ(x̄), φ_ref) and marks regions supporting the match; e₋
    (``"dissimilar"``) minimises 1 − s and marks regions pushing the pair apart. φ_ref is computed once
    without gradients. The reference code and the original LOTS utility stop at ε = 0.01; pass
    ``FameConfig(epsilon=0.01)`` for that (impostor pairs with s < 0.01 then give empty e₊ maps, docs/decisions.md#verification-epsilon).

    Args:
        model: embedding network in eval mode, (B, C, H, W) → (B, D).
        image: the explained images, (B, C, H, W) or (C, H, W); only they are perturbed.
        reference: the other image of each pair, same batch size (or one image for all).
        config: hyperparameters.
        modes: which maps to compute.
        detach_norms: cosine similarity with frozen norms (footnote 4 variant).
        progress: show progress bars over iterations.
        batch_size: images optimised together. Each image's map is the same alone or in a batch (the loss and
            early stopping are per sample); 8 is the fastest measured on a 2-core CPU (SFace: 43 ms per
            image-iteration at 8, 79 ms with all 45 shipped pairs at once; dlib 13 vs 12 ms). The batch-mean early
            stop of ``paper_faithful`` with an ε sees the whole batch, so it is not split then.

    Returns:
        ``{"similar": (B, H, W), "dissimilar": (B, H, W)}`` (only the requested modes).
    """
    config = config or FameConfig()
    check_iterations(config.iterations)
    check_model(model)
    unknown = [mode for mode in modes if mode not in ("similar", "dissimilar")]
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of ('similar', 'dissimilar'), got {tuple(modes)!r}.")
    batch = as_batch(image, "image")
    references = as_batch(reference, "reference")
    check_input(model, batch, "image")
    check_input(model, references, "reference")
    check_blur_fits(config.blur_kernel, batch.shape[-2:])
    if references.shape[0] not in (1, batch.shape[0]):
        raise ValueError(f"reference has {references.shape[0]} images but image has {batch.shape[0]}; pass one reference per image (or a single one).")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    with torch.no_grad():
        reference_embedding = model(references).detach()
    if reference_embedding.shape[0] == 1:
        reference_embedding = reference_embedding.expand(batch.shape[0], *reference_embedding.shape[1:])
    chunk_size = batch.shape[0] if config.early_stop_rule == "batch-mean" and config.epsilon is not None else batch_size
    maps = {}
    for mode in modes:
        parts = []
        for start in range(0, batch.shape[0], chunk_size):
            chunk, chunk_reference = batch[start:start + chunk_size], reference_embedding[start:start + chunk_size]
            loss = verification_loss(model, chunk_reference, mode, detach_norms=detach_norms)
            with torch.enable_grad():
                perturbed = optimize(chunk, loss, config, progress=progress)
            parts.append(attribution(chunk, perturbed, config))
        maps[mode] = torch.cat(parts)
    return maps
