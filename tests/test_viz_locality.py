"""Figures of the locality measurement: every panel is drawn, titles do not collide, maps get a colour key, and the
depth plot shows the ratio the verdict rests on with the CAM layer marked."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from fame_utils.locality import locality_by_stage, summarize_locality  # noqa: E402
from fame_utils.viz.locality import plot_cam_assumption, plot_cell_rows, plot_locality_vs_depth  # noqa: E402
from tiny_models import pooled_net  # noqa: E402


def colour_keys(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_cam_assumption_titles_do_not_overlap() -> None:
    fig = plot_cam_assumption(np.full((224, 224, 3), 0.5), (7, 7), (2, 4))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    assert len(boxes) == 3
    assert not any(boxes[i].overlaps(boxes[j]) for i in range(3) for j in range(i + 1, 3))
    page = fig.bbox.padded(1)  # the figure, give or take a pixel of rounding
    assert all(page.contains(box.x0, box.y0) and page.contains(box.x1, box.y1) for box in boxes)
    plt.close(fig)


def test_cell_rows_draw_every_map_with_one_colour_key() -> None:
    display = np.full((14, 14, 3), 0.5)
    maps = {(1, c): torch.rand(14, 14) for c in range(0, 7, 2)}
    fig = plot_cell_rows([("net", display, maps, (7, 7), 1)])
    assert sum(bool(ax.images) for ax in fig.axes if ax.get_label() != "<colorbar>") == 4
    assert len(colour_keys(fig)) == 1
    plt.close(fig)


def test_locality_vs_depth_plots_the_ratio_and_marks_the_cam_layer() -> None:
    frame = locality_by_stage(pooled_net(), ["0", "3"], [torch.rand(1, 16, 16)], network="tiny", max_cells=4)
    summary = summarize_locality(frame, n_boot=20)
    fig = plot_locality_vs_depth(summary, {"tiny": "3"})
    (ax,) = fig.axes
    curve, cam_marker, uniform = ax.lines
    np.testing.assert_allclose(curve.get_ydata(), summary.sort_values("relative_depth")["ratio"])
    np.testing.assert_allclose(cam_marker.get_ydata(), summary[summary["stage"] == "3"]["ratio"])
    assert cam_marker.get_markerfacecolor() == "none" and list(uniform.get_ydata()) == [1.0, 1.0]
    assert ax.get_yscale() == "log" and "ρ_uniform" in ax.get_ylabel()
    assert "CAM layer" in [text.get_text() for text in fig.legends[0].get_texts()]
    plt.close(fig)
