"""Face-verification figures and the notebook-05 widget callback (fame-method §6.6, §6.7).

* :func:`face_sheet` — Fig. 3 / Figs. 10–12: one row per (pair, network), the input crop, then e₊ and e₋
  of every method as jet overlays (α 0.5, :func:`fame_utils.viz.overlay`) on the RGB crop; a method without e₋ gets a blank panel.
* :func:`deletion_insertion_figure` — Fig. 4: accuracy vs P, one line per method, AUC in the legend,
  clean accuracy dashed.
* :func:`score_histogram` — clean genuine/impostor score distributions with the EER threshold.
* :func:`sheet_rows` / :func:`pair_explanations` — gather those rows and the widget's data from explained pairs.
* :func:`pair_method_figure` — widget callback: the four maps of one pair and one method and the
  similarity as the probe is progressively deleted.
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

from fame_utils.face_benchmark import FacePairSet
from fame_utils.metrics.verification import VerificationCurves
from fame_utils.viz import overlay

__all__ = [
    "FacePairExplanations",
    "SheetRow",
    "deletion_insertion_figure",
    "face_sheet",
    "pair_explanations",
    "pair_method_figure",
    "score_histogram",
    "sheet_rows",
]

POLARITIES = (("similar", "e₊"), ("dissimilar", "e₋"))


@dataclass(frozen=True)
class SheetRow:
    """One row of a method sheet: a label, the RGB crop and ``maps[method] = {"similar", "dissimilar"}`` (H, W) or None."""

    label: str
    rgb: np.ndarray
    maps: Mapping[str, Mapping[str, np.ndarray | torch.Tensor | None]]


def _blank(axis: plt.Axes) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(False)


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
            _blank(axis)
    axes[0, 0].set_title("input", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def deletion_insertion_figure(curves: Mapping[str, VerificationCurves], clean_accuracy: float, title: str = "") -> Figure:
    """Fig. 4: deletion (left) and insertion (right) accuracy (%) vs P, legend "method (AUC)", clean accuracy dashed."""
    if not curves:
        raise ValueError("deletion_insertion_figure needs at least one method's curves.")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for axis, kind, xlabel in ((axes[0], "deletion", "removed pixels P (%)"), (axes[1], "insertion", "kept pixels P (%)")):
        for method, curve in curves.items():
            auc = curve.deletion_auc if kind == "deletion" else curve.insertion_auc
            axis.plot(curve.percents, 100 * getattr(curve, kind), marker="o", markersize=3, label=f"{method} ({auc:.1f})")
        axis.axhline(100 * clean_accuracy, color="grey", linestyle="--", linewidth=1, label=f"clean ({100 * clean_accuracy:.1f})")
        axis.set_xlabel(xlabel)
        axis.set_title(f"{kind.capitalize()} ({'lower' if kind == 'deletion' else 'higher'} AUC is better)", fontsize=9)
        axis.legend(fontsize=7)
    axes[0].set_ylabel("verification accuracy (%)")
    if title:
        fig.suptitle(title, fontsize=10)
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
        _blank(axis)
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


Explained = Mapping[str, Mapping[str, Mapping[str, torch.Tensor | None]]]


def _position(explained_pairs: np.ndarray, pair: int) -> int:
    found = np.flatnonzero(np.asarray(explained_pairs) == pair)
    if found.size == 0:
        raise ValueError(f"pair {pair} was not explained; explained pairs: {np.asarray(explained_pairs).tolist()}.")
    return int(found[0])


def _maps_at(explained: Explained, side: str, positions: int | list[int], methods: Sequence[str]) -> dict:
    return {m: {k: (None if v is None else v[positions]) for k, v in explained[m][side].items()} for m in methods}


def sheet_rows(
    sets: Mapping[str, FacePairSet],
    explained: Mapping[str, Explained],
    explained_pairs: np.ndarray,
    pairs: Sequence[int],
    side: str,
    methods: Sequence[str],
) -> list[SheetRow]:
    """One :class:`SheetRow` per (network, pair) for :func:`face_sheet`.

    Args:
        sets: the networks' pair sets.
        explained: per network, :func:`~fame_utils.baselines.verification.explain_pairs` output for ``explained_pairs``.
        explained_pairs: the pair indices that were explained, in explanation order.
        pairs: the pairs to show (indices into the pair set).
        side: ``"probe"`` or ``"gallery"`` (which image was explained and is shown).
        methods: methods to take maps of.

    Raises:
        ValueError: a pair was not explained.
    """
    rows = []
    for name, pair_set in sets.items():
        images = pair_set.probes if side == "probe" else pair_set.gallery
        for pair in pairs:
            kind = "genuine" if pair_set.labels[pair] else "impostor"
            rows.append(SheetRow(f"{name}\npair {pair} {kind}\n({side})", pair_set.spec.to_display(images[pair]),
                                 _maps_at(explained[name], side, _position(explained_pairs, pair), methods)))
    return rows


def pair_explanations(
    pair_set: FacePairSet,
    probe_side: Explained,
    evaluated: np.ndarray,
    gallery_side: Explained,
    showcase: np.ndarray,
    curves: Mapping[str, VerificationCurves],
    methods: Sequence[str],
) -> FacePairExplanations:
    """The widget's data for the ``showcase`` pairs: probe-side maps and curves (computed for ``evaluated``) and
    gallery-side maps (computed for ``showcase``)."""
    positions = [_position(evaluated, pair) for pair in showcase]
    size = pair_set.gallery.shape[-2:]
    return FacePairExplanations(
        network=pair_set.network,
        gallery_rgb=pair_set.spec.to_display(pair_set.gallery[showcase]).reshape(len(showcase), *size, 3),
        probe_rgb=pair_set.spec.to_display(pair_set.probes[showcase]).reshape(len(showcase), *size, 3),
        labels=pair_set.labels[showcase],
        maps={m: {"probe": _maps_at(probe_side, "probe", positions, [m])[m], "gallery": gallery_side[m]["gallery"]} for m in methods},
        curves={m: curves[m].subset(positions) for m in methods},
    )
