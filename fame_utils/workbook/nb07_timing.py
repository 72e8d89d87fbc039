"""Notebook 07 (runtime, paper Tab. 3): FAME against its iteration count and every verification method per image.

Timings are wall-clock seconds of sequential (batch 1) calls, as the paper reports them; on a GPU the device
is synchronised before and after each call so asynchronous kernels are counted. Only notebook 07 needs these.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from fame_utils import cache, fame
from fame_utils.baselines.registry import VERIFICATION_METHODS, explain_pairs

__all__ = ["wall_seconds", "linear_fit", "iteration_runtime", "passes_per_image", "verification_runtime", "runtime_summary"]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def wall_seconds(work: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Wall-clock seconds of ``work()``, with the accelerator synchronised before and after and the map cache off."""
    device = torch.device(device)
    _synchronize(device)
    start = time.perf_counter()
    with cache.disabled():
        work()
    _synchronize(device)
    return time.perf_counter() - start


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line ``y = intercept + slope · x``.

    Returns:
        ``(slope, intercept, r2)`` with ``r2`` the squared Pearson correlation of x and y.

    Raises:
        ValueError: with fewer than two distinct x values (no line is determined).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or len(np.unique(x)) < 2:
        raise ValueError(f"linear_fit needs matching x and y with at least two distinct x values, got x={x.tolist()}, y={y.tolist()}.")
    slope, intercept = np.polyfit(x, y, 1)
    r2 = float(np.corrcoef(x, y)[0, 1] ** 2) if np.ptp(y) > 0 else 1.0
    return float(slope), float(intercept), r2


def iteration_runtime(
    model: nn.Module, inputs: Sequence[tuple[torch.Tensor, int]], counts: Sequence[int], base_config: fame.FameConfig | None = None
) -> pd.DataFrame:
    """Tab. 3a: seconds of one full FAME class explanation per image for each iteration count.

    Args:
        model: the classifier.
        inputs: ``(image (1, C, H, W), class index)`` pairs, explained one at a time.
        counts: iteration counts T.
        base_config: every other FAME setting (default :class:`~fame_utils.fame.FameConfig`: no early stop).

    Returns:
        One row per count: ``iterations, images, seconds, seconds_per_image``.
    """
    if not inputs:
        raise ValueError("iteration_runtime needs at least one (image, class) input.")
    device = inputs[0][0].device
    rows = []
    for iterations in counts:
        config = dataclasses.replace(base_config or fame.FameConfig(), iterations=iterations)
        total = sum(wall_seconds(lambda x=x, label=label: fame.explain_class(model, x, [label], config), device) for x, label in inputs)
        rows.append({"iterations": iterations, "images": len(inputs), "seconds": total, "seconds_per_image": total / len(inputs)})
    return pd.DataFrame(rows)


def passes_per_image(method: str, embedding_dims: int, fame_iterations: int, n_masks: int) -> str:
    """The cost model of one verification method for one explained image, in forward (fwd) and backward (bwd) passes."""
    costs = {"Grad-CAM": "1 fwd + 1 bwd", "Grad-CAM-EW": "1 fwd + 1 bwd", "CorrRISE": f"{n_masks} fwd",
             "FGGB": f"1 fwd + {embedding_dims} bwd", "FAME": f"{2 * fame_iterations} fwd + {2 * fame_iterations} bwd"}
    if method not in costs:
        raise ValueError(f"unknown verification method {method!r}; expected one of {list(costs)}.")
    return costs[method]


