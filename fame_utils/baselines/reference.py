"""Sanity baselines that know nothing about the network: a seeded random map and a centre Gaussian.

Every table reports them as a floor: a method that does not beat the random map on deletion AUC, or
the centre Gaussian on IoU (photos are usually centred on their object), has not shown that it
explains the network. Knows nothing of networks or methods.
"""

from __future__ import annotations

import torch

from fame_utils._checks import check_rank
from fame_utils.fame.attribution import normalize_map

__all__ = ["centre_gaussian_maps", "random_maps"]


def _map_shape(images: torch.Tensor) -> tuple[int, int, int]:
    check_rank(images, 4, "images")
    batch, _, height, width = images.shape
    return batch, height, width


def random_maps(images: torch.Tensor, generator: torch.Generator | None = None, seed: int = 0) -> torch.Tensor:
    """Independent uniform noise in [0, 1] per pixel, one ``(H, W)`` map per image.

    Args:
        images: ``(B, C, H, W)`` batch (only its shape is used).
        generator: CPU generator to draw from (e.g. the session's); if None, a fresh one seeded with ``seed``.
        seed: used only when ``generator`` is None.

    Returns:
        ``(B, H, W)`` float32 maps on the images' device. Same seed → same maps.
    """
    batch, height, width = _map_shape(images)
    source = generator if generator is not None else torch.Generator().manual_seed(seed)
    return torch.rand(batch, height, width, generator=source).to(images.device)


def centre_gaussian_maps(images: torch.Tensor, sigma: float = 0.25) -> torch.Tensor:
    """An isotropic Gaussian centred on the image, min-max normalised to [0, 1].

    ``A(y, x) = exp(−((x − c_x)² + (y − c_y)²) / (2 s²))`` with ``s = sigma · min(H, W)`` and the centre
    ``c = ((W − 1)/2, (H − 1)/2)``, then exactly min-max normalised (:func:`~fame_utils.fame.attribution.normalize_map` with ``guard=0``).

    Args:
        images: ``(B, C, H, W)`` batch (only its shape is used).
        sigma: standard deviation as a fraction of the shorter side (> 0).

    Raises:
        ValueError: ``sigma`` ≤ 0 or ``images`` not 4-D.
    """
    batch, height, width = _map_shape(images)
    if not sigma > 0:
        raise ValueError(f"sigma must be a positive fraction of the shorter side, got {sigma}.")
    spread = sigma * min(height, width)
    ys = torch.arange(height, dtype=torch.float32) - (height - 1) / 2
    xs = torch.arange(width, dtype=torch.float32) - (width - 1) / 2
    bump = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * spread**2))
    bump = normalize_map(bump[None], guard=0.0)[0]
    return bump.expand(batch, height, width).clone().to(images.device)
