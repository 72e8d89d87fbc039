"""Deletion/insertion curves: ROAD logit-drop curves per network (classification) and verification accuracy
against the share of probe pixels removed or kept (paper Fig. 4).

Draws curves computed by :mod:`fame_utils.metrics`; knows nothing of how maps were made.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fame_utils.metrics.classification import RoadCurves
from fame_utils.metrics.verification import VerificationCurves

__all__ = ["plot_road_curves", "deletion_insertion_figure", "line_style"]


#: Marker and dash per curve, in drawing order: curves that coincide (e.g. two CAMs with the same ranking) stay visible.
_LINE_STYLES: tuple[dict[str, Any], ...] = tuple(
    dict(marker=marker, linestyle=dash, markersize=size, markerfacecolor="none" if hollow else None)
    for marker, dash, size, hollow in (("o", "-", 5, True), ("s", "--", 4, False), ("^", "-.", 5, True), ("D", ":", 3.5, False),
                                       ("v", "-", 5, False), ("P", "--", 5, True), ("X", "-.", 4.5, False), ("*", ":", 6, True),
                                       ("h", "-", 4, True), ("<", "--", 4.5, False), (">", "-.", 4.5, True), ("d", ":", 4.5, False))
)


def line_style(index: int) -> dict[str, Any]:
    """Matplotlib keyword arguments (marker, dash, size, fill) of the ``index``-th curve of a panel."""
    return _LINE_STYLES[index % len(_LINE_STYLES)]


def _legend_below(ax: Axes, columns: int = 2) -> None:
    """The axis' legend under its x label, outside the plotting area, so it never covers a curve."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=columns, fontsize=7, frameon=False, handlelength=1.6, columnspacing=1.0)


def plot_road_curves(results: Sequence[Any], methods: Sequence[str] | None = None) -> Figure:
    """ROAD curves: mean logit drop vs P, one line per method; deletion (top) and insertion (bottom) per network.

    Args:
        results: per network, an object with ``network`` (its name) and ``curves`` (method → :class:`RoadCurves`),
            e.g. :class:`fame_utils.evaluation.classification.BenchmarkResult`.
        methods: the methods to draw (default: all of each result). Each panel's legend, under the panel, gives each
            method's mean normalised AUC.
    """
    fig, axes = plt.subplots(2, len(results), figsize=(4.4 * len(results), 9.0), squeeze=False, layout="constrained")
    for column, result in enumerate(results):
        for row, (kind, arrow) in enumerate((("deletion", "↑"), ("insertion", "↓"))):
            ax = axes[row, column]
            for index, method in enumerate(methods or list(result.curves)):
                curves: RoadCurves = result.curves[method]
                drop = getattr(curves, f"{kind}_drop").mean(dim=0).numpy()
                auc = float(np.mean(getattr(curves, f"{kind}_auc")()))
                ax.plot(curves.percents, drop, linewidth=1.2, label=f"{method} ({auc:.2f})", **line_style(index))
            ax.set_title(f"{result.network}: {kind} (AUC {arrow})", fontsize=9)
            ax.set_xlabel(f"% of top-ranked pixels {'removed' if kind == 'deletion' else 'shown'}")
            ax.set_ylabel("logit drop z(x) − z(x ⊙ M)")
            _legend_below(ax)
    return fig


def deletion_insertion_figure(curves: Mapping[str, VerificationCurves], clean_accuracy: float, title: str = "") -> Figure:
    """Fig. 4: deletion (left) and insertion (right) accuracy (%) vs P; under each panel a legend "method (AUC)";
    clean accuracy dashed."""
    if not curves:
        raise ValueError("deletion_insertion_figure needs at least one method's curves.")
    fig, axes = plt.subplots(1, 2, figsize=(9, 5.2), sharey=True, layout="constrained")
    for axis, kind, xlabel in ((axes[0], "deletion", "removed pixels P (%)"), (axes[1], "insertion", "kept pixels P (%)")):
        for index, (method, curve) in enumerate(curves.items()):
            auc = curve.deletion_auc if kind == "deletion" else curve.insertion_auc
            axis.plot(curve.percents, 100 * getattr(curve, kind), linewidth=1.2, label=f"{method} ({auc:.1f})", **line_style(index))
        axis.axhline(100 * clean_accuracy, color="grey", linestyle="--", linewidth=1, label=f"clean ({100 * clean_accuracy:.1f})")
        axis.set_xlabel(xlabel)
        axis.set_title(f"{kind.capitalize()} ({'lower' if kind == 'deletion' else 'higher'} AUC is better)", fontsize=9)
        _legend_below(axis)
    axes[0].set_ylabel("verification accuracy (%)")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