def verification_runtime(
    model: nn.Module,
    target_layer: nn.Module | str,
    gallery: torch.Tensor,
    probes: torch.Tensor,
    threshold: float,
    methods: Sequence[str] = VERIFICATION_METHODS,
    fame_config: fame.FameConfig | None = None,
    n_masks: int = 500,
) -> pd.DataFrame:
    """Tab. 3b: seconds per explained image for each verification method, one pair at a time, both sides.

    Args:
        model: the face network (embeddings ``(B, D)``).
        target_layer: the CAM layer of the network.
        gallery: gallery images ``(N, C, H, W)``.
        probes: probe images, same length as ``gallery``.
        threshold: the verification threshold (FGGB's θ).
        methods: verification methods to time.
        fame_config: FAME settings for e₊ and for e₋ (default :class:`~fame_utils.fame.FameConfig`).
        n_masks: CorrRISE masks.

    Returns:
        One row per method: ``method, passes_per_image, pairs, images, seconds, seconds_per_image``.
    """
    if gallery.shape[0] != probes.shape[0] or gallery.shape[0] == 0:
        raise ValueError(f"gallery and probes must be non-empty batches of equal length, got {gallery.shape[0]} and {probes.shape[0]}.")
    device = gallery.device
    with torch.no_grad():
        dims = int(model(gallery[:1]).shape[1])
    config = fame_config or fame.FameConfig()
    pairs = gallery.shape[0]
    rows = []
    for method in methods:
        total = sum(
            wall_seconds(lambda i=i: explain_pairs(model, target_layer, gallery[i:i + 1], probes[i:i + 1], threshold,
                                                   methods=(method,), fame_config=config, n_masks=n_masks), device)
            for i in range(pairs))
        rows.append({"method": method, "passes_per_image": passes_per_image(method, dims, config.iterations, n_masks),
                     "pairs": pairs, "images": 2 * pairs, "seconds": total, "seconds_per_image": total / (2 * pairs)})
    return pd.DataFrame(rows)


PAPER_MS_PER_ITERATION = 19.0
"""The paper's FAME cost (Tab. 3): about 19 s per iteration per 1000 images, i.e. 19 ms per iteration per image (GPU, ResNet-50)."""


def runtime_summary(seconds_per_iteration: float, methods: pd.DataFrame, fame_iterations: int, paper_iterations: int = 500) -> list[str]:
    """What Tab. 3 shows, as sentences with the measured numbers: the cost of one FAME iteration, the methods from
    fastest to slowest with their ratio to FAME, and FAME's cost scaled to the paper's iteration count.

    Args:
        seconds_per_iteration: the fitted slope of Tab. 3a (seconds per iteration per image).
        methods: Tab. 3b (``method``, ``seconds_per_image``); must contain a ``FAME`` row.
        fame_iterations: the T that Tab. 3b's FAME row ran (for e₊ and for e₋ each).
        paper_iterations: the paper's T, to which FAME's row is scaled linearly.

    Raises:
        ValueError: Tab. 3b has no FAME row or a non-positive time.
    """
    per_image = dict(zip(methods["method"], methods["seconds_per_image"]))
    if "FAME" not in per_image:
        raise ValueError(f"the runtime table has no FAME row (methods: {sorted(per_image)}).")
    if min(per_image.values()) <= 0 or fame_iterations <= 0:
        raise ValueError("runtimes and the iteration count must be positive.")
    fame_seconds = per_image["FAME"]
    ordered = sorted(per_image, key=per_image.get)
    ratios = ", ".join(f"{name} {per_image[name]:.3g} s ({per_image[name] / fame_seconds:.2g}× FAME)" for name in ordered)
    scaled = fame_seconds * paper_iterations / fame_iterations
    slower = [name for name in ordered if per_image[name] > scaled]
    return [
        f"One FAME iteration costs {seconds_per_iteration * 1000:.0f} ms per image here "
        f"({seconds_per_iteration * 1000 / PAPER_MS_PER_ITERATION:.1f}× the paper's {PAPER_MS_PER_ITERATION:.0f} ms on its GPU).",
        f"Per explained face, fastest first: {ratios}.",
        f"At the paper's T = {paper_iterations}, FAME's row would take ≈ {scaled:.3g} s per image; "
        + (f"only {', '.join(slower)} would still be slower." if slower else "it would then be the slowest method."),
    ]
