"""FGGB (Lu et al., FG 2024): explain a pair with the gradients of every embedding dimension, weighted by how much
that dimension adds to the similarity above the decision threshold.

A gradient baseline. Knows nothing of FAME, CAMs or the metrics.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from fame_utils.baselines.similarity import NORM_EPS, Maps, l2_normalize, reference_embeddings, split_polarities
from fame_utils.fame.attribution import normalize_map

__all__ = ["fggb", "fggb_gradients"]


def fggb_gradients(model: nn.Module, image: torch.Tensor, batched: bool = True, chunk_size: int | None = 32) -> torch.Tensor:
    """Jacobian ``(D, C, H, W)`` of the L2-normalised embedding φ̂(x) = φ(x)/(‖φ(x)‖ + 1e-8) of one image.

    Differentiates through the normalisation. ``batched=True`` computes the D rows as batched
    vector-Jacobian products (``autograd.grad(..., is_grads_batched=True)``, ``chunk_size`` rows at a
    time; None = all D at once, which on a 2-core CPU was slower than chunks of 32 because of memory
    traffic, see ``benchmarks/fggb.py``); ``batched=False`` runs D sequential backward passes.
    """
    return _jacobian_and_embedding(model, image, batched, chunk_size)[0]


def _jacobian_and_embedding(model: nn.Module, image: torch.Tensor, batched: bool, chunk_size: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`fggb_gradients` and φ̂(x) of the same forward pass."""
    if image.ndim != 3:
        raise ValueError(f"image must be one (C, H, W) tensor, got {tuple(image.shape)}.")
    x = image.detach()[None].requires_grad_(True)
    normalized = l2_normalize(model(x).flatten(1))[0]
    dims = normalized.shape[0]
    if not batched:
        rows = [torch.autograd.grad(normalized[i], x, retain_graph=True)[0][0] for i in range(dims)]
        return torch.stack(rows), normalized.detach()
    identity = torch.eye(dims, dtype=normalized.dtype, device=normalized.device)
    step = chunk_size or dims
    chunks = []
    for start in range(0, dims, step):
        rows = identity[start : start + step]
        chunks.append(torch.autograd.grad(normalized, x, grad_outputs=rows, retain_graph=True, is_grads_batched=True)[0][:, 0])
    return torch.cat(chunks), normalized.detach()


def fggb(
    model: nn.Module,
    images: torch.Tensor,
    references: torch.Tensor,
    threshold: float,
    per_dimension: bool = False,
    blur_kernel: int = 25,
    blur_sigma: float = 5.0,
    batched: bool = True,
    chunk_size: int | None = 32,
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
        batched: all D gradients as one batched vector-Jacobian product (else D backward passes).
        chunk_size: rows of the Jacobian per batched product (None: all D at once).
    """
    references_hat = l2_normalize(reference_embeddings(model, images, references))
    similar, dissimilar = [], []
    for image, reference in tqdm(zip(images, references_hat, strict=True), total=len(images), desc="FGGB", leave=False):
        jacobian, embedding = _jacobian_and_embedding(model, image, batched, chunk_size)
        with torch.no_grad():
            subtract = threshold if per_dimension else threshold / embedding.numel()
            weights = reference * embedding - subtract
            magnitude = jacobian.abs().mean(dim=1)
            magnitude = magnitude / (magnitude.flatten(1).norm(dim=1)[:, None, None] + NORM_EPS)
            positive, negative = split_polarities(torch.einsum("d,dhw->hw", weights, magnitude))
        similar.append(positive)
        dissimilar.append(negative)
    blurred = [gaussian_blur(torch.stack(maps)[:, None], [blur_kernel, blur_kernel], [blur_sigma, blur_sigma])[:, 0] for maps in (similar, dissimilar)]
    return {"similar": normalize_map(blurred[0], guard=0.0).float(), "dissimilar": normalize_map(blurred[1], guard=0.0).float()}
