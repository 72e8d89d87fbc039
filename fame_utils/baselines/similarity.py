"""What the face-verification baselines share: frozen reference embeddings, L2 normalisation and the split of a signed
map into its similar (e₊) and dissimilar (e₋) polarities.

Every verification baseline returns ``{"similar": (B, H, W), "dissimilar": (B, H, W) | None}`` maps in [0, 1] at
input resolution, like :func:`fame_utils.fame.explain_verification`. Knows nothing of any one method.
"""

from __future__ import annotations

import torch
from torch import nn

from fame_utils._checks import check_batch, check_input, check_model

__all__ = ["Maps", "NORM_EPS", "reference_embeddings", "l2_normalize", "split_polarities"]

Maps = dict[str, torch.Tensor | None]
"""``{"similar": e₊ maps, "dissimilar": e₋ maps or None}``."""
NORM_EPS = 1e-8


def reference_embeddings(model: nn.Module, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Embeddings ``(B, D)`` of the frozen references: images are embedded without gradients, 2-D tensors are taken as is.

    Raises:
        ValueError: ``images`` is not a finite (B, C, H, W) batch the model takes (device, dtype, channels), the model
            is not in eval mode, or ``references`` differs from the images in length or shape.
    """
    check_model(model)
    check_batch(images, "images")
    check_input(model, images)
    if references.shape[0] != images.shape[0]:
        raise ValueError(f"images and references must have the same batch size, got {images.shape[0]} and {references.shape[0]}.")
    if references.ndim == 2:
        if not bool(torch.isfinite(references).all()):
            raise ValueError("references contains NaN or infinite embedding values; recompute the reference embeddings.")
        return references.detach()
    if references.shape != images.shape:
        raise ValueError(f"references must be images of the same shape as images {tuple(images.shape)} or embeddings (B, D), got {tuple(references.shape)}.")
    check_batch(references, "references")
    with torch.no_grad():
        return model(references).flatten(1)


def l2_normalize(embeddings: torch.Tensor) -> torch.Tensor:
    """φ̂ = φ / (‖φ‖ + 1e-8) per row."""
    return embeddings / (embeddings.norm(dim=1, keepdim=True) + NORM_EPS)


def split_polarities(signed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """e₊ = max(S, 0), e₋ = max(−S, 0)."""
    return signed.clamp_min(0), (-signed).clamp_min(0)
