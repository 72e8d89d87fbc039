"""FGGB (Lu et al., FG 2024): explain a pair with the gradients of every embedding dimension, weighted by how much
that dimension adds to the similarity above the decision threshold.

A gradient baseline. Knows nothing of FAME, CAMs or the metrics.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from fame_utils._checks import check_batch, check_model
from fame_utils.baselines.similarity import NORM_EPS, Maps, l2_normalize, reference_embeddings, split_polarities
from fame_utils.fame.attribution import normalize_map
from fame_utils.models.folding import inference_copy
from fame_utils.runtime import fast_layout

__all__ = ["FGGB_BATCH", "fggb", "fggb_gradients"]

#: Faces per backward pass. The D backward passes of FGGB dominate its cost; sharing each among 8 faces in
#: channels_last costs dlib ResNet half the time per face of one face per pass, SFace about the same, on a 2-core CPU
#: (``benchmarks/fggb.py``).
FGGB_BATCH = 8


def _jacobian_rows(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, Iterator[torch.Tensor]]:
    """φ̂(x) ``(B, D)`` of one forward pass and a generator of its Jacobian rows ∂φ̂_i/∂x ``(B, C, H, W)``, i = 1…D.

    Row i is one backward pass of Σ_b φ̂_b,i over the whole batch: in eval mode the faces do not interact, so
    each face receives its own gradient.
    """
    x = images.detach().requires_grad_(True)
    normalized = l2_normalize(model(x).flatten(1))
    dims = normalized.shape[1]

    def rows() -> Iterator[torch.Tensor]:
        for i in range(dims):
            yield torch.autograd.grad(normalized[:, i].sum(), x, retain_graph=i < dims - 1)[0]

    return normalized.detach(), rows()


def fggb_gradients(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Jacobian ``(B, D, C, H, W)`` of the L2-normalised embedding φ̂(x) = φ(x)/(‖φ(x)‖ + 1e-8) of each image.

    Differentiates through the normalisation; D backward passes, each over the whole batch.

    Raises:
        ValueError: the model is not in eval mode (faces would interact through batch statistics) or ``images`` is
            not a finite ``(B, C, H, W)`` batch.
    """
    check_model(model)
    check_batch(images, "images")
    _, rows = _jacobian_rows(model, images)
    return torch.stack(list(rows), dim=1)


def _signed_maps(model: nn.Module, images: torch.Tensor, references_hat: torch.Tensor, threshold: float, per_dimension: bool) -> torch.Tensor:
    """S = Σ_i w_i m_i ``(B, H, W)`` for a batch of faces, accumulated one Jacobian row at a time."""
    embedding, rows = _jacobian_rows(model, fast_layout(images))
    subtract = threshold if per_dimension else threshold / embedding.shape[1]
    weights = references_hat * embedding - subtract
    signed = images.new_zeros(images.shape[0], *images.shape[-2:])
    for i, gradient in enumerate(rows):
        with torch.no_grad():
            magnitude = gradient.abs().mean(dim=1)
            magnitude = magnitude / (magnitude.flatten(1).norm(dim=1)[:, None, None] + NORM_EPS)
            signed += weights[:, i, None, None] * magnitude
    return signed


def fggb(
    model: nn.Module,
    images: torch.Tensor,
    references: torch.Tensor,
    threshold: float,
    per_dimension: bool = False,
    blur_kernel: int = 25,
    blur_sigma: float = 5.0,
    batch_size: int = FGGB_BATCH,
) -> Maps:
    """FGGB (Lu et al., FG 2024).

    w_i = φ̂_r,i φ̂_x,i − θ/D (θ spread over the D dimensions; ``per_dimension=True`` subtracts the full θ
    from every w_i, which empties e₊ — a demonstration only); g_i = ∂φ̂_x,i/∂x; m_i = mean_c |g_i|,
    m_i ← m_i / (‖m_i‖₂ + 1e-8); S = Σ_i w_i m_i; e₊ = max(S, 0), e₋ = max(−S, 0); Gaussian blur
    ``blur_kernel``/``blur_sigma`` (25/5, docs/decisions.md#blur), then min-max per map.

    Args:
        model: embedding network (input in [0, 1]).
        images: explained images ``(B, C, H, W)``.
        references: the other image of each pair or its embedding ``(B, D)``.
        threshold: θ, the EER threshold of the (network, protocol).
        per_dimension: subtract the full θ from every w_i (see above).
        blur_kernel, blur_sigma: the Gaussian blur of S's polarities.
        batch_size: faces per backward pass (the maps do not depend on it).

    Raises:
        ValueError: ``batch_size`` < 1, or what :func:`~fame_utils.baselines.similarity.reference_embeddings` rejects.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    references_hat = l2_normalize(reference_embeddings(model, images, references))
    network = inference_copy(model)
    starts = range(0, images.shape[0], batch_size)
    signed = torch.cat([_signed_maps(network, images[i:i + batch_size], references_hat[i:i + batch_size], threshold, per_dimension)
                        for i in tqdm(starts, desc="FGGB", leave=False)])
    blurred = [gaussian_blur(polarity[:, None], [blur_kernel, blur_kernel], [blur_sigma, blur_sigma])[:, 0] for polarity in split_polarities(signed)]
    return {"similar": normalize_map(blurred[0], guard=0.0).float(), "dissimilar": normalize_map(blurred[1], guard=0.0).float()}
