"""From perturbation to map (paper Eq. 4): gray, difference, blur, normalise.

Works on an image and its perturbed copy only; it knows nothing of models, losses or the optimiser.
"""

from __future__ import annotations

import torch
from torchvision.transforms.functional import gaussian_blur

from fame_utils._checks import check_pair, check_rank
from fame_utils.fame.config import NORMALIZATIONS, FameConfig

__all__ = ["GRAY_WEIGHTS", "to_gray", "perturbation_map", "blur_map", "normalize_map", "attribution"]

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
"""Luma weights applied in the stored channel order (B/G/R for BGR face crops, docs/decisions.md#gray-on-bgr)."""
_GRAD_GUARD = 1e-12
_NORM_GUARD = 1e-8


def to_gray(image: torch.Tensor) -> torch.Tensor:
    """Luma 0.2989·c₀ + 0.587·c₁ + 0.114·c₂ in the stored channel order: (B, 3, H, W) → (B, H, W).

    A single-channel batch (B, 1, H, W) is returned as (B, H, W).
    """
    check_rank(image, 4, "image")
    if image.shape[1] == 1:
        return image[:, 0]
    if image.shape[1] != 3:
        raise ValueError(f"to_gray needs 1 or 3 channels, got {image.shape[1]} (shape {tuple(image.shape)}).")
    weights = torch.tensor(GRAY_WEIGHTS, dtype=image.dtype, device=image.device)
    return torch.einsum("bchw,c->bhw", image, weights)


def perturbation_map(image: torch.Tensor, perturbed: torch.Tensor) -> torch.Tensor:
    """Eq. (4) before smoothing: d = |Gray(x̄) − Gray(x)|, pre-scaled by its max (guard 1e-12): (B, H, W)."""
    check_pair(image, perturbed)
    difference = (to_gray(perturbed) - to_gray(image)).abs()
    return difference / difference.amax(dim=(1, 2), keepdim=True).clamp_min(_GRAD_GUARD)


def blur_map(maps: torch.Tensor, kernel: int | None = 49, sigma: float = 7.7) -> torch.Tensor:
    """Gaussian blur of (B, H, W) maps with reflect padding (torchvision); ``kernel=None`` returns them unchanged.

    An even kernel is raised to the next odd size.

    Raises:
        ValueError: kernel too large for reflect padding (kernel // 2 must be < H and < W).
    """
    check_rank(maps, 3, "maps")
    if kernel is None:
        return maps
    kernel = int(kernel) | 1
    if kernel // 2 >= min(maps.shape[-2:]):
        raise ValueError(f"blur kernel {kernel} is too large for {tuple(maps.shape[-2:])} maps (reflect padding needs kernel // 2 < size); use a smaller kernel or None.")
    return gaussian_blur(maps[:, None], [kernel, kernel], [float(sigma), float(sigma)])[:, 0]


def normalize_map(maps: torch.Tensor, mode: str = "minmax", guard: float = _NORM_GUARD) -> torch.Tensor:
    """Per-map normalisation to [0, 1]: ``minmax`` (d − min)/(max − min + guard) or ``max`` d/(max + guard).

    FAME's guard is 1e-8 (docs/decisions.md#normalisation); ``guard=0`` gives the exact min-max the verification
    baselines use. A constant (e.g. all-zero) map becomes all zero (no NaN) with any guard.
    """
    check_rank(maps, 3, "maps")
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {mode!r}; use one of {NORMALIZATIONS}.")
    tiny = torch.finfo(maps.dtype).tiny
    high = maps.amax(dim=(1, 2), keepdim=True)
    if mode == "max":
        return maps / (high + guard).clamp_min(tiny)
    low = maps.amin(dim=(1, 2), keepdim=True)
    return (maps - low) / (high - low + guard).clamp_min(tiny)


def attribution(image: torch.Tensor, perturbed: torch.Tensor, config: FameConfig | None = None) -> torch.Tensor:
    """FAME map from x and x̄: gray → subtract → abs → pre-scale → blur → normalise, (B, H, W) in [0, 1]."""
    config = config or FameConfig()
    maps = perturbation_map(image, perturbed)
    maps = blur_map(maps, config.blur_kernel, config.blur_sigma)
    return normalize_map(maps, config.effective_normalization)
