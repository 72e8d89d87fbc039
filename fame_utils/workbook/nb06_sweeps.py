"""Notebook 06 (parameter sweeps, paper Figs. 5 and 6): tables of what changes when T, η or the blur kernel changes.

The sweeps themselves are :func:`fame_utils.fame.iteration_sweep`, :func:`~fame_utils.fame.step_size_sweep` and
:func:`~fame_utils.fame.blur_sweep`; these functions turn their maps and perturbed images into one row per setting.
Only notebook 06 needs these.
"""

from __future__ import annotations

import pandas as pd
import torch

from fame_utils.fame import FameConfig, LossFn, sweep_sigma
from fame_utils.metrics.stats import map_correlations

__all__ = ["iteration_rows", "blur_rows", "step_size_table"]

def iteration_rows(
    name: str, image: torch.Tensor, loss_fn: LossFn, maps: dict[int, torch.Tensor], perturbed: dict[int, torch.Tensor], config: FameConfig
) -> list[dict]:
    """One row per iteration count n: largest change and its bound n·η (both in 1/255), the loss, and the correlation
    of the map with the map of the largest n."""
    last = maps[max(maps)][0]
    return [{"network": name, "iterations": n, "max_change_255": float((perturbed[n] - image).abs().max()) * 255,
             "bound_255": n * config.step_size * 255, "loss": float(loss_fn(perturbed[n])[0]), "corr_with_last": float(map_correlations(torch.stack([maps[n][0], last]))[0, 1])}
            for n in sorted(maps)]


def blur_rows(name: str, maps: dict[int, torch.Tensor]) -> list[dict]:
    """One row per blur kernel k: σ (:func:`~fame_utils.fame.sweep_sigma`) and the fraction of pixels with map ≥ 0.5."""
    return [{"network": name, "kernel": k, "sigma": round(sweep_sigma(k), 2), "area_above_half": float((saliency >= 0.5).float().mean())}
            for k, saliency in maps.items()]


def step_size_table(image: torch.Tensor, loss_fn: LossFn, perturbed: dict[float, torch.Tensor]) -> pd.DataFrame:
    """One row per step size η: η and the mean |x̄ − x| (both in 1/255) and the loss after the run."""
    return pd.DataFrame([{"eta_255": eta * 255, "mean_change_255": float((result - image).abs().mean()) * 255, "logit_after": float(loss_fn(result)[0])}
                         for eta, result in perturbed.items()])
