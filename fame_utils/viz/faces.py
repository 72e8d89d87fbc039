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
from fame_utils.viz.maps import blank_axis, map_colorbar, overlay

__all__ = ["POLARITIES", "SheetRow", "FacePairExplanations", "sheet_columns", "face_sheet", "score_histogram", "pair_method_figure"]

POLARITIES = (("similar", "e₊"), ("dissimilar", "e₋"))
"""Map key and symbol of the two polarities, in column order."""


@dataclass(frozen=True)
class SheetRow:
    """One row of a method sheet: both crops of a pair, whose maps it shows and the maps.

    Attributes:
        label: row label (network, pair number, genuine/impostor).
        gallery, probe: the pair's display crops ``(H, W, 3)`` in [0, 1].
        identities: (gallery, probe) identity names.
        side: ``"probe"`` or ``"gallery"``, the crop the maps explain (they are drawn over it).
        maps: ``maps[method] = {"similar": (H, W), "dissimilar": (H, W) or None}``.
    """

    label: str
    gallery: np.ndarray
    probe: np.ndarray
    identities: tuple[str, str]
    side: str
    maps: Mapping[str, Mapping[str, np.ndarray | torch.Tensor | None]]

    def __post_init__(self) -> None:
        if self.side not in ("probe", "gallery"):
            raise ValueError(f"side must be 'probe' or 'gallery', got {self.side!r}.")


def sheet_columns(rows: Sequence[SheetRow], methods: Sequence[str]) -> list[tuple[str, str, str]]:
    """The map columns of a sheet as (method, map key, symbol): e₊ for every method, e₋ only for methods with an e₋ map
    in some row (the Grad-CAMs have none, so their column is dropped instead of left blank)."""
    return [(method, key, symbol) for method in methods for key, symbol in POLARITIES
            if key == "similar" or any(row.maps.get(method, {}).get(key) is not None for row in rows)]


def face_sheet(rows: Sequence[SheetRow], methods: Sequence[str], title: str = "") -> Figure:
    """Method sheet (paper Figs. 3, 10–12): per row both crops of the pair with their identities, then e₊ (and e₋ where the
    method has one) of every method over the explained crop, with a colour key. A method without e₋ says so in its heading.

    Raises:
        ValueError: no rows or no methods.
    """
    if not rows or not methods:
        raise ValueError("face_sheet needs at least one row and one method.")
    columns = sheet_columns(rows, methods)
    has_dissimilar = {method for method, key, _ in columns if key == "dissimilar"}
    fig, axes = plt.subplots(len(rows), 2 + len(columns), figsize=(1.3 * (2 + len(columns)) + 0.8, 1.55 * len(rows) + 0.7),
                             squeeze=False, layout="constrained")
    for r, row in enumerate(rows):
        for c, (side, rgb, identity) in enumerate((("gallery", row.gallery, row.identities[0]), ("probe", row.probe, row.identities[1]))):
            axes[r, c].imshow(rgb)
            marker = " (explained)" if side == row.side else ""
            axes[r, c].set_title(f"{side}{marker}\n{identity}" if r == 0 else identity, fontsize=7)
        axes[r, 0].set_ylabel(row.label, fontsize=7)
        explained = row.probe if row.side == "probe" else row.gallery
        for c, (method, key, symbol) in enumerate(columns, start=2):
            heat = row.maps.get(method, {}).get(key)
            if heat is None:
                axes[r, c].text(0.5, 0.5, "n/a", ha="center", va="center", fontsize=7, color="0.5", transform=axes[r, c].transAxes)
            else:
                axes[r, c].imshow(overlay(explained, heat))
            if r == 0:
                suffix = "" if method in has_dissimilar else " (no e₋)"
                axes[r, c].set_title(f"{method}\n{symbol}{suffix}", fontsize=7)
        for axis in axes[r]:
            blank_axis(axis)
    map_colorbar(fig, axes[:, 2:].ravel().tolist(), aspect=12 * len(rows), pad=0.01)
    if title:
        fig.suptitle(title, fontsize=9)
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
    """Everything the pair explorer shows for one network.

    Attributes:
        network: network name for titles.
        pairs: ``(N,)`` pair numbers in the network's pair set (the numbers the sheets show).
        identities: per pair, the (gallery, probe) identity names.
        gallery_rgb, probe_rgb: display crops ``(N, H, W, 3)`` in [0, 1].
        labels: ``(N,)`` 1 genuine / 0 impostor.
        maps: ``maps[method][side] = {"similar": (N, H, W), "dissimilar": (N, H, W) | None}``, side
            ``"gallery"`` or ``"probe"``.
        curves: ``curves[method]``: the probe deletion/insertion sweep (its ``deletion_scores`` give the
            similarity as the probe is deleted).
    """

    network: str
    pairs: np.ndarray
    identities: Sequence[tuple[str, str]]
    gallery_rgb: np.ndarray
    probe_rgb: np.ndarray
    labels: np.ndarray
    maps: Mapping[str, Mapping[str, Mapping[str, torch.Tensor | None]]]
    curves: Mapping[str, VerificationCurves]

    def position(self, pair: int) -> int:
        """Row of pair number ``pair`` in the arrays.

        Raises:
            ValueError: the pair is not among :attr:`pairs`.
        """
        found = np.flatnonzero(np.asarray(self.pairs) == pair)
        if found.size == 0:
            raise ValueError(f"pair {pair} is not among the explored pairs {np.asarray(self.pairs).tolist()} of {self.network}.")
        return int(found[0])


