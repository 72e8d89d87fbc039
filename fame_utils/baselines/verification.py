"""Face-verification baselines: CAM-cosine, Grad-CAM-EW-cosine, CorrRISE and FGGB (fame-method §6.4, §11).

Every method explains ``images`` against frozen ``references`` (the other image of each pair, or its
embedding) and returns ``{"similar": (B, H, W), "dissimilar": (B, H, W) | None}`` maps in [0, 1] at
input resolution, like :func:`fame_utils.fame.explain_verification`.

* similar (e₊): regions supporting the match; dissimilar (e₋): regions pushing the pair apart.
* The CAMs have no dissimilar map: their ``"dissimilar"`` entry is ``None`` (figures draw a blank panel).
* Images are the network's own input tensors in [0, 1]; occluded pixels are 0 (black).
* A polarity with no support (e.g. FGGB's e₊ under per-dimension θ subtraction) is an all-zero map.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMElementWise
from pytorch_grad_cam.base_cam import BaseCAM
from scipy.stats import rankdata
from torch import nn
from torchvision.transforms.functional import gaussian_blur
from tqdm.auto import tqdm

from fame_utils.fame import FameConfig, explain_verification
from fame_utils.layers import resolve_layer

__all__ = [
    "VERIFICATION_METHODS",
    "CosineSimilarityTarget",
    "DotProductTarget",
    "corrrise",
    "corrrise_masks",
    "corrrise_patch_origins",
    "explain_pairs",
    "fggb",
    "fggb_gradients",
    "gradcam_ew_verification",
    "gradcam_verification",
]

Maps = dict[str, torch.Tensor | None]
NORM_EPS = 1e-8
#: The methods of Tab. 2 / Figs. 3, 10–12, in the paper's order.
VERIFICATION_METHODS: tuple[str, ...] = ("Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME")


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor in [0, 1], got {shape}.")


def _reference_embeddings(model: nn.Module, images: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """Embeddings ``(B, D)`` of the frozen references: images are embedded, 2-D tensors are taken as is."""
    _check_images(images)
    if references.shape[0] != images.shape[0]:
        raise ValueError(f"images and references must have the same batch size, got {images.shape[0]} and {references.shape[0]}.")
    if references.ndim == 2:
        return references.detach()
    if references.shape != images.shape:
        raise ValueError(f"references must be images of the same shape as images {tuple(images.shape)} or embeddings (B, D), got {tuple(references.shape)}.")
    with torch.no_grad():
        return model(references).flatten(1)


def _l2_normalize(embeddings: torch.Tensor) -> torch.Tensor:
    """φ̂ = φ / (‖φ‖ + 1e-8) per row."""
    return embeddings / (embeddings.norm(dim=1, keepdim=True) + NORM_EPS)


def _minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-map (A − min) / (max − min); a constant map becomes all zeros (an empty polarity)."""
    flat = maps.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return scaled.reshape(maps.shape)


def _split_polarities(signed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """e₊ = max(S, 0), e₋ = max(−S, 0)."""
    return signed.clamp_min(0), (-signed).clamp_min(0)


class CosineSimilarityTarget:
    """CAM target y = φ(x)ᵀφ_ref / (‖φ(x_clean)‖ ‖φ_ref‖), both norms frozen at the clean images (§11)."""

    def __init__(self, reference: torch.Tensor, clean_norm: float) -> None:
        self.reference = reference.detach()
        self.scale = float(clean_norm) * float(self.reference.norm())
        if self.scale <= 0:
            raise ValueError("CosineSimilarityTarget needs non-zero embeddings (got a zero norm).")

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output.flatten() * self.reference.flatten()).sum() / self.scale


class DotProductTarget:
    """CAM target y = φ(x)ᵀφ_ref (same normalised CAM as the cosine target: only a constant factor differs)."""

    def __init__(self, reference: torch.Tensor) -> None:
        self.reference = reference.detach()

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return (output.flatten() * self.reference.flatten()).sum()


def _cam_verification(
    cam_class: type[BaseCAM], model: nn.Module, target_layer: nn.Module | str, images: torch.Tensor, references: torch.Tensor, target: str
) -> Maps:
    reference_embeddings = _reference_embeddings(model, images, references)
    if target == "cosine":
        with torch.no_grad():
            clean_norms = model(images).flatten(1).norm(dim=1)
        targets: list[Callable] = [CosineSimilarityTarget(r, n) for r, n in zip(reference_embeddings, clean_norms, strict=True)]
    elif target == "dot":
        targets = [DotProductTarget(r) for r in reference_embeddings]
    else:
        raise ValueError(f"target must be 'cosine' or 'dot', got {target!r}.")
    with cam_class(model=model, target_layers=[resolve_layer(model, target_layer)]) as cam:
        maps = cam(input_tensor=images, targets=targets)
    return {"similar": torch.from_numpy(np.ascontiguousarray(maps)).float(), "dissimilar": None}


