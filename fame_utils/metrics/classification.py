"""Classification metrics: box IoU and ROAD-style deletion/insertion logit curves (paper Sec. 4.2, Tab. 1).

* ``iou``: S = {p : A(p) ≥ τ}, B = the box mask (end-exclusive), IoU = |S ∩ B| / (|S ∪ B| + 1e-8).
* ``road_curves``: for each P, keep-mask M_P from :func:`~fame_utils.metrics.masks.percentile_masks`;
  the **[0, 1] image** is multiplied by M_P *before* the network's normalisation (removed pixels become
  −μ/σ: "deletion (black)", what the paper's table calls ROAD), or the removed pixels are filled by ROAD's
  noisy linear imputation from ``grad-cam`` (:func:`road_imputation`; "ROAD MoRF" for deletion, "ROAD LeRF"
  for insertion); the curve is the logit of the ground-truth class. The logit drop z(x) − z(x ⊙ M_P) is
  what the paper averages.

Each is named for what it is (docs/decisions.md#road-naming).
It knows nothing of attribution methods, benchmarks or plotting.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer
from torch import nn

from fame_utils._checks import check_unit_threshold, class_list
from fame_utils.metrics.masks import DEFAULT_PERCENTS, mask_extent, normalized_auc, percentile_masks
from fame_utils.models.folding import inference_copy
from fame_utils.runtime import FORWARD_BATCH, fast_layout

__all__ = [
    "IOU_THRESHOLDS",
    "Normalizer",
    "RoadCurves",
    "box_in_input",
    "iou",
    "road_curves",
    "road_imputation",
]

#: The paper's IoU thresholds τ (Tab. 1 reports 0.3, 0.5, 0.7).
IOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.5, 0.7)
_UNION_EPS = 1e-8


def iou(saliency: np.ndarray | torch.Tensor, box: Sequence[int], threshold: float) -> float:
    """Intersection over union of the thresholded map and a box.

    ``S = saliency ≥ threshold``; ``B`` = rows ``y0:y1``, columns ``x0:x1`` (end-exclusive);
    IoU = |S ∩ B| / (|S ∪ B| + 1e-8).

    Args:
        saliency: one ``(H, W)`` map in [0, 1].
        box: ``(x0, y0, x1, y1)`` in map pixels with ``0 ≤ x0 ≤ x1 ≤ W`` and ``0 ≤ y0 ≤ y1 ≤ H``.
        threshold: τ.

    Raises:
        ValueError: map not 2-D or not finite, τ NaN or outside [0, 1], or a box outside the map / with x1 < x0 or y1 < y0.
    """
    check_unit_threshold(threshold, "threshold τ")
    array = saliency.detach().cpu().numpy() if isinstance(saliency, torch.Tensor) else np.asarray(saliency)
    if array.ndim != 2 or not np.all(np.isfinite(array)):
        raise ValueError(f"saliency must be one finite (H, W) map, got shape {array.shape}.")
    height, width = array.shape
    x0, y0, x1, y1 = (int(v) for v in box)
    if not (0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height):
        raise ValueError(f"box {tuple(box)} must satisfy 0 ≤ x0 ≤ x1 ≤ {width} and 0 ≤ y0 ≤ y1 ≤ {height} (map pixels, end-exclusive).")
    selected = array >= threshold
    inside = np.zeros_like(selected)
    inside[y0:y1, x0:x1] = True
    return float(np.logical_and(selected, inside).sum() / (np.logical_or(selected, inside).sum() + _UNION_EPS))


def box_in_input(box: Sequence[float], original_size: tuple[int, int], spec: Any, paper_faithful: bool = False) -> tuple[int, int, int, int]:
    """Map a box from original-image pixels into a classifier's input crop.

    Uses :func:`fame_utils.data.map_box` with the network's own resize (shorter side) and centre crop,
    read from ``spec.preprocess`` (``resize``, ``crop``): aspect-preserving by default, the paper's
    per-axis rule under ``paper_faithful`` (docs/decisions.md#box-mapping).

    Args:
        box: ``(x0, y0, x1, y1)`` in original pixels.
        original_size: ``(width, height)`` of the original image (PIL's ``image.size``).
        spec: a classifier :class:`~fame_utils.models.ModelSpec`.
        paper_faithful: use the per-axis scaling of the original scripts.

    Raises:
        ValueError: ``spec.preprocess`` has no ``resize``/``crop`` (not a resize-and-crop classifier).
    """
    from fame_utils.data import map_box

    preprocess = getattr(spec, "preprocess", None)
    if not (hasattr(preprocess, "resize") and hasattr(preprocess, "crop")):
        raise ValueError(f"{getattr(spec, 'name', spec)!r}: preprocess has no resize/crop sizes; boxes can only be mapped for resize-and-crop classifiers.")
    mapped = map_box(tuple(box), tuple(original_size), resize=preprocess.resize, crop=preprocess.crop, paper_faithful=paper_faithful)
    return tuple(int(v) for v in mapped)


@dataclass(frozen=True)
class Normalizer:
    """The network's input normalisation applied to [0, 1] RGB pixels: ``z = (x − mean) / std`` (then BGR if set).

    Build it from a classifier spec with :meth:`from_spec` (EfficientNet-Lite: mean = std = 0.5;
    torchvision ImageNet nets: μ = (0.485, 0.456, 0.406), σ = (0.229, 0.224, 0.225)).
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    bgr: bool = False

    @classmethod
    def from_spec(cls, spec: Any) -> "Normalizer":
        """Read ``mean``, ``std`` and ``bgr`` from a :class:`~fame_utils.models.ModelSpec`."""
        return cls(tuple(spec.mean), tuple(spec.std), bool(getattr(spec, "bgr", False)))

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        shape = (len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=pixels.dtype, device=pixels.device).view(shape)
        std = torch.tensor(self.std, dtype=pixels.dtype, device=pixels.device).view(shape)
        normalised = (pixels - mean) / std
        return normalised.flip(-3) if self.bgr else normalised

    def inverse(self, tensor: torch.Tensor) -> torch.Tensor:
        """Network input → [0, 1] RGB pixels (no clamping)."""
        shape = (len(self.mean), 1, 1)
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(shape)
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(shape)
        rgb = tensor.flip(-3) if self.bgr else tensor
        return rgb * std + mean


def road_imputation(
    pixels: torch.Tensor,
    keep: torch.Tensor,
    noise_std: float = 0.01,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Fill removed pixels with ROAD's noisy linear imputation (``pytorch_grad_cam.metrics.road.NoisyLinearImputer``).

    Each removed pixel becomes the weighted mean of its in-image 8-neighbours (edge weight 1/6, diagonal
    1/12), solved exactly as one sparse linear system per image, plus N(0, noise_std²) noise. An image
    with no kept pixel has nothing to interpolate from and stays black, as in plain deletion.

    Args:
        pixels: ``(B, C, H, W)`` images in [0, 1].
        keep: ``(B, H, W)`` boolean, True for known pixels.
        noise_std: standard deviation of the added noise (≥ 0).
        generator: CPU generator seeding the noise (seeded runs give identical results).

    Returns:
        Imputed images, same shape and device; known pixels are exactly the input.

    Raises:
        ValueError: shapes disagree, or negative ``noise_std``.
    """
    if pixels.ndim != 4 or keep.shape != (pixels.shape[0], *pixels.shape[-2:]):
        raise ValueError(f"pixels must be (B, C, H, W) and keep (B, H, W); got {tuple(pixels.shape)} and {tuple(keep.shape)}.")
    if noise_std < 0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std}.")
    imputer = NoisyLinearImputer(noise=noise_std)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    filled = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for image, known in zip(pixels.detach().cpu().float(), keep.cpu()):
            if bool(known.all()):
                filled.append(image)
            elif not bool(known.any()):
                filled.append(torch.zeros_like(image))
            else:
                filled.append(imputer(image, known.float()))
    return torch.stack(filled).to(device=pixels.device, dtype=pixels.dtype)


@dataclass(frozen=True)
class RoadCurves:
    """Raw ROAD curves for a batch: the ground-truth logit at each percent P.

    Attributes:
        percents: the P values (percent of top-ranked pixels removed / shown).
        clean: ``(B,)`` logit z_gt(x) of the untouched image.
        deletion: ``(B, P)`` logit after removing the top-P % pixels, z_gt(x ⊙ M_P^del).
        insertion: ``(B, P)`` logit when only the top-P % pixels are shown, z_gt(x ⊙ M_P^ins).
    """

    percents: tuple[float, ...]
    clean: torch.Tensor
    deletion: torch.Tensor
    insertion: torch.Tensor

    @property
    def deletion_drop(self) -> torch.Tensor:
        """``(B, P)`` logit drop z(x) − z(x ⊙ M_P^del): higher means the removed pixels mattered (ROAD-Delete)."""
        return self.clean[:, None] - self.deletion

    @property
    def insertion_drop(self) -> torch.Tensor:
        """``(B, P)`` logit drop z(x) − z(x ⊙ M_P^ins): lower means the shown pixels recover the logit sooner."""
        return self.clean[:, None] - self.insertion

    def deletion_auc(self) -> np.ndarray:
        """``(B,)`` normalised AUC of :attr:`deletion_drop` over P (logit units; higher is better)."""
        return np.array([normalized_auc(row, self.percents) for row in self.deletion_drop])

    def insertion_auc(self) -> np.ndarray:
        """``(B,)`` normalised AUC of :attr:`insertion_drop` over P (logit units; lower is better)."""
        return np.array([normalized_auc(row, self.percents) for row in self.insertion_drop])


def _class_logits(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``model(inputs)`` without gradients (on its BatchNorm-folded inference copy), checked to be ``(B, num_classes)`` logits."""
    with torch.no_grad():
        logits = inference_copy(model)(inputs)
    if logits.ndim != 2:
        raise ValueError(f"the model must return (B, num_classes) logits, got shape {tuple(logits.shape)}.")
    return logits


def _gt_logits(model: nn.Module, inputs: torch.Tensor, classes: torch.Tensor, batch_size: int) -> torch.Tensor:
    outputs = []
    for start in range(0, inputs.shape[0], batch_size):
        logits = _class_logits(model, fast_layout(inputs[start:start + batch_size]))
        chunk = classes[start:start + batch_size].to(logits.device)
        outputs.append(logits[torch.arange(len(chunk), device=logits.device), chunk].float().cpu())
    return torch.cat(outputs)


def road_curves(
    model: nn.Module,
    pixels: torch.Tensor,
    saliency: torch.Tensor,
    classes: Sequence[int],
    normalize: Callable[[torch.Tensor], torch.Tensor],
    percents: Sequence[float] = DEFAULT_PERCENTS,
    imputation: bool = False,
    noise_std: float = 0.01,
    generator: torch.Generator | None = None,
    batch_size: int = FORWARD_BATCH,
) -> RoadCurves:
    """Deletion and insertion curves of the ground-truth logit (paper Sec. 4.2): black pixels, or ROAD.

    For each image and P: keep-masks from :func:`percentile_masks` of its map; the [0, 1] image is
    multiplied by the mask ("deletion (black)", the paper's table) or, with ``imputation``, removed
    pixels are filled by :func:`road_imputation` (ROAD: deletion = most-relevant-first, MoRF; insertion
    = least-relevant-first removal, LeRF), and only then normalised and fed to the network.

    Args:
        model: classifier in eval mode taking normalised input.
        pixels: ``(B, 3, H, W)`` images in [0, 1] RGB, at the network's input resolution.
        saliency: ``(B, H, W)`` maps ranking the pixels.
        classes: ground-truth class per image.
        normalize: [0, 1] pixels → network input (e.g. :class:`Normalizer`).
        percents: the P values (default 0, 10, …, 100).
        imputation: ROAD's noisy linear imputation instead of black (not the paper's table).
        noise_std, generator: imputation noise and its seed.
        batch_size: images per forward pass (channels_last; see :data:`FORWARD_BATCH`).

    Returns:
        :class:`RoadCurves` with the raw logits.

    Raises:
        ValueError: shapes or lengths disagree.
    """
    if pixels.ndim != 4 or saliency.shape != (pixels.shape[0], *pixels.shape[-2:]):
        raise ValueError(f"pixels must be (B, C, H, W) and saliency (B, H, W) of the same size; got {tuple(pixels.shape)} and {tuple(saliency.shape)}.")
    labels = torch.as_tensor(class_list(classes, pixels.shape[0], "classes"), dtype=torch.long)
    steps = tuple(float(p) for p in percents)
    masks = percentile_masks(saliency.detach().to(pixels.device), steps)
    batch, count = pixels.shape[0], len(steps)
    clean = _gt_logits(model, normalize(pixels), labels, batch_size)
    black = _class_logits_of_black(model, normalize(torch.zeros_like(pixels[:1])), labels)
    repeated = pixels[:, None].expand(batch, count, *pixels.shape[1:]).reshape(batch * count, *pixels.shape[1:])
    repeated_labels = labels.repeat_interleave(count)
    curves = []
    for keep in (masks.deletion, masks.insertion):
        flat_keep = keep.reshape(batch * count, *keep.shape[-2:])
        logits, varied = _known_logits(flat_keep, clean.repeat_interleave(count), black.repeat_interleave(count))
        if varied.any():
            rows = varied.nonzero().squeeze(1).to(pixels.device)
            partial_keep, partial = flat_keep.index_select(0, rows), repeated.index_select(0, rows)
            if imputation:
                perturbed = road_imputation(partial, partial_keep, noise_std, generator)
            else:
                perturbed = partial * partial_keep[:, None].to(pixels.dtype)
            logits[varied] = _gt_logits(model, normalize(perturbed), repeated_labels[varied], batch_size)
        curves.append(logits.reshape(batch, count))
    return RoadCurves(steps, clean, curves[0], curves[1])


def _class_logits_of_black(model: nn.Module, black: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The logit of each class in ``classes`` for the one all-black (normalised) image ``black`` (one forward pass)."""
    logits = _class_logits(model, black)
    return logits[0, classes.to(logits.device)].float().cpu()


def _known_logits(keep: torch.Tensor, clean: torch.Tensor, black: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the rows whose mask keeps every pixel (the clean image) or none (all black, whatever the removal
    rule fills in: both ROAD and black deletion leave a fully removed image black), without a forward pass.

    Returns:
        The ``(N,)`` logits (NaN where unknown) and the boolean mask of the rows that still need a forward pass.
    """
    full, empty = mask_extent(keep.cpu())
    logits = torch.full((keep.shape[0],), float("nan"))
    logits[full], logits[empty] = clean[full], black[empty]
    return logits, ~(full | empty)
