"""Every classification explanation by name, plus Finer-FAME (ours).

:func:`classifier_maps` runs one method on a batch and returns ``(B, H, W)`` maps in [0, 1]:

* the CAMs of :mod:`fame_utils.baselines.cams` (Grad-CAM, Grad-CAM-EW, HiResCAM, FullGrad, Finer-CAM);
* ``"FAME"`` (:func:`fame_utils.fame.explain_class`, corrected defaults) and ``"FAME (paper-faithful)"``
  (the same with ``paper_faithful=True``: |z_o|, ε = 1e-3, max-normalisation);
* ``"Finer-FAME (ours)"``: **a new method of this workbook, not in the paper.** FAME minimising Finer-CAM's
  contrastive target ``y = Σ_k p_k (z_o − α z_k) / Σ_k p_k`` (k = the classes whose logits are closest
  to z_o, fixed on the clean image; p = softmax), so the map marks the pixels that must change to
  stop the network preferring o *over its look-alikes* rather than to suppress o altogether;
* the sanity floors ``"Random"`` (seeded uniform noise) and ``"Centre Gaussian"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from fame_utils.baselines.cams import CAM_METHODS, cam_maps, finer_targets
from fame_utils.baselines.reference_maps import centre_gaussian_maps, random_maps
from fame_utils.fame import FameConfig, attribution, explain_class, optimize

__all__ = ["CLASSIFIER_METHODS", "SANITY_METHODS", "classifier_maps", "finer_fame", "finer_loss"]

#: Maps with no knowledge of the network; every table includes them as a floor.
SANITY_METHODS: tuple[str, ...] = ("Random", "Centre Gaussian")
#: All method names accepted by :func:`classifier_maps`, in table order.
CLASSIFIER_METHODS: tuple[str, ...] = (*CAM_METHODS, "FAME", "FAME (paper-faithful)", "Finer-FAME (ours)", *SANITY_METHODS)


def finer_loss(model: nn.Module, targets: Sequence[Callable[[torch.Tensor], torch.Tensor]]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-sample FAME loss ``L_b(x) = target_b(model(x)[b])`` (e.g. Finer-CAM's weighted contrast).

    Raises (when called):
        ValueError: the batch does not have one sample per target.
    """

    def loss(x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(targets):
            raise ValueError(f"finer_loss got {x.shape[0]} samples for {len(targets)} targets; run it on the full batch (epsilon=None).")
        logits = model(x)
        return torch.stack([target(row) for target, row in zip(targets, logits)])

    return loss


def finer_fame(
    model: nn.Module,
    images: torch.Tensor,
    classes: Sequence[int],
    config: FameConfig | None = None,
    alpha: float = 1.0,
    count: int = 3,
    progress: bool = False,
) -> torch.Tensor:
    """Finer-FAME (ours): FAME maps for Finer-CAM's contrastive target of each image's class.

    Minimises ``y_b = Σ_k p_k (z_o − α z_k) / Σ_k p_k`` over the ``count`` classes closest to z_o (chosen
    once, on the clean image) with LOTS steps, then builds the map with :func:`fame_utils.fame.attribution`.
    Early stopping is switched off (``epsilon=None``): the contrast can be negative, so a threshold on
    it has no meaning.

    Args:
        model: classifier in eval mode taking ``images`` as they are (normalised).
        images: ``(B, C, H, W)`` network input.
        classes: one class per image.
        config: FAME hyperparameters (iterations, step, blur, normalisation).
        alpha: contrast strength α (1 as in Finer-CAM's default).
        count: number of most similar classes.
        progress: show a progress bar.

    Returns:
        ``(B, H, W)`` maps in [0, 1].

    Raises:
        ValueError: ``classes`` does not have one entry per image.
    """
    config = (config or FameConfig()).replace(epsilon=None)
    targets = finer_targets(model, images, classes, alpha, count)
    perturbed = optimize(images, finer_loss(model, targets), config, progress=progress)
    return attribution(images, perturbed, config)


def classifier_maps(
    method: str,
    model: nn.Module,
    layer: nn.Module | str,
    images: torch.Tensor,
    classes: Sequence[int],
    config: FameConfig | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Maps ``(B, H, W)`` in [0, 1] from the method called ``method`` (one of :data:`CLASSIFIER_METHODS`).

    Args:
        method: method name.
        model: classifier in eval mode taking ``images`` (normalised).
        layer: CAM target layer (ignored by FullGrad, FAME and the sanity maps).
        images: ``(B, C, H, W)`` network input.
        classes: one (ground-truth) class per image.
        config: FAME hyperparameters for the FAME variants (``paper_faithful`` is set by the method name).
        generator: random source for ``"Random"`` (the session's generator makes runs reproducible).

    Raises:
        ValueError: unknown method, or ``classes`` does not have one entry per image.
    """
    config = config or FameConfig()
    if len(classes) != images.shape[0]:
        raise ValueError(f"got {images.shape[0]} images but {len(classes)} target classes; pass exactly one class per image.")
    if method in CAM_METHODS:
        return cam_maps(method, model, layer, images, classes)
    if method == "FAME":
        return explain_class(model, images, list(classes), config.replace(paper_faithful=False))
    if method == "FAME (paper-faithful)":
        return explain_class(model, images, list(classes), config.replace(paper_faithful=True))
    if method == "Finer-FAME (ours)":
        return finer_fame(model, images, classes, config)
    if method == "Random":
        return random_maps(images, generator=generator)
    if method == "Centre Gaussian":
        return centre_gaussian_maps(images)
    raise ValueError(f"unknown method {method!r}; choose one of {', '.join(CLASSIFIER_METHODS)}.")
