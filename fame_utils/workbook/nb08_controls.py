"""Notebook 08: controls the paper does not run — the gradient-direction ablation and "do e₊ and e₋ differ?".

* :func:`direction_ablation_maps`: FAME's loop with the step direction swapped (true LOTS direction, a random
  direction of the same L∞ length, the gradient's sign, the unnormalised gradient, a single step).
* :func:`pair_perturbations` / :func:`signed_map`: the e₊ and e₋ perturbations of a face pair and the signed
  variant e₊ − e₋ taken before normalisation.
* :func:`region_deletion_effect`: change of the pair's similarity when the top share of a map is blacked out.

It knows nothing of notebooks or plotting; figures are drawn by the notebook through :mod:`fame_utils.viz`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from tqdm.auto import tqdm

from fame_utils.fame import FameConfig, attribution, blur_map, class_loss, normalize_map, optimize, to_gray, verification_loss
from fame_utils.metrics.masks import percentile_masks

__all__ = ["DIRECTIONS", "direction_ablation_maps", "pair_perturbations", "region_deletion_effect", "signed_map", "spearman_per_pair"]

#: The step directions compared by the ablation, in table order.
DIRECTIONS: tuple[str, ...] = ("LOTS (FAME)", "random direction", "gradient sign", "unnormalised gradient", "single step")


def _direction(name: str, grad: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    dims = tuple(range(1, grad.ndim))
    if name in ("LOTS (FAME)", "single step"):
        return grad / grad.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12)
    if name == "random direction":
        noise = torch.randn(grad.shape, generator=generator).to(grad.device)
        return noise / noise.abs().amax(dim=dims, keepdim=True)
    if name == "gradient sign":
        return grad.sign()
    return grad


def direction_ablation_maps(
    model: nn.Module, images: torch.Tensor, classes: Sequence[int], config: FameConfig, seed: int = 0, progress: bool = True
) -> dict[str, torch.Tensor]:
    """FAME class maps ``(B, H, W)`` for each step direction of :data:`DIRECTIONS`.

    Every variant takes steps ``x̄ ← x̄ − η·d`` on the logit z_o (T = ``config.iterations``; one step for
    ``"single step"``) and is post-processed exactly as FAME (:func:`~fame_utils.fame.attribution`). The LOTS,
    random and sign directions have L∞ length η; the unnormalised gradient's length is η·max|∇|.

    Raises:
        ValueError: ``classes`` does not match the batch.
    """
    if len(classes) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {len(classes)} classes; pass one class per image.")
    loss = class_loss(model, list(classes))
    maps = {}
    for name in tqdm(DIRECTIONS, desc="directions", disable=not progress, leave=False):
        generator = torch.Generator().manual_seed(seed)
        perturbed = images.detach().clone()
        for _ in range(1 if name == "single step" else config.iterations):
            perturbed.requires_grad_(True)
            with torch.enable_grad():
                grad, = torch.autograd.grad(loss(perturbed).sum(), perturbed)
            perturbed = (perturbed.detach() - config.step_size * _direction(name, grad, generator)).detach()
        maps[name] = attribution(images, perturbed, config).detach()
    return maps


def pair_perturbations(model: nn.Module, probes: torch.Tensor, gallery: torch.Tensor, config: FameConfig) -> dict[str, torch.Tensor]:
    """Perturbed probes x̄₊ (minimising s) and x̄₋ (minimising 1 − s) against the frozen gallery embeddings."""
    with torch.no_grad():
        reference = model(gallery).detach()
    return {mode: optimize(probes, verification_loss(model, reference, mode), config).detach() for mode in ("similar", "dissimilar")}


def signed_map(probes: torch.Tensor, perturbed: dict[str, torch.Tensor], config: FameConfig) -> torch.Tensor:
    """Signed variant: blurred |ΔGray| of e₊ minus that of e₋ before any normalisation, then min-max to [0, 1].

    High = the pixel moved more to lower the similarity than to raise it (support); low = opposition.
    """
    raw = {mode: blur_map((to_gray(x) - to_gray(probes)).abs(), config.blur_kernel, config.blur_sigma) for mode, x in perturbed.items()}
    return normalize_map(raw["similar"] - raw["dissimilar"], "minmax")


def spearman_per_pair(first: torch.Tensor, second: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation of ``first[i]`` and ``second[i]`` over pixels, per pair ``(N,)``."""
    if first.shape != second.shape:
        raise ValueError(f"maps must have one shape, got {tuple(first.shape)} and {tuple(second.shape)}.")
    return np.array([spearmanr(a.flatten().cpu().numpy(), b.flatten().cpu().numpy())[0] for a, b in zip(first, second)])


def region_deletion_effect(model: nn.Module, gallery: torch.Tensor, probes: torch.Tensor, maps: torch.Tensor, share: float = 10.0) -> np.ndarray:
    """Similarity change ``s(gallery, probe with its top-share % pixels black) − s(gallery, probe)`` per pair ``(N,)``.

    Negative: the region supported the match; positive: it opposed it.
    """
    keep = percentile_masks(maps.detach().cpu(), [share]).deletion[:, 0].to(probes.device, probes.dtype)
    with torch.no_grad():
        reference = model(gallery)
        clean = torch.nn.functional.cosine_similarity(reference, model(probes), dim=1)
        deleted = torch.nn.functional.cosine_similarity(reference, model(probes * keep[:, None]), dim=1)
    return (deleted - clean).cpu().numpy()
