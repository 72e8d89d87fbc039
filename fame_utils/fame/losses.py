"""The questions FAME asks, as per-sample losses (paper Sec. 3.4): one feature-map location, a class logit, a pair similarity.

A loss maps a batch to one value per sample; it knows nothing of the optimiser or of maps. Each evaluates the
network's :func:`~fame_utils.models.folding.inference_copy` (BatchNorm folded: the same function, fewer operations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from fame_utils._checks import check_inside, location_indices
from fame_utils.fame.config import FameConfig
from fame_utils.fame.optimizer import SampleLoss
from fame_utils.layers import forward_to_layer, resolve_layer
from fame_utils.models.folding import inference_copy, matching_layer

__all__ = ["location_loss", "class_loss", "class_objective", "cosine_similarity", "verification_loss", "finer_loss"]

_GRAD_GUARD = 1e-12


def location_loss(model: nn.Module, layer: nn.Module | str, locations: Sequence[tuple[int, int]]) -> SampleLoss:
    """L_a (Eq. 5): sample b's loss is Σ_c |a_b[c, i_b, j_b]| at its own location (i_b, j_b) = ``locations[b]``.

    The forward pass stops at ``layer``; its hook is removed on every path.
    """
    resolve_layer(model, layer)
    rows, cols = location_indices(locations)

    def score(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        network = inference_copy(model)
        activation = forward_to_layer(network, matching_layer(model, network, layer), x)
        if activation.ndim != 4:
            raise ValueError(f"layer output must be a (B, C, h, w) feature map for location losses, got shape {tuple(activation.shape)}.")
        check_inside(rows, cols, activation.shape[-2:])
        device = activation.device
        picked = activation[torch.arange(x.shape[0], device=device), :, rows[index].to(device), cols[index].to(device)]
        return picked.abs().sum(dim=1)

    return SampleLoss(score, len(rows), "locations")


def class_loss(model: nn.Module, classes: Sequence[int] | torch.Tensor, absolute: bool = False) -> SampleLoss:
    """L_cls: the raw logit z_o of class ``classes[b]`` for sample b (|z_o| if ``absolute``, the paper-faithful loss)."""
    targets = torch.as_tensor(classes, dtype=torch.long).reshape(-1)

    def score(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        logits = inference_copy(model)(x)
        if logits.ndim != 2:
            raise ValueError(f"class_loss needs (B, num_classes) logits, got shape {tuple(logits.shape)}.")
        if int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]:
            raise ValueError(f"class indices must lie in [0, {logits.shape[1] - 1}], got {targets.tolist()}.")
        picked = logits[torch.arange(x.shape[0], device=logits.device), targets[index].to(logits.device)]
        return picked.abs() if absolute else picked

    return SampleLoss(score, len(targets), "classes")


def cosine_similarity(a: torch.Tensor, b: torch.Tensor, detach_norms: bool = False) -> torch.Tensor:
    """Eq. (2): s = aᵀb / (‖a‖₂‖b‖₂) along the last axis.

    With ``detach_norms`` the denominator is treated as a constant, so gradients flow through the dot
    product only (paper footnote 4, docs/decisions.md#cosine-norms); the value is unchanged.
    """
    norms = a.norm(dim=-1) * b.norm(dim=-1)
    if detach_norms:
        norms = norms.detach()
    return (a * b).sum(dim=-1) / norms.clamp_min(_GRAD_GUARD)


def verification_loss(
    model: nn.Module,
    reference_embedding: torch.Tensor,
    mode: Literal["similar", "dissimilar"] = "similar",
    detach_norms: bool = False,
) -> SampleLoss:
    """L₊ = s(φ(x̄), φ_ref) (``"similar"``) or L₋ = 1 − s (``"dissimilar"``), Eq. (6).

    Args:
        model: maps the perturbed tensor to an embedding (B, D) (not L2-normalised beforehand; s normalises).
        reference_embedding: frozen φ_ref, (D,) or (B, D).
        mode: which map the loss produces.
        detach_norms: see :func:`cosine_similarity`.
    """
    if mode not in ("similar", "dissimilar"):
        raise ValueError(f"mode must be 'similar' or 'dissimilar', got {mode!r}.")
    reference = reference_embedding.detach()
    if reference.ndim not in (1, 2):
        raise ValueError(f"reference_embedding must be (D,) or (B, D), got shape {tuple(reference.shape)}.")

    per_sample = reference.ndim == 2 and reference.shape[0] != 1

    def score(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        embedding = inference_copy(model)(x)
        if embedding.ndim != 2 or embedding.shape[-1] != reference.shape[-1]:
            raise ValueError(f"model embedding shape {tuple(embedding.shape)} does not match reference embedding shape {tuple(reference.shape)}.")
        own = reference[index.to(reference.device)] if per_sample else reference
        similarity = cosine_similarity(embedding, own.to(embedding.device), detach_norms=detach_norms)
        return similarity if mode == "similar" else 1 - similarity

    return SampleLoss(score, reference.shape[0] if per_sample else 0, "reference embeddings")


def class_objective(model: nn.Module, classes: Sequence[int] | torch.Tensor, config: FameConfig) -> tuple[SampleLoss, FameConfig]:
    """The loss and run settings FAME uses to explain a class under ``config``.

    Returns:
        (z_o, ``config``) by default; (|z_o|, ``config`` with ε = :meth:`FameConfig.class_epsilon`) when ``paper_faithful``.
    """
    return class_loss(model, classes, absolute=config.paper_faithful), config.replace(epsilon=config.class_epsilon())




def finer_loss(model: nn.Module, targets: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> SampleLoss:
    """Per-sample loss ``L_b(x) = target_b(model(x)[b])`` (e.g. Finer-CAM's weighted contrast of logits).

    Raises (when called):
        ValueError: the batch does not have one sample per target.
    """

    def score(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        logits = inference_copy(model)(x)
        return torch.stack([targets[int(i)](row) for i, row in zip(index, logits)])

    return SampleLoss(score, len(targets), "targets")
