"""Figures of the locality measurement: every panel is drawn."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fame_utils.locality import locality_by_stage, summarize_locality  # noqa: E402
from fame_utils.viz.locality import plot_cam_assumption, plot_cell_rows, plot_locality_vs_depth  # noqa: E402
from tiny_models import pooled_net  # noqa: E402


def test_figures_build_without_error_and_show_every_panel() -> None:
    display = np.full((14, 14, 3), 0.5)
    fig = plot_cam_assumption(display, (7, 7), (2, 4))
    assert len(fig.axes) == 3
    plt.close(fig)
    maps = {(1, c): torch.rand(14, 14) for c in range(0, 7, 2)}
    fig = plot_cell_rows([("net", display, maps, (7, 7), 1)])
    assert sum(bool(ax.images) for ax in fig.axes) == 4
    plt.close(fig)
    frame = locality_by_stage(pooled_net(), ["0", "3"], [torch.rand(1, 16, 16)], network="tiny", max_cells=4)
    fig = plot_locality_vs_depth(summarize_locality(frame, n_boot=20))
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2
    plt.close(fig)
