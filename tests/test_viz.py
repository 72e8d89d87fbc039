"""Plot helpers: overlay arithmetic, CAM-cell borders, blank panels and colour keys in sheets, legends off the curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from fame_utils.metrics.classification import RoadCurves
from fame_utils.viz.curves import line_style
from fame_utils.viz import comparison_sheet, contact_sheet, draw_cell, heatmap, overlay, plot_road_curves, show_maps, sweep_sheet, to_rgb


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def panels(fig) -> list:
    """The figure's panels, without its colour key."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def colour_keys(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def test_to_rgb_accepts_pil_arrays_and_tensors() -> None:
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    expected = pixels / 255.0
    for form in (Image.fromarray(pixels), pixels, torch.from_numpy(expected).permute(2, 0, 1), torch.from_numpy(expected)):
        rgb = to_rgb(form)
        assert rgb.shape == (4, 5, 3) and rgb.dtype == np.float64
        np.testing.assert_allclose(rgb, expected, atol=1e-7)
    assert to_rgb(np.full((4, 5), 0.25)).shape == (4, 5, 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_rgb(np.full((4, 5, 3), 2.0))


def test_overlay_interpolates_between_image_and_heatmap() -> None:
    image = np.random.default_rng(0).random((6, 7, 3))
    saliency = torch.linspace(0, 1, 42).reshape(6, 7)
    colours = heatmap(saliency)
    assert colours.shape == (6, 7, 3)
    np.testing.assert_allclose(colours[0, 0], matplotlib.colormaps["jet"](0.0)[:3])
    np.testing.assert_allclose(overlay(image, saliency, alpha=0.0), image)
    np.testing.assert_allclose(overlay(image, saliency, alpha=1.0), colours)
    np.testing.assert_allclose(overlay(image, saliency, alpha=0.25), 0.75 * image + 0.25 * colours)
    with pytest.raises(ValueError, match="differs from image size"):
        overlay(image, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="alpha"):
        overlay(image, saliency, alpha=1.5)


def test_draw_cell_lands_on_the_cam_cell_edges() -> None:
    fig, ax = plt.subplots()
    ax.imshow(np.zeros((224, 224, 3)))
    patch = draw_cell(ax, 3, 4, 7, 224)
    assert patch.get_xy() == (4 * 32 - 0.5, 3 * 32 - 0.5)
    assert (patch.get_width(), patch.get_height()) == (32, 32)
    assert patch.get_edgecolor()[:3] == (1.0, 1.0, 1.0)
    other = draw_cell(ax, 0, 0, (7, 7), (112, 112), color="red", lw=2)
    assert other.get_xy() == (-0.5, -0.5) and other.get_width() == 16 and other.get_linewidth() == 2
    uneven = draw_cell(ax, 1, 0, 3, 10)  # rows [round(10/3), round(20/3)) = [3, 7)
    assert uneven.get_xy()[1] == 2.5 and uneven.get_height() == 4


def test_contact_sheet_leaves_missing_and_none_panels_blank() -> None:
    maps = [torch.rand(8, 8), None, torch.rand(8, 8), torch.rand(8, 8), torch.rand(8, 8)]
    fig = contact_sheet(maps, rows=2, cols=3, titles=["a", None, "c", "d", "e"], row_labels=["row 0", "row 1"],
                        background=np.full((8, 8, 3), 0.5), cells=[(0, 0), None, (0, 2), (1, 0), (1, 1)], grid=(2, 3))
    axes = panels(fig)
    assert len(axes) == 6 and len(colour_keys(fig)) == 1
    drawn = [len(ax.images) for ax in axes]
    assert drawn == [1, 0, 1, 1, 1, 0]
    assert [len(ax.patches) for ax in axes] == [1, 0, 1, 1, 1, 0]
    assert axes[0].get_ylabel() == "row 0" and axes[3].get_ylabel() == "row 1"
    assert axes[2].get_title() == "c" and axes[1].get_title() == ""
    with pytest.raises(ValueError, match="do not fit"):
        contact_sheet(maps, rows=1, cols=2)
    with pytest.raises(ValueError, match="titles"):
        contact_sheet(maps, rows=2, cols=3, titles=["x"])


def test_contact_sheet_cells_differ_per_panel() -> None:
    fig = contact_sheet([np.zeros((14, 14))] * 4, rows=2, cols=2, cells=[(0, 0), (0, 1), (1, 0), (1, 1)], grid=2)
    corners = [ax.patches[0].get_xy() for ax in panels(fig)]
    assert corners == [(-0.5, -0.5), (6.5, -0.5), (-0.5, 6.5), (6.5, 6.5)]


def test_comparison_sheet_blank_cell_for_missing_map() -> None:
    maps = {("FAME", "lite0"): np.random.default_rng(1).random((8, 8)), ("Grad-CAM", "lite1"): np.zeros((8, 8)), ("FAME", "lite1"): None}
    fig = comparison_sheet(maps, ["FAME", "Grad-CAM"], ["lite0", "lite1"], backgrounds={"lite0": np.zeros((8, 8, 3)), "lite1": np.ones((8, 8, 3))})
    axes = panels(fig)
    assert [len(ax.images) for ax in axes] == [1, 0, 0, 1]
    assert axes[1].texts[0].get_text() == "n/a" and axes[2].texts[0].get_text() == "n/a"
    assert axes[0].get_title() == "lite0" and axes[2].get_ylabel() == "Grad-CAM"


def test_show_maps_wraps_rows() -> None:
    fig = show_maps(torch.rand(5, 8, 8), image=np.zeros((8, 8, 3)), cols=2)
    assert len(panels(fig)) == 6 and sum(len(ax.images) for ax in panels(fig)) == 5


def test_sweep_sheet_rows_columns_and_gaps() -> None:
    sweeps = {"net a": {1: torch.rand(1, 8, 8), 25: torch.rand(1, 8, 8)}, "net b": {1: torch.rand(8, 8)}}
    fig = sweep_sheet(sweeps, backgrounds={"net a": np.zeros((8, 8, 3)), "net b": np.ones((8, 8, 3))}, label="n={}")
    axes = panels(fig)
    assert [ax.get_title() for ax in axes[:2]] == ["n=1", "n=25"]
    assert [len(ax.images) for ax in axes] == [1, 1, 1, 0]
    assert axes[2].get_ylabel() == "net b"


def test_sheets_of_maps_get_one_colour_key_from_0_to_1_and_sheets_of_images_none() -> None:
    maps = contact_sheet([torch.rand(8, 8), np.random.default_rng(0).random((8, 8, 3))], rows=1, cols=2)
    (key,) = colour_keys(maps)
    assert key.get_ylim() == (0.0, 1.0) and [tick.get_text() for tick in key.get_yticklabels()] == ["0.0", "0.5", "1.0"]
    images = contact_sheet([np.zeros((8, 8, 3)), np.ones((8, 8, 3))], rows=1, cols=2)
    assert colour_keys(images) == []


def _road_result(network: str, methods: list[str]):
    from types import SimpleNamespace

    generator = torch.Generator().manual_seed(0)
    percents = tuple(float(p) for p in range(0, 101, 10))
    curves = {method: RoadCurves(percents, torch.rand(3, generator=generator) + 2, torch.rand(3, 11, generator=generator), torch.rand(3, 11, generator=generator))
              for method in methods}
    return SimpleNamespace(network=network, curves=curves)


def test_road_legends_sit_outside_every_panel_and_carry_the_auc() -> None:
    methods = [f"method {k}" for k in range(10)]
    results = [_road_result("net a", methods), _road_result("net b", methods)]
    fig = plot_road_curves(results)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    areas = [ax.get_window_extent(renderer) for ax in fig.axes]
    for ax in fig.axes:
        legend = ax.get_legend().get_window_extent(renderer)
        assert not any(legend.overlaps(area) for area in areas), ax.get_title()
        assert fig.bbox.padded(1).contains(legend.x0, legend.y0)
    expected = f"method 0 ({float(np.mean(results[1].curves['method 0'].insertion_auc())):.2f})"
    assert expected in [text.get_text() for text in fig.axes[3].get_legend().get_texts()]


def test_curves_that_coincide_stay_distinguishable() -> None:
    """Two methods with the same ranking draw the same curve: each line of a panel has its own marker and dash pair."""
    methods = [f"method {k}" for k in range(10)]
    fig = plot_road_curves([_road_result("net", methods)])
    for ax in fig.axes:
        styles = [(line.get_marker(), line.get_linestyle()) for line in ax.get_lines()]
        assert len(styles) == len(methods) and len(set(styles)) == len(methods)
    assert line_style(0) == line_style(12) and line_style(0) != line_style(1)
