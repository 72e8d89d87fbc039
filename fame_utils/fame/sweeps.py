"""Parameter sweeps of FAME (paper Figs. 5 and 6): maps for several blur kernels, iteration counts and step sizes.

Each sweep reuses the optimiser and the map chain; it knows nothing of tables or plotting.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fame_utils.fame.attribution import attribution
from fame_utils.fame.config import FameConfig
from fame_utils.fame.optimizer import LossFn, OptimizationTrace, optimize

__all__ = ["sweep_sigma", "blur_sweep", "iteration_sweep", "step_size_sweep"]


def sweep_sigma(kernel: int) -> float:
    """σ that tracks the blur kernel in the blur sweep (docs/decisions.md#sweeps): σ = max(k / 6.37, 0.5); 49 → 7.7."""
    return max(kernel / 6.37, 0.5)


def blur_sweep(image: torch.Tensor, perturbed: torch.Tensor, kernels: Sequence[int], config: FameConfig | None = None) -> dict[int, torch.Tensor]:
    """Maps of one optimisation run for several blur kernels (σ = :func:`sweep_sigma`); blur is post-processing only.

    Returns:
        ``{kernel: (B, H, W) map}``.
    """
    config = config or FameConfig()
    return {k: attribution(image, perturbed, config.replace(blur_kernel=k, blur_sigma=sweep_sigma(k))) for k in kernels}


def iteration_sweep(
    image: torch.Tensor, loss_fn: LossFn, counts: Sequence[int], config: FameConfig | None = None, progress: bool = False
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """Maps after each of ``counts`` iterations from ONE run of max(counts) steps, early stopping off.

    Without early stopping the run's state after n steps is exactly a run of n iterations, so one run
    with snapshots replaces len(counts) runs (Fig. 6a).

    Returns:
        ``({n: (B, H, W) map}, {n: x̄ after n steps})``.
    """
    config = (config or FameConfig()).replace(iterations=max(counts), epsilon=None)
    trace = OptimizationTrace(snapshot_steps=tuple(counts))
    optimize(image, loss_fn, config, progress=progress, trace=trace)
    return {n: attribution(image, trace.snapshots[n], config) for n in counts}, dict(trace.snapshots)


def step_size_sweep(
    image: torch.Tensor, loss_fn: LossFn, step_sizes: Sequence[float], config: FameConfig | None = None, progress: bool = False
) -> tuple[dict[float, torch.Tensor], dict[float, torch.Tensor]]:
    """One run per step size η (early stopping off, Fig. 6b).

    Returns:
        ``({η: (B, H, W) map}, {η: x̄})``.
    """
    config = (config or FameConfig()).replace(epsilon=None)
    perturbed = {eta: optimize(image, loss_fn, config.replace(step_size=eta), progress=progress) for eta in step_sizes}
    return {eta: attribution(image, x_bar, config) for eta, x_bar in perturbed.items()}, perturbed
