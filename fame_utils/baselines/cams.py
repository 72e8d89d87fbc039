"""Class-activation-map baselines for classifiers, all computed by the ``grad-cam`` package (fame-method §11).

One call per method; each returns ``(B, H, W)`` float maps in [0, 1] at the input resolution, like
FAME. The package does the work (``pytorch_grad_cam`` 1.5.7): we only check arguments, build the
targets, and make sure its hooks are removed on every path (its own ``__exit__`` swallows
``IndexError``, so we do not rely on it).

* Grad-CAM: ``ReLU(Σ_c mean_hw(∂y/∂A^c) · A^c)``, upsampled;
* Grad-CAM-EW (``GradCAMElementWise``): ``Σ_c ReLU(∂y/∂A^c ⊙ A^c)``;
* HiResCAM: ``ReLU(Σ_c ∂y/∂A^c ⊙ A^c)``;
* FullGrad: ``|∇_x y ⊙ x|`` plus ``|b ⊙ ∂y/∂a|`` over every biased Conv2d/BatchNorm2d (no target layer);
* Finer-CAM: Grad-CAM of the contrastive target
  ``y = Σ_k p_k (z_o − α z_k) / Σ_k p_k`` over the classes k whose logits are closest to z_o
  (p = softmax of the logits; the package's ``FinerWeightedTarget``).

The target y is the logit of the requested (ground-truth) class, ``ClassifierOutputTarget``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Callable

import torch
from pytorch_grad_cam import FinerCAM, FullGrad, GradCAM, GradCAMElementWise, HiResCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget
from torch import nn

from fame_utils.layers import resolve_layer

__all__ = [
    "CAM_METHODS",
    "EmptyMapWarning",
    "cam_maps",
    "finer_cam",
    "finer_targets",
    "full_grad",
    "grad_cam",
    "grad_cam_ew",
    "hires_cam",
    "similar_classes",
]


class EmptyMapWarning(UserWarning):
    """A baseline produced an all-zero map (e.g. every CAM value was negative before the ReLU)."""


def _check_batch(images: torch.Tensor, classes: Sequence[int]) -> list[int]:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {getattr(images, 'shape', type(images).__name__)}.")
    labels = [int(c) for c in (classes.tolist() if isinstance(classes, torch.Tensor) else classes)]
    if len(labels) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {len(labels)} target classes; pass exactly one class per image.")
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
    labels = _check_batch(images, classes)
    return _run_cam(GradCAM, model, [resolve_layer(model, layer)], images, [ClassifierOutputTarget(c) for c in labels], "Grad-CAM")


def grad_cam_ew(model: nn.Module, layer: nn.Module | str, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """Grad-CAM-EW (element-wise) maps ``Σ_c ReLU(G^c ⊙ A^c)``; arguments as :func:`grad_cam`."""
    labels = _check_batch(images, classes)
    return _run_cam(GradCAMElementWise, model, [resolve_layer(model, layer)], images, [ClassifierOutputTarget(c) for c in labels], "Grad-CAM-EW")


def hires_cam(model: nn.Module, layer: nn.Module | str, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """HiResCAM maps ``ReLU(Σ_c G^c ⊙ A^c)``; arguments as :func:`grad_cam`."""
    labels = _check_batch(images, classes)
    return _run_cam(HiResCAM, model, [resolve_layer(model, layer)], images, [ClassifierOutputTarget(c) for c in labels], "HiResCAM")


def full_grad(model: nn.Module, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """FullGrad maps (input-gradient term plus every biased Conv2d/BatchNorm2d); no target layer.

    Raises:
        ValueError: ``classes`` does not have one entry per image, or ``images`` is not 4-D.
    """
    labels = _check_batch(images, classes)
    return _run_cam(FullGrad, model, [], images, [ClassifierOutputTarget(c) for c in labels], "FullGrad")


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
    labels = _check_batch(images, classes)
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
    targets = finer_targets(model, images, classes, alpha, count)
    with _released(FinerCAM(model, [resolve_layer(model, layer)])) as cam:
        maps = cam(images.detach(), targets=targets, alpha=alpha)
    return _to_maps(maps, images, "Finer-CAM")


def _full_grad_ignoring_layer(model: nn.Module, _layer: nn.Module | str, images: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    return full_grad(model, images, classes)


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