def _missing_map(axis: plt.Axes, method: str, symbol: str, shape: Sequence[int]) -> None:
    axis.set_box_aspect(shape[0] / shape[1])
    axis.set_facecolor("0.92")
    axis.text(0.5, 0.5, f"{method}\nhas no {symbol}", ha="center", va="center", fontsize=8, color="0.35", transform=axis.transAxes)


def pair_method_figure(explanations: FacePairExplanations, pair: int, method: str) -> Figure:
    """Explorer figure: both images of pair number ``pair`` with their identities, e₊ and e₋ of ``method`` on each,
    and the similarity as the probe is deleted along its e₊ map (dashed: θ).

    Raises:
        ValueError: unknown method, or a pair that was not explored.
    """
    if method not in explanations.maps:
        raise ValueError(f"unknown method {method!r}; choose one of {list(explanations.maps)}.")
    index = explanations.position(pair)
    fig = plt.figure(figsize=(10.5, 5.2), layout="constrained")
    grid = fig.add_gridspec(2, 4, width_ratios=[1, 1, 1, 1.5])
    map_axes = []
    for row, (side, rgb, identity) in enumerate((("gallery", explanations.gallery_rgb[index], explanations.identities[index][0]),
                                                 ("probe", explanations.probe_rgb[index], explanations.identities[index][1]))):
        picture = fig.add_subplot(grid[row, 0])
        picture.imshow(rgb)
        picture.set_title(f"{side}: {identity}", fontsize=9)
        blank_axis(picture)
        side_maps = explanations.maps[method].get(side) or {}
        for column, (key, symbol) in enumerate(POLARITIES, start=1):
            axis = fig.add_subplot(grid[row, column])
            heat = side_maps.get(key)
            if heat is None:
                _missing_map(axis, method, symbol, rgb.shape)
            else:
                axis.imshow(overlay(rgb, heat[index]))
                map_axes.append(axis)
            axis.set_title(f"{side} {symbol}", fontsize=9)
            blank_axis(axis)
    if map_axes:
        map_colorbar(fig, map_axes, location="bottom", shrink=0.6, aspect=30)
    curve = explanations.curves[method]
    similarity = fig.add_subplot(grid[:, 3])
    similarity.plot(curve.percents, curve.deletion_scores[:, index], marker="o", markersize=3, label="similarity")
    similarity.axhline(curve.threshold, color="grey", linestyle="--", linewidth=1, label=f"θ = {curve.threshold:.3f}")
    similarity.set_xlabel("removed probe pixels P (%)")
    similarity.set_ylabel("cosine similarity")
    similarity.set_title("probe deleted along its e₊", fontsize=9)
    similarity.legend(fontsize=7, loc="best")
    kind = "genuine" if explanations.labels[index] else "impostor"
    fig.suptitle(f"{explanations.network} · pair {pair} ({kind}) · {method}", fontsize=10)
    return fig
