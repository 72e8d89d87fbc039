"""Class-activation-map baselines, all computed by the ``grad-cam`` package: classifier targets and similarity targets.

One call per method; each returns ``(B, H, W)`` float maps in [0, 1] at the input resolution, like
FAME. The package does the work (``pytorch_grad_cam`` 1.5.7): we only check arguments, build the
targets, and make sure its hooks are removed on every path (its own ``__exit__`` swallows
``IndexError``, so we do not rely on it).

* Grad-CAM: ``ReLU(Σ_c mean_hw(∂y/∂A^c) · A^c)``, upsampled;
* Grad-CAM-EW (``GradCAMElementWise``): ``Σ_c ReLU(∂y/∂A^c ⊙ A^c)``;
* HiResCAM: ``ReLU(Σ_c ∂y/∂A^c ⊙ A^c)``;
* FullGrad: ``|∇_x y ⊙ x|`` plus ``|b ⊙ ∂y/∂a|`` over every biased Conv2d/BatchNorm2d (no target layer),
  with x the **[0, 1] image** and the network's normalisation inside the wrapped model, as FullGrad's authors
  feed it (on the normalised tensor the input term would be ``|∂y/∂x ⊙ (x − μ)/σ|``);
* Finer-CAM: Grad-CAM of the contrastive target
  ``y = Σ_k p_k (z_o − α z_k) / Σ_k p_k`` over the classes k whose logits are closest to z_o
  (p = softmax of the logits; the package's ``FinerWeightedTarget``).

For classifiers the target y is the logit of the requested (ground-truth) class, ``ClassifierOutputTarget``.
For face verification y is the pair similarity (:class:`CosineSimilarityTarget`, :class:`DotProductTarget`), and
there is only a similar map (its ``"dissimilar"`` entry is None). Knows nothing of FAME or the metrics.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Callable

import torch
from pytorch_grad_cam import FinerCAM, FullGrad, GradCAM, GradCAMElementWise, HiResCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget
from torch import nn

from fame_utils._checks import check_batch, check_classes, check_input, check_model, class_list
from fame_utils.baselines.similarity import Maps, reference_embeddings
from fame_utils.layers import probe_layer, resolve_layer

__all__ = [
    "CAM_METHODS",
    "CosineSimilarityTarget",
    "DotProductTarget",
    "EmptyMapWarning",
    "cam_maps",
    "finer_cam",
    "finer_targets",
    "full_grad",
    "grad_cam",
    "grad_cam_ew",
    "gradcam_ew_verification",
    "gradcam_verification",
    "hires_cam",
    "similar_classes",
]


class EmptyMapWarning(UserWarning):
    """A baseline produced an all-zero map (e.g. every CAM value was negative before the ReLU)."""


def _batch_classes(model: nn.Module, layer: nn.Module | str | None, images: torch.Tensor, classes: Sequence[int]) -> list[int]:
    """Checked class indices, one per image, after checking model, images and (when given) the layer.

    One forward of the first image without gradients gives the number of classes and, through ``layer``,
    refuses layers that run more than once or return tuples.
    """
    check_model(model)
    check_batch(images, "images")
    check_input(model, images)
    labels = class_list(classes, images.shape[0])
    if layer is None:
        with torch.no_grad():
            logits = model(images[:1])
    else:
        _, logits = probe_layer(model, layer, images[:1])
    check_classes(labels, logits.shape[-1])
    return labels


@contextmanager
def _released(cam: Any) -> Iterator[Any]:
    """Yield a grad-cam object and remove its hooks afterwards, also when the block raises."""
    hooks = cam.base_cam.activations_and_grads if isinstance(cam, FinerCAM) else cam.activations_and_grads
    try:
        yield cam
    finally:
        hooks.release()


def _to_maps(maps: Any, images: torch.Tensor, method: str) -> torch.Tensor:
    result = torch.from_numpy(maps).to(images.device)
    empty = [i for i in range(result.shape[0]) if not bool(result[i].any())]
    if empty:
        warnings.warn(f"{method}: all-zero map for image(s) {empty} (no positive evidence for the target).", EmptyMapWarning, stacklevel=3)
    return result


class SummedFullGrad(FullGrad):
    """grad-cam's :class:`~pytorch_grad_cam.FullGrad` with its post-processing done as tensor operations.

    The library min-max scales every channel of every bias-gradient term, resizes each channel to the input size
    with OpenCV and then sums the channels, one channel at a time (seconds per image on EfficientNet-Lite). Bilinear
    resizing is linear, so summing the scaled channels first and resizing the sum once per layer gives the same map
    (up to float rounding; tested against the library); scaling, the input term and the final aggregation are the
    library's.
    """

    def compute_cam_per_layer(self, input_tensor: torch.Tensor, target_category: Any, eigen_smooth: bool) -> Any:
        if eigen_smooth:
            return super().compute_cam_per_layer(input_tensor, target_category, eigen_smooth)
        width, height = self.get_target_width_height(input_tensor)
        total = _scaled_channels((input_tensor.grad * input_tensor).detach().abs()).sum(dim=1, keepdim=True)
        for bias, grads in zip(self.bias_data, self.activations_and_grads.gradients, strict=True):
            term = (torch.as_tensor(bias, device=grads.device)[None, :, None, None] * grads).abs()
            summed = _scaled_channels(term).sum(dim=1, keepdim=True)
            total = total + torch.nn.functional.interpolate(summed, size=(height, width), mode="bilinear", align_corners=False).to(total.device)
        return total.cpu().numpy()


def _scaled_channels(values: torch.Tensor) -> torch.Tensor:
    """grad-cam's per-map scaling of every (sample, channel) map: ``(v − min) / (1e-7 + max(v − min))``, float32."""
    shifted = values.float() - values.float().amin(dim=(-2, -1), keepdim=True)
    return shifted / (1e-7 + shifted.amax(dim=(-2, -1), keepdim=True))


