"""The one set of argument checks every layer uses: tensors, batches, single images, lengths, locations, models.

Each check raises a named error that says which argument is wrong and what to pass instead. It knows nothing of
FAME, metrics or notebooks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

__all__ = [
    "check_rank",
    "check_finite",
    "check_batch",
    "check_pair",
    "as_batch",
    "single_image",
    "check_length",
    "class_list",
    "location_indices",
    "check_inside",
    "check_model",
    "check_eval",
    "model_device",
    "check_input",
    "check_classes",
    "location_list",
    "check_iterations",
    "check_blur_fits",
    "check_unit_threshold",
    "check_similarities",
]


def check_rank(tensor: torch.Tensor, rank: int, name: str) -> None:
    """``tensor`` is a torch tensor with ``rank`` dimensions (TypeError / ValueError otherwise)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.ndim != rank:
        raise ValueError(f"{name} must have {rank} dimensions, got shape {tuple(tensor.shape)}.")


def check_finite(tensor: torch.Tensor, name: str) -> None:
    """``tensor`` holds no NaN or infinite value."""
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or infinite values.")


def check_batch(tensor: torch.Tensor, name: str) -> None:
    """``tensor`` is a non-empty, finite, floating-point (B, C, H, W) batch."""
    check_rank(tensor, 4, name)
    if not tensor.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {tensor.dtype}.")
    if tensor.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch.")
    check_finite(tensor, name)


def check_pair(image: torch.Tensor, perturbed: torch.Tensor) -> None:
    """``image`` and ``perturbed`` are valid batches of the same shape."""
    check_batch(image, "image")
    check_batch(perturbed, "perturbed")
    if image.shape != perturbed.shape:
        raise ValueError(f"image {tuple(image.shape)} and perturbed {tuple(perturbed.shape)} must have the same shape.")


