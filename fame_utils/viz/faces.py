"""Face-verification figures: method sheets of e₊ / e₋ maps (paper Figs. 3, 10–12), clean-score histograms and one
pair's maps with its similarity under probe deletion (the notebook-05 widget's figure).

Draws maps and curves it is given; knows nothing of how pairs were explained or benchmarked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure

from fame_utils.metrics.verification import VerificationCurves
from fame_utils.viz.maps import blank_axis, overlay

__all__ = ["POLARITIES", "SheetRow", "FacePairExplanations", "face_sheet", "score_histogram", "pair_method_figure"]

POLARITIES = (("similar", "e₊"), ("dissimilar", "e₋"))
"""Map key and symbol of the two polarities, in column order."""


@dataclass(frozen=True)
class SheetRow:
    """One row of a method sheet: a label, the RGB crop and ``maps[method] = {"similar", "dissimilar"}`` (H, W) or None."""

    label: str
    rgb: np.ndarray
    maps: Mapping[str, Mapping[str, np.ndarray | torch.Tensor | None]]



def face_sheet(rows: Sequence[SheetRow], methods: Sequence[str], title: str = "") -> Figure:
    """Method sheet: columns input, then e₊ and e₋ per method; blank panels where a method has no map."""
    if not rows or not methods:
        raise ValueError("face_sheet needs at least one row and one method.")
    columns = 1 + 2 * len(methods)
    fig, axes = plt.subplots(len(rows), columns, figsize=(1.35 * columns, 1.5 * len(rows) + 0.6), squeeze=False)
    for r, row in enumerate(rows):
        axes[r, 0].imshow(row.rgb)
        axes[r, 0].set_ylabel(row.label, fontsize=7)
        for m, method in enumerate(methods):
            for p, (key, symbol) in enumerate(POLARITIES):
                axis = axes[r, 1 + 2 * m + p]
                heat = row.maps.get(method, {}).get(key)
                if heat is not None:
                    axis.imshow(overlay(row.rgb, heat))
                if r == 0:
                    axis.set_title(f"{method}\n{symbol}", fontsize=7)
        for axis in axes[r]:
            blank_axis(axis)
    axes[0, 0].set_title("input", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def score_histogram(scores: pd.DataFrame, thresholds: Mapping[str, float]) -> Figure:
    """Clean-score histograms per network (columns ``network``, ``score``, ``pair``), EER threshold dashed."""
    missing = {"network", "score", "pair"} - set(scores.columns)
    if missing:
        raise ValueError(f"scores is missing columns {sorted(missing)}.")
    networks = list(dict.fromkeys(scores["network"]))
    fig, axes = plt.subplots(1, len(networks), figsize=(4.2 * len(networks), 3.2), squeeze=False)
    for axis, network in zip(axes[0], networks):
        subset = scores[scores["network"] == network]
        sns.histplot(data=subset, x="score", hue="pair", bins=20, binrange=(-0.2, 1.0), ax=axis, element="step")
        axis.axvline(thresholds[network], color="black", linestyle="--", linewidth=1)
        axis.set_title(f"{network}: θ = {thresholds[network]:.3f}", fontsize=9)
        axis.set_xlabel("cosine similarity")
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class FacePairExplanations:
    """Everything the pair widget shows for one network.

    Attributes:
        network: network name for titles.
        gallery_rgb, probe_rgb: display crops ``(N, H, W, 3)`` in [0, 1].
        labels: ``(N,)`` 1 genuine / 0 impostor.
        maps: ``maps[method][side] = {"similar": (N, H, W), "dissimilar": (N, H, W) | None}``, side
            ``"gallery"`` or ``"probe"``.
        curves: ``curves[method]``: the probe deletion/insertion sweep (its ``deletion_scores`` give the
            similarity as the probe is deleted).
    """

    network: str
    gallery_rgb: np.ndarray
    probe_rgb: np.ndarray
    labels: np.ndarray
    maps: Mapping[str, Mapping[str, Mapping[str, torch.Tensor | None]]]
    curves: Mapping[str, VerificationCurves]


def pair_method_figure(explanations: FacePairExplanations, pair: int, method: str) -> Figure:
    """Widget callback: gallery/probe × e₊/e₋ of ``method`` for pair ``pair``, and s(P) under probe deletion.

    Raises:
        ValueError: unknown method or pair index out of range.
    """
    if method not in explanations.maps:
        raise ValueError(f"unknown method {method!r}; choose one of {list(explanations.maps)}.")
    if not 0 <= pair < len(explanations.labels):
        raise ValueError(f"pair must be in [0, {len(explanations.labels) - 1}], got {pair}.")
    fig, axes = plt.subplots(1, 5, figsize=(13, 2.9), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.6]})
    panels = [(side, key, symbol) for side in ("gallery", "probe") for key, symbol in POLARITIES]
    for axis, (side, key, symbol) in zip(axes[:4], panels):
        rgb = (explanations.gallery_rgb if side == "gallery" else explanations.probe_rgb)[pair]
        side_maps = explanations.maps[method].get(side)
        heat = None if side_maps is None or side_maps.get(key) is None else side_maps[key][pair]
        axis.imshow(rgb if heat is None else overlay(rgb, heat))
        axis.set_title(f"{side} {symbol}" + ("" if heat is not None else " (none)"), fontsize=8)
        blank_axis(axis)
    curve = explanations.curves[method]
    axes[4].plot(curve.percents, curve.deletion_scores[:, pair], marker="o", markersize=3, label="similarity")
    axes[4].axhline(curve.threshold, color="grey", linestyle="--", linewidth=1, label=f"θ = {curve.threshold:.3f}")
    axes[4].set_xlabel("removed probe pixels P (%)")
    axes[4].set_ylabel("cosine similarity")
    axes[4].legend(fontsize=7)
    kind = "genuine" if explanations.labels[pair] else "impostor"
    fig.suptitle(f"{explanations.network} · pair {pair} ({kind}) · {method}", fontsize=10)
    fig.tight_layout()
    return fig


