"""The one set of argument checks every layer uses: tensors, batches, single images, lengths, locations, models.

Each check raises a named error that says which argument is wrong and what to pass instead. It knows nothing of
FAME, metrics or notebooks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
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


def class_list(classes: int | Sequence[int] | torch.Tensor, batch: int, what: str = "target classes", items: str = "images") -> list[int]:
    """``classes`` as a list of ints, one per image of a batch of ``batch``."""
    labels = [int(c) for c in torch.as_tensor(classes).reshape(-1).tolist()]
    check_length(batch, len(labels), what, items)
    return labels


def location_indices(locations: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index tensors of a non-empty list of (row, col) pairs."""
    try:
        pairs = [(int(row), int(col)) for row, col in locations]
    except (TypeError, ValueError) as error:
        raise ValueError(f"locations must be a sequence of (row, col) integer pairs: {error}") from error
    if not pairs:
        raise ValueError("locations is empty; pass at least one (row, col).")
    indices = torch.tensor(pairs, dtype=torch.long)
    return indices[:, 0], indices[:, 1]


def check_inside(rows: torch.Tensor, cols: torch.Tensor, grid: Sequence[int]) -> None:
    """Every (row, col) lies on the ``grid`` = (h, w) feature map."""
    height, width = int(grid[0]), int(grid[1])
    outside = (rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)
    if bool(outside.any()):
        bad = [(int(r), int(c)) for r, c in zip(rows[outside], cols[outside])]
        raise ValueError(f"locations {bad} lie outside the {height}x{width} feature map; rows must be in [0, {height - 1}] and columns in [0, {width - 1}].")


def check_eval(model: nn.Module) -> None:
    """``model`` is in eval mode: in training mode BatchNorm couples the samples of a batch and dropout randomises them."""
    if model.training:
        raise ValueError("model is in training mode (BatchNorm/dropout would couple or randomise samples); call model.eval() first.")


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