def as_batch(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    """``images`` as a checked (B, C, H, W) batch; one (C, H, W) image becomes a batch of one."""
    if isinstance(images, torch.Tensor) and images.ndim == 3:
        images = images[None]
    check_batch(images, name)
    return images


def single_image(image: torch.Tensor, name: str = "image") -> torch.Tensor:
    """One image, given as (C, H, W) or (1, C, H, W), returned as a checked (1, C, H, W) batch."""
    batch = as_batch(image, name)
    if batch.shape[0] != 1:
        raise ValueError(f"{name} must be one image, got a batch of {batch.shape[0]}; explain one image at a time (loop over the images).")
    return batch


def check_length(batch: int, count: int, what: str, items: str = "samples") -> None:
    """A batch of ``batch`` ``items`` gets exactly one of ``what`` per item (``count`` of them)."""
    if batch != count:
        raise ValueError(f"batch has {batch} {items} but {count} {what} were given; pass exactly one per {items.rstrip('s')}.")


def _integer(value: object, what: str) -> int:
    """``value`` as an int; bools, floats and other types are refused (no silent truncation)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{what} must be integers, got {value!r} ({type(value).__name__}); pass int indices such as 3, not bools or floats.")
    return int(value)


def class_list(classes: int | Sequence[int] | torch.Tensor, batch: int, what: str = "target classes", items: str = "images") -> list[int]:
    """``classes`` as a list of non-negative ints, one per image of a batch of ``batch``.

    Bools, floats and negative indices (``-1`` would silently mean the last class) are refused.
    """
    if isinstance(classes, (torch.Tensor, np.ndarray)):
        integer = classes.dtype != torch.bool and not classes.is_floating_point() and not classes.is_complex() if isinstance(classes, torch.Tensor) else np.issubdtype(classes.dtype, np.integer)
        if not integer:
            raise TypeError(f"{what} must hold integer class indices, got dtype {classes.dtype}; pass e.g. torch.tensor([3, 7]).")
        values = classes.reshape(-1).tolist()
    elif isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        values = [classes]
    else:
        values = list(classes)
    labels = [_integer(value, what) for value in values]
    negative = [label for label in labels if label < 0]
    if negative:
        raise ValueError(f"{what} must be class indices ≥ 0, got {negative}; negative indices are not counted from the end, pass the class's own index.")
    check_length(batch, len(labels), what, items)
    return labels


def check_classes(labels: Sequence[int], num_classes: int, what: str = "target classes") -> None:
    """Every label is a valid index of a model with ``num_classes`` outputs."""
    outside = [label for label in labels if not 0 <= label < num_classes]
    if outside:
        raise ValueError(f"{what} {outside} are out of range: the model has {num_classes} classes, so pass indices in [0, {num_classes - 1}].")


def location_list(locations: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``locations`` as a non-empty list of integer (row, col) pairs.

    A bare pair ``(1, 2)`` and non-integer entries (``1.9``) are refused instead of being truncated.
    """
    if isinstance(locations, torch.Tensor):
        locations = locations.tolist()
    if isinstance(locations, (str, bytes)) or not isinstance(locations, Sequence):
        raise TypeError(f"locations must be a list of (row, col) pairs, got {type(locations).__name__}.")
    if len(locations) == 2 and all(isinstance(v, Real) for v in locations):
        raise TypeError(f"locations must be a list of (row, col) pairs, got the bare pair {tuple(locations)!r}; wrap it in a list: [{tuple(locations)!r}].")
    if not locations:
        raise ValueError("locations is empty; pass at least one (row, col).")
    pairs = []
    for location in locations:
        if isinstance(location, (str, bytes)) or not isinstance(location, Sequence) or len(location) != 2:
            raise TypeError(f"each location must be a (row, col) pair, got {location!r}.")
        pairs.append((_integer(location[0], "location rows and columns"), _integer(location[1], "location rows and columns")))
    return pairs


def location_indices(locations: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index tensors of a non-empty list of integer (row, col) pairs (see :func:`location_list`)."""
    indices = torch.tensor(location_list(locations), dtype=torch.long)
    return indices[:, 0], indices[:, 1]


def check_inside(rows: torch.Tensor, cols: torch.Tensor, grid: Sequence[int]) -> None:
    """Every (row, col) lies on the ``grid`` = (h, w) feature map."""
    height, width = int(grid[0]), int(grid[1])
    outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
    if bool(outside.any()):
        bad = [(int(r), int(c)) for r, c in zip(rows[outside], cols[outside])]
        raise ValueError(f"locations {bad} lie outside the {height}x{width} feature map; rows must be in [0, {height - 1}] and columns in [0, {width - 1}].")


def check_eval(model: nn.Module) -> None:
    """``model`` and every submodule are in eval mode: in training mode BatchNorm couples the samples of a batch
    (and overwrites its running statistics) and dropout randomises them."""
    training = [name or type(model).__name__ for name, module in model.named_modules() if module.training]
    if training:
        shown = ", ".join(training[:5]) + (f" and {len(training) - 5} more" if len(training) > 5 else "")
        raise ValueError(f"model has submodules in training mode ({shown}); BatchNorm/dropout would couple or randomise samples. Call model.eval() first.")


def check_model(model: nn.Module) -> None:
    """``model`` is a torch module in eval mode."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
    check_eval(model)


def model_device(model: nn.Module, fallback: torch.Tensor | None = None) -> torch.device:
    """The device of ``model``'s parameters; a parameter-free model runs where ``fallback`` lives (else the CPU)."""
    parameter = next(model.parameters(), None)
    if parameter is not None:
        return parameter.device
    return fallback.device if fallback is not None else torch.device("cpu")


def _first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((module for module in model.modules() if isinstance(module, nn.Conv2d)), None)


def check_input(model: nn.Module, images: torch.Tensor, name: str = "images") -> None:
    """``images`` live on ``model``'s device, have its parameter dtype and its first convolution's channel count."""
    parameter = next(model.parameters(), None)
    if parameter is not None and images.device != parameter.device:
        raise ValueError(f"{name} are on {images.device} but the model is on {parameter.device}; move one of them, e.g. {name}.to({str(parameter.device)!r}).")
    if parameter is not None and parameter.is_floating_point() and images.dtype != parameter.dtype:
        raise ValueError(f"{name} are {images.dtype} but the model's parameters are {parameter.dtype}; convert with {name}.to({parameter.dtype}).")
    conv = _first_conv(model)
    if conv is not None and images.shape[1] != conv.in_channels:
        raise ValueError(
            f"{name} have {images.shape[1]} channels but the model's first convolution takes {conv.in_channels}; "
            "convert the image (e.g. grey or RGBA to RGB) before explaining it."
        )


def check_iterations(iterations: int) -> None:
    """At least one optimisation step is asked for (zero steps would give an all-zero map)."""
    if isinstance(iterations, bool) or not isinstance(iterations, Integral) or iterations < 1:
        raise ValueError(f"iterations must be an int ≥ 1 to explain anything, got {iterations!r}; use e.g. FameConfig(iterations=500).")


def check_blur_fits(kernel: int | None, size: Sequence[int]) -> None:
    """A Gaussian blur of ``kernel`` pixels can pad an ``size`` = (H, W) map (reflect padding needs kernel // 2 < H, W)."""
    height, width = int(size[0]), int(size[1])
    if kernel is not None and kernel // 2 >= min(height, width):
        raise ValueError(
            f"blur kernel {kernel} is too large for a {height}x{width} image; use a kernel below {2 * min(height, width) - 1} "
            "(FameConfig(blur_kernel=...)) or blur_kernel=None."
        )


def check_unit_threshold(threshold: float, name: str = "threshold") -> None:
    """``threshold`` is a number in [0, 1] (not NaN)."""
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or math.isnan(threshold) or not 0 <= threshold <= 1:
        raise ValueError(f"{name} must be a number in [0, 1] (maps are normalised to [0, 1]), got {threshold!r}.")


def check_similarities(scores: np.ndarray, genuine: np.ndarray) -> None:
    """Genuine pairs score above impostor pairs more often than not, as similarities do (distances do the opposite).

    Uses the rank-sum estimate of P(genuine score > impostor score); below 0.5 the scores rank like distances.
    """
    ranks = rankdata(scores)
    count_genuine, count_impostor = int(genuine.sum()), int((~genuine).sum())
    above = (ranks[genuine].sum() - count_genuine * (count_genuine + 1) / 2) / (count_genuine * count_impostor)
    if above < 0.5:
        raise ValueError(
            f"scores look like distances: genuine pairs score below impostor pairs (P(genuine > impostor) = {above:.2f}); "
            "pass similarities (higher = more alike), e.g. negate distances or use cosine similarity."
        )
