"""CorrRISE (Lu et al., WACV 2024): explain a pair by occluding random patches of one image and correlating each
pixel's occlusion with the ranked similarity.

A perturbation baseline: no gradients. Knows nothing of FAME, CAMs or the metrics.
"""

from __future__ import annotations

import torch
from scipy.stats import rankdata
from torch import nn
from tqdm.auto import tqdm

from fame_utils.baselines.similarity import Maps, l2_normalize, reference_embeddings, split_polarities
from fame_utils.fame.attribution import normalize_map
from fame_utils.models.dlib_resnet import DlibResNet
from fame_utils.models.folding import inference_copy
from fame_utils.runtime import FORWARD_BATCH, balanced_chunks, fast_layout

__all__ = ["CORRRISE_BATCH", "corrrise", "corrrise_masks", "corrrise_patch_origins"]

CORRRISE_BATCH: dict[type, int] = {DlibResNet: 16}
"""Masked images per forward pass by network type where it differs from ``runtime.FORWARD_BATCH`` (4).

Measured on a quiet 2-core CPU, inference copies, channels_last, ms per image at 4 / 8 / 16 / 32 (NCHW at 4):
SFace 9.4 / 11.5 / 11.3 / 15.7 (9.2); dlib ResNet 4.0 / 3.2 / 3.0 / 3.0 (4.2).
"""


def _default_patch(size: tuple[int, int]) -> int:
    """30 px at 112, scaled with the input size (40 px at 150)."""
    return max(1, round(30 * min(size) / 112))


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}.")
    return int(height), int(width)


def corrrise_patch_origins(
    n_masks: int, size: int | tuple[int, int], patch_size: int | None = None, n_patches: int = 3, seed: int = 0
) -> torch.Tensor:
    """Top-left corners ``(n_masks, n_patches, 2)`` (row, column), uniform in [0, H − p] × [0, W − p].

    Raises:
        ValueError: non-positive counts or a patch larger than the image.
    """
    height, width = _as_size(size)
    patch = patch_size if patch_size is not None else _default_patch((height, width))
    if n_masks < 1 or n_patches < 1 or patch < 1:
        raise ValueError(f"n_masks, n_patches and patch_size must be ≥ 1, got {n_masks}, {n_patches}, {patch}.")
    if patch > min(height, width):
        raise ValueError(f"patch_size {patch} does not fit in a {height}×{width} image.")
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, height - patch + 1, (n_masks, n_patches), generator=generator)
    cols = torch.randint(0, width - patch + 1, (n_masks, n_patches), generator=generator)
    return torch.stack([rows, cols], dim=-1)


def corrrise_masks(
    n_masks: int = 500, size: int | tuple[int, int] = 112, patch_size: int | None = None, n_patches: int = 3, seed: int = 0
) -> torch.Tensor:
    """CorrRISE keep-masks ``(n_masks, H, W)``: 1 = kept, 0 inside ``n_patches`` square p×p patches.

    The patches lie entirely inside the image (they may overlap each other); p defaults to 30 px at
    112 px, scaled with the image size. The same seed gives the same masks.
    """
    height, width = _as_size(size)
    patch = patch_size if patch_size is not None else _default_patch((height, width))
    origins = corrrise_patch_origins(n_masks, (height, width), patch, n_patches, seed)
    rows = torch.arange(height)
    cols = torch.arange(width)
    inside_rows = (rows[None, None, :] >= origins[..., 0, None]) & (rows[None, None, :] < origins[..., 0, None] + patch)
    inside_cols = (cols[None, None, :] >= origins[..., 1, None]) & (cols[None, None, :] < origins[..., 1, None] + patch)
    occluded = (inside_rows[..., :, None] & inside_cols[..., None, :]).any(dim=1)
    return (~occluded).float()


def _pixel_rank_correlation(masks: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per pixel between the keep indicator and the ranked scores (Spearman).

    Pixels whose indicator never varies (never occluded) get 0.
    """
    ranks = torch.from_numpy(rankdata(scores.cpu().numpy())).to(masks.dtype)
    ranks = ranks - ranks.mean()
    indicator = masks.flatten(1) - masks.flatten(1).mean(dim=0, keepdim=True)
    covariance = ranks @ indicator
    spread = indicator.pow(2).sum(dim=0).sqrt() * ranks.pow(2).sum().sqrt()
    correlation = torch.where(spread > 0, covariance / spread.clamp_min(torch.finfo(masks.dtype).tiny), torch.zeros_like(covariance))
    return correlation.reshape(masks.shape[1:])


def corrrise(
    model: nn.Module,
    images: torch.Tensor,
    references: torch.Tensor,
    masks: torch.Tensor | None = None,
    n_masks: int = 500,
    seed: int = 0,
    batch_size: int | None = None,
) -> Maps:
    """CorrRISE (Lu et al., WACV 2024).

    s_n = cos(φ̂(x ⊙ M_n), φ̂(r)); ρ(p) = Pearson over n of (M_n(p), rank(s_n)); e₊ = max(ρ, 0),
    e₋ = max(−ρ, 0); no blur (docs/decisions.md#blur); min-max per map.

    Args:
        model: embedding network (input in [0, 1]).
        images: explained images ``(B, C, H, W)``.
        references: the other image of each pair or its embedding ``(B, D)``.
        masks: keep-masks ``(N, H, W)`` shared by all images; default :func:`corrrise_masks` with
            ``n_masks`` and ``seed`` (one seeded set per call, so the same for every image of the batch).
        batch_size: most masked images per forward pass (the fewest balanced chunks, channels_last); default
            :data:`CORRRISE_BATCH` for the network's type, else ``runtime.FORWARD_BATCH``. Small batches are fastest
            per image for the depthwise face networks on CPU (SFace: 9 ms/image at 4, 16 ms at 32).
    """
    references_hat = l2_normalize(reference_embeddings(model, images, references))
    if masks is None:
        masks = corrrise_masks(n_masks, tuple(images.shape[-2:]), seed=seed)
    if masks.ndim != 3 or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"masks must be (N, H, W) with H, W = {tuple(images.shape[-2:])}, got {tuple(masks.shape)}.")
    masks = masks.to(images.device, images.dtype)
    forward = inference_copy(model)
    chunks = balanced_chunks(masks.shape[0], CORRRISE_BATCH.get(type(model), FORWARD_BATCH) if batch_size is None else batch_size)
    similar, dissimilar = [], []
    for image, reference in tqdm(zip(images, references_hat, strict=True), total=len(images), desc="CorrRISE", leave=False):
        with torch.inference_mode():
            scores = torch.cat(
                [l2_normalize(forward(fast_layout(image[None] * masks[chunk, None])).flatten(1)) @ reference for chunk in chunks]
            )
        positive, negative = split_polarities(_pixel_rank_correlation(masks.cpu().double(), scores.double()))
        similar.append(positive)
        dissimilar.append(negative)
    return {"similar": normalize_map(torch.stack(similar), guard=0.0).float(), "dissimilar": normalize_map(torch.stack(dissimilar), guard=0.0).float()}
