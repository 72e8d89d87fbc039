"""Finer-FAME (ours): **a new method of this workbook, not in the paper** — FAME minimising Finer-CAM's contrastive target.

The loss is ``y = Σ_k p_k (z_o − α z_k) / Σ_k p_k`` over the classes k whose logits are closest to z_o (fixed on the
clean image; p = softmax), so the map marks the pixels that must change to stop the network preferring o *over its
look-alikes* rather than to suppress o altogether. Knows nothing of the metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fame_utils.baselines.cam import finer_targets
from fame_utils.fame import FameConfig, attribution, finer_loss, optimize

__all__ = ["finer_fame"]


def finer_fame(
    model: nn.Module,
    images: torch.Tensor,
    classes: Sequence[int],
    config: FameConfig | None = None,
    alpha: float = 1.0,
    count: int = 3,
    progress: bool = False,
) -> torch.Tensor:
    """Finer-FAME maps ``(B, H, W)`` in [0, 1] for Finer-CAM's contrastive target of each image's class.

    Minimises the contrast over the ``count`` classes closest to z_o (chosen once, on the clean image) with LOTS
    steps (:func:`fame_utils.fame.losses.finer_loss`), then builds the map with :func:`fame_utils.fame.attribution`.
    Early stopping is switched off (``epsilon=None``): the contrast can be negative, so a threshold on it has no meaning.

    Args:
        model: classifier in eval mode taking ``images`` as they are (normalised).
        images: ``(B, C, H, W)`` network input.
        classes: one class per image.
        config: FAME hyperparameters (iterations, step, blur, normalisation).
        alpha: contrast strength α (1 as in Finer-CAM's default).
        count: number of most similar classes.
        progress: show a progress bar.

    Raises:
        ValueError: ``classes`` does not have one entry per image.
    """
    config = (config or FameConfig()).replace(epsilon=None)
    targets = finer_targets(model, images, classes, alpha, count)
    perturbed = optimize(images, finer_loss(model, targets), config, progress=progress)
    return attribution(images, perturbed, config)