def gradcam_verification(
    model: nn.Module, target_layer: nn.Module | str, images: torch.Tensor, references: torch.Tensor, target: str = "cosine"
) -> Maps:
    """Grad-CAM of the pair similarity (pytorch-grad-cam), similar map only.

    M = ReLU(Σ_c α_c A^c), α_c = mean_hw ∂y/∂A^c, y = the cosine similarity with frozen norms
    (``target="cosine"``) or the dot product (``"dot"``); the normalised maps are identical.

    Args:
        model: embedding network (input in [0, 1]).
        target_layer: module or dotted name of the CAM layer.
        images: explained images ``(B, C, H, W)``.
        references: the other image of each pair ``(B, C, H, W)`` or its embedding ``(B, D)``.
        target: ``"cosine"`` or ``"dot"``.

    Returns:
        ``{"similar": (B, H, W) in [0, 1], "dissimilar": None}``.
    """
    return _cam_verification(GradCAM, model, target_layer, images, references, target)


def gradcam_ew_verification(
    model: nn.Module, target_layer: nn.Module | str, images: torch.Tensor, references: torch.Tensor, target: str = "cosine"
) -> Maps:
    """Grad-CAM-EW (element-wise) of the pair similarity: M = Σ_c ReLU(G^c ⊙ A^c); arguments as :func:`gradcam_verification`."""
    return _cam_verification(GradCAMElementWise, model, target_layer, images, references, target)


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
    batch_size: int = 250,
) -> Maps:
    """CorrRISE (Lu et al., WACV 2024) as in fame-method §11.

    s_n = cos(φ̂(x ⊙ M_n), φ̂(r)); ρ(p) = Pearson over n of (M_n(p), rank(s_n)); e₊ = max(ρ, 0),
    e₋ = max(−ρ, 0); no blur; min-max per map.

    Args:
        model: embedding network (input in [0, 1]).
        images: explained images ``(B, C, H, W)``.
        references: the other image of each pair or its embedding ``(B, D)``.
        masks: keep-masks ``(N, H, W)`` shared by all images; default :func:`corrrise_masks` with
            ``n_masks`` and ``seed`` (one seeded set per call, so the same for every image of the batch).
        batch_size: masked images per forward pass.
    """
    reference_embeddings = _l2_normalize(_reference_embeddings(model, images, references))
    if masks is None:
        masks = corrrise_masks(n_masks, tuple(images.shape[-2:]), seed=seed)
    if masks.ndim != 3 or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"masks must be (N, H, W) with H, W = {tuple(images.shape[-2:])}, got {tuple(masks.shape)}.")
    masks = masks.to(images.device, images.dtype)
    similar, dissimilar = [], []
    for image, reference in tqdm(zip(images, reference_embeddings, strict=True), total=len(images), desc="CorrRISE", leave=False):
        with torch.no_grad():
            scores = torch.cat(
                [_l2_normalize(model(image[None] * chunk[:, None]).flatten(1)) @ reference for chunk in masks.split(batch_size)]
            )
        positive, negative = _split_polarities(_pixel_rank_correlation(masks.cpu().double(), scores.double()))
        similar.append(positive)
        dissimilar.append(negative)
    return {"similar": _minmax(torch.stack(similar)).float(), "dissimilar": _minmax(torch.stack(dissimilar)).float()}