def _run_cam(cam_class: Callable[..., Any], model: nn.Module, layers: list[nn.Module], images: torch.Tensor, targets: list[Any], method: str) -> torch.Tensor:
    with _released(cam_class(model=model, target_layers=layers)) as cam:
        maps = cam(input_tensor=images.detach(), targets=targets)
    return _to_maps(maps, images, method)


def grad_cam(model: nn.Module, layer: nn.Module | str, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Grad-CAM maps ``(B, H, W)`` in [0, 1] for the logit of ``classes[b]`` at ``layer``.

    Args:
        model: classifier in eval mode taking ``images`` as they are (already normalised).
        layer: target layer (module or dotted name, e.g. ``spec.target_layer``).
        images: ``(B, C, H, W)`` network input.
        classes: one class index per image.

    Raises:
        ValueError: ``classes`` does not have one entry per image, or ``images`` is not 4-D.
    """
    labels = _batch_classes(model, layer, images, classes)
    return _run_cam(GradCAM, model, [resolve_layer(model, layer)], images, [ClassifierOutputTarget(c) for c in labels], "Grad-CAM")


def grad_cam_ew(model: nn.Module, layer: nn.Module | str, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Grad-CAM-EW (element-wise) maps ``Σ_c ReLU(G^c ⊙ A^c)``; arguments as :func:`grad_cam`."""
    labels = _batch_classes(model, layer, images, classes)
    return _run_cam(GradCAMElementWise, model, [resolve_layer(model, layer)], images, [ClassifierOutputTarget(c) for c in labels], "Grad-CAM-EW")


def hires_cam(model: nn.Module, layer: nn.Module | str, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """HiResCAM maps ``ReLU(Σ_c G^c ⊙ A^c)``; arguments as :func:`grad_cam`."""
    labels = _batch_classes(model, layer, images, classes)
    return _run_cam(HiResCAM, model, [resolve_layer(model, layer)], images, [ClassifierOutputTarget(c) for c in labels], "HiResCAM")


class _NormalizedModel(nn.Module):
    """``model(normalize(pixels))``: a network that takes [0, 1] pixels, normalising inside."""

    def __init__(self, model: nn.Module, normalize: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.normalize = normalize

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(self.normalize(pixels))


def full_grad(model: nn.Module, images: torch.Tensor, classes: Sequence[int], normalizer: Any | None = None) -> torch.Tensor:
    """FullGrad maps (input-gradient term plus every biased Conv2d/BatchNorm2d); no target layer.

    With ``normalizer`` (callable [0, 1] pixels → network input with an ``inverse``, e.g.
    :class:`~fame_utils.metrics.Normalizer`), ``images`` (normalised network input) are mapped back to
    [0, 1] pixels and FullGrad runs on ``model(normalizer(pixels))``, so its input term is
    ``|∂y/∂x ⊙ x|`` of the image itself. Without it the model is taken to consume ``images`` as pixels.

    Raises:
        ValueError: ``classes`` does not have one entry per image, or ``images`` is not 4-D.
    """
    labels = _batch_classes(model, None, images, classes)
    targets = [ClassifierOutputTarget(c) for c in labels]
    if normalizer is None:
        return _run_cam(SummedFullGrad, model, [], images, targets, "FullGrad")
    pixels = normalizer.inverse(images.detach())
    return _run_cam(SummedFullGrad, _NormalizedModel(model, normalizer), [], pixels, targets, "FullGrad")


def similar_classes(logits: torch.Tensor, classes: Sequence[int], count: int = 3) -> list[list[int]]:
    """For each row, the ``count`` classes whose logits are closest to the target class's logit.

    Ranked by ``|z_k − z_o|`` ascending, the target class itself excluded (Finer-CAM's "most similar
    categories"; the package's default comparison ranks 1, 2, 3 are ``count = 3``).

    Raises:
        ValueError: lengths differ, or ``count`` is not in [1, num_classes − 1].
    """
    if logits.ndim != 2 or logits.shape[0] != len(classes):
        raise ValueError(f"logits must be (B, num_classes) with one class per row; got {tuple(logits.shape)} and {len(classes)} classes.")
    if not 1 <= count < logits.shape[1]:
        raise ValueError(f"count must be between 1 and {logits.shape[1] - 1} (num_classes − 1), got {count}.")
    result = []
    for row, target in zip(logits.detach(), classes):
        distance = (row - row[int(target)]).abs()
        distance[int(target)] = float("inf")
        result.append([int(k) for k in torch.argsort(distance, stable=True)[:count]])
    return result


def finer_targets(model: nn.Module, images: torch.Tensor, classes: Sequence[int], alpha: float = 1.0, count: int = 3) -> list[FinerWeightedTarget]:
    """Build one Finer-CAM target per image from the clean logits (see :func:`similar_classes`).

    Each target maps logits z to ``Σ_k p_k (z_o − α z_k) / Σ_k p_k`` with p = softmax(z); it is used as
    the Finer-CAM target and as the Finer-FAME loss.
    """
    labels = _batch_classes(model, None, images, classes)
    with torch.no_grad():
        logits = model(images)
    return [FinerWeightedTarget(c, near, alpha) for c, near in zip(labels, similar_classes(logits, labels, count))]


def finer_cam(
    model: nn.Module,
    layer: nn.Module | str,
    images: torch.Tensor,
    classes: Sequence[int],
    alpha: float = 1.0,
    count: int = 3,
) -> torch.Tensor:
    """Finer-CAM maps: Grad-CAM of the logit of ``classes[b]`` minus α × its most similar classes' logits.

    Args:
        model, layer, images, classes: as :func:`grad_cam`.
        alpha: comparison strength α (the package default 1).
        count: how many most-similar classes are subtracted (the package default 3).

    Raises:
        ValueError: ``classes`` does not have one entry per image, or ``images`` is not 4-D.
    """
    _batch_classes(model, layer, images, classes)
    targets = finer_targets(model, images, classes, alpha, count)
    with _released(FinerCAM(model, [resolve_layer(model, layer)])) as cam:
        maps = cam(images.detach(), targets=targets, alpha=alpha)
    return _to_maps(maps, images, "Finer-CAM")


def _full_grad_ignoring_layer(model: nn.Module, _layer: nn.Module | str, images: torch.Tensor, classes: Sequence[int], normalizer: Any | None = None) -> torch.Tensor:
    return full_grad(model, images, classes, normalizer)


#: Method name → ``fn(model, layer, images, classes)`` (FullGrad ignores the layer).
CAM_METHODS: dict[str, Callable[[nn.Module, Any, torch.Tensor, Sequence[int]], torch.Tensor]] = {
    "Grad-CAM": grad_cam,
    "Grad-CAM-EW": grad_cam_ew,
    "HiResCAM": hires_cam,
    "FullGrad": _full_grad_ignoring_layer,
    "Finer-CAM": finer_cam,
}


def cam_maps(method: str, model: nn.Module, layer: nn.Module | str, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Run the CAM baseline called ``method`` (a key of :data:`CAM_METHODS`).

    Raises:
        ValueError: unknown method name.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {', '.join(CAM_METHODS)}.")
    return CAM_METHODS[method](model, layer, images, classes)


class CosineSimilarityTarget:
    """CAM target y = φ(x)ᵀφ_ref / (‖φ(x_clean)‖ ‖φ_ref‖), both norms frozen at the clean images."""

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
    embeddings = reference_embeddings(model, images, references)
    probe_layer(model, target_layer, images[:1])
    if target == "cosine":
        with torch.no_grad():
            clean_norms = model(images).flatten(1).norm(dim=1)
        targets: list[Callable] = [CosineSimilarityTarget(r, n) for r, n in zip(embeddings, clean_norms, strict=True)]
    elif target == "dot":
        targets = [DotProductTarget(r) for r in embeddings]
    else:
        raise ValueError(f"target must be 'cosine' or 'dot', got {target!r}.")
    maps = _run_cam(cam_class, model, [resolve_layer(model, target_layer)], images, targets, f"{cam_class.__name__} (similarity)")
    return {"similar": maps.float(), "dissimilar": None}


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