def fggb_gradients(model: nn.Module, image: torch.Tensor, batched: bool = True, chunk_size: int | None = 32) -> torch.Tensor:
    """Jacobian ``(D, C, H, W)`` of the L2-normalised embedding φ̂(x) = φ(x)/(‖φ(x)‖ + 1e-8) of one image.

    Differentiates through the normalisation. ``batched=True`` computes the D rows as batched
    vector-Jacobian products (``autograd.grad(..., is_grads_batched=True)``, ``chunk_size`` rows at a
    time; None = all D at once, which on a 2-core CPU was slower than chunks of 32 because of memory
    traffic, see ``benchmarks/fggb.py``); ``batched=False`` runs D sequential backward passes.
    """
    if image.ndim != 3:
        raise ValueError(f"image must be one (C, H, W) tensor, got {tuple(image.shape)}.")
    x = image.detach()[None].requires_grad_(True)
    normalized = _l2_normalize(model(x).flatten(1))[0]
    dims = normalized.shape[0]
    if not batched:
        rows = [torch.autograd.grad(normalized[i], x, retain_graph=True)[0][0] for i in range(dims)]
        return torch.stack(rows)
    identity = torch.eye(dims, dtype=normalized.dtype, device=normalized.device)
    step = chunk_size or dims
    chunks = []
    for start in range(0, dims, step):
        rows = identity[start : start + step]
        chunks.append(torch.autograd.grad(normalized, x, grad_outputs=rows, retain_graph=True, is_grads_batched=True)[0][:, 0])
    return torch.cat(chunks)


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
    """FGGB (Lu et al., FG 2024) as in fame-method §11.

    w_i = φ̂_r,i φ̂_x,i − θ/D (θ spread over the D dimensions; ``per_dimension=True`` subtracts the full θ
    from every w_i, which empties e₊ — a demonstration only); g_i = ∂φ̂_x,i/∂x; m_i = mean_c |g_i|,
    m_i ← m_i / (‖m_i‖₂ + 1e-8); S = Σ_i w_i m_i; e₊ = max(S, 0), e₋ = max(−S, 0); Gaussian blur
    ``blur_kernel``/``blur_sigma`` (25/5), then min-max per map.

    Args:
        model: embedding network (input in [0, 1]).
        images: explained images ``(B, C, H, W)``.
        references: the other image of each pair or its embedding ``(B, D)``.
        threshold: θ, the EER threshold of the (network, protocol).
        batched: all D gradients as one batched vector-Jacobian product (else D backward passes).
        chunk_size: rows of the Jacobian per batched product (None: all D at once).
    """
    reference_embeddings = _l2_normalize(_reference_embeddings(model, images, references))
    similar, dissimilar = [], []
    for image, reference in tqdm(zip(images, reference_embeddings, strict=True), total=len(images), desc="FGGB", leave=False):
        jacobian = fggb_gradients(model, image, batched=batched, chunk_size=chunk_size)
        with torch.no_grad():
            embedding = _l2_normalize(model(image[None]).flatten(1))[0]
            subtract = threshold if per_dimension else threshold / embedding.numel()
            weights = reference * embedding - subtract
            magnitude = jacobian.abs().mean(dim=1)
            magnitude = magnitude / (magnitude.flatten(1).norm(dim=1)[:, None, None] + NORM_EPS)
            positive, negative = _split_polarities(torch.einsum("d,dhw->hw", weights, magnitude))
        similar.append(positive)
        dissimilar.append(negative)
    blurred = [gaussian_blur(torch.stack(maps)[:, None], [blur_kernel, blur_kernel], [blur_sigma, blur_sigma])[:, 0] for maps in (similar, dissimilar)]
    return {"similar": _minmax(blurred[0]).float(), "dissimilar": _minmax(blurred[1]).float()}


def explain_pairs(
    model: nn.Module,
    target_layer: nn.Module | str,
    gallery: torch.Tensor,
    probes: torch.Tensor,
    threshold: float,
    methods: tuple[str, ...] = VERIFICATION_METHODS,
    sides: tuple[str, ...] = ("probe", "gallery"),
    fame_config: FameConfig | None = None,
    n_masks: int = 500,
    seed: int = 0,
) -> dict[str, dict[str, Maps]]:
    """Run every verification method on both sides of each pair.

    The probe side explains ``probes`` against the frozen ``gallery`` (the maps the deletion/insertion
    sweep uses), the gallery side the reverse. CorrRISE uses one seeded mask set for all pairs and
    sides; FGGB uses ``threshold`` as θ.

    Args:
        model: embedding network (input in [0, 1]).
        target_layer: CAM layer (module or dotted name).
        gallery, probes: the pairs' images ``(N, C, H, W)``.
        threshold: θ (the clean EER threshold) for FGGB.
        methods: names from :data:`VERIFICATION_METHODS`.
        sides: ``"probe"`` and/or ``"gallery"``.
        fame_config: FAME hyperparameters (default :class:`FameConfig`).
        n_masks: CorrRISE masks.
        seed: CorrRISE mask seed.

    Returns:
        ``result[method][side] = {"similar": (N, H, W), "dissimilar": (N, H, W) | None}``.

    Raises:
        ValueError: unknown method or side, or gallery/probes of different shapes.
    """
    unknown = [name for name in methods if name not in VERIFICATION_METHODS] + [side for side in sides if side not in ("probe", "gallery")]
    if unknown:
        raise ValueError(f"unknown methods/sides {unknown}; methods are {VERIFICATION_METHODS}, sides 'probe' and 'gallery'.")
    if gallery.shape != probes.shape:
        raise ValueError(f"gallery and probes must have the same shape, got {tuple(gallery.shape)} and {tuple(probes.shape)}.")
    masks = corrrise_masks(n_masks, tuple(probes.shape[-2:]), seed=seed) if "CorrRISE" in methods else None
    runners: dict[str, Callable[[torch.Tensor, torch.Tensor], Maps]] = {
        "Grad-CAM": lambda x, r: gradcam_verification(model, target_layer, x, r),
        "Grad-CAM-EW": lambda x, r: gradcam_ew_verification(model, target_layer, x, r),
        "CorrRISE": lambda x, r: corrrise(model, x, r, masks=masks),
        "FGGB": lambda x, r: fggb(model, x, r, threshold),
        "FAME": lambda x, r: explain_verification(model, x, r, fame_config or FameConfig()),
    }
    result: dict[str, dict[str, Maps]] = {}
    for name in tqdm(methods, desc="methods", leave=False):
        result[name] = {}
        for side in sides:
            explained, reference = (probes, gallery) if side == "probe" else (gallery, probes)
            maps = runners[name](explained, reference)
            result[name][side] = {"similar": maps["similar"].detach().cpu(), "dissimilar": None if maps.get("dissimilar") is None else maps["dissimilar"].detach().cpu()}
    return result
