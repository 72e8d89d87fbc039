"""Explorers: every control change redraws and displays a new figure (live), batch runs show the starting figure,
and the notebook-02 callback's map changes with every control, at any layer."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from fame_utils.workbook.nb01_locality import NetworkView
from fame_utils.workbook.widgets import STATIC_WIDGETS_ENV, Explorer, location_explorer, show_location_map, stage_cell_explorer, widgets_live
from tiny_models import grid7_network, pooled_net, three_pixel_net


def explorer_inputs() -> tuple[nn.Module, dict]:
    model = grid7_network()[:4].eval()  # layers "0", "1": 28×28; "2", "3": 7×7
    generator = torch.Generator().manual_seed(1)
    images = {}
    for name in ("a", "b"):
        pixels = torch.rand(3, 28, 28, generator=generator)
        images[name] = (pixels, pixels.permute(1, 2, 0).numpy())
    return model, images


@pytest.fixture
def displayed(monkeypatch: pytest.MonkeyPatch) -> list:
    """What the explorers hand to IPython's display, in order."""
    import IPython.display

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    return shown


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATIC_WIDGETS_ENV, raising=False)
    assert widgets_live()


@pytest.fixture
def batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATIC_WIDGETS_ENV, "1")
    assert not widgets_live()


def bar_figure(height: int, colour: str):
    fig, ax = plt.subplots()
    ax.bar([0], [height], color=colour)
    fig.drawn = (height, colour)
    return fig


def test_callback_map_changes_with_every_control() -> None:
    model, images = explorer_inputs()
    base = dict(image="a", layer="3", step_size=1.0, iterations=3, blur_kernel=5, row=3, col=3)
    reference = show_location_map(model, images, **base)
    assert reference.fame_map.shape == (28, 28) and reference.location == (3, 3)
    assert reference.fame_map.max() == pytest.approx(1.0, abs=1e-6)
    changes = ({"image": "b"}, {"layer": "1"}, {"step_size": 8.0}, {"iterations": 1}, {"blur_kernel": 11}, {"row": 0}, {"col": 6})
    for change in changes:
        changed = show_location_map(model, images, **{**base, **change})
        assert not np.allclose(changed.fame_map, reference.fame_map, atol=1e-4), change
    again = show_location_map(model, images, **base)
    np.testing.assert_array_equal(again.fame_map, reference.fame_map)


def test_view_position_maps_to_the_layers_own_grid() -> None:
    model, images = explorer_inputs()
    # 7×7 view grid onto a 28×28 layer: position p → cell ⌊(p + 0.5)·4⌋
    assert show_location_map(model, images, "a", "0", iterations=1, blur_kernel=0, row=0, col=6).location == (2, 26)
    assert show_location_map(model, images, "a", "2", iterations=1, blur_kernel=0, row=0, col=6).location == (0, 6)
    with pytest.raises(ValueError, match="outside the 7×7 view grid"):
        show_location_map(model, images, "a", "3", row=7)
    with pytest.raises(ValueError, match="unknown image"):
        show_location_map(model, images, "c", "3")


def test_live_explorer_redraws_and_displays_each_new_figure_once(live: None, displayed: list) -> None:
    height = ipywidgets.IntSlider(value=2, min=1, max=5)
    colour = ipywidgets.Dropdown(options=["red", "blue"])
    explorer = Explorer(bar_figure, height=height, colour=colour)
    assert [figure.drawn for figure in displayed] == [(2, "red")]
    height.value = 4
    colour.value = "blue"
    assert [figure.drawn for figure in displayed] == [(2, "red"), (4, "red"), (4, "blue")]
    assert explorer.figure is displayed[-1] and explorer.values() == {"height": 4, "colour": "blue"}
    assert plt.get_fignums() == []  # every drawn figure was closed after display: no second copy from pyplot
    explorer._ipython_display_()
    panel = displayed[-1]
    assert isinstance(panel, ipywidgets.VBox) and list(panel.children) == [height, colour, explorer.output]
    assert [height.description, colour.description] == ["height", "colour"]


def test_batch_explorer_is_one_static_figure_of_the_starting_values(batch: None, displayed: list) -> None:
    explorer = Explorer(bar_figure, height=ipywidgets.IntSlider(value=3, min=1, max=5), colour=ipywidgets.Dropdown(options=["blue", "red"]))
    assert explorer.output is None and explorer.figure.drawn == (3, "blue") and displayed == []
    assert plt.get_fignums() == []
    explorer._ipython_display_()
    assert displayed == [explorer.figure]


def test_explorer_rejects_missing_or_non_widget_controls(live: None) -> None:
    with pytest.raises(ValueError, match="at least one control"):
        Explorer(bar_figure)
    with pytest.raises(ValueError, match=r"controls \['height'\] are not ipywidgets value controls"):
        Explorer(bar_figure, height=(1, 5), colour=ipywidgets.Dropdown(options=["red"]))


def test_location_explorer_redraws_for_row_and_layer(live: None, displayed: list) -> None:
    model, images = explorer_inputs()
    explorer = location_explorer(model, ["0", "3"], images, max_iterations=5, iterations=2, blur_kernel=5)
    assert explorer.values() == {"image": "a", "layer": "3", "step_size": 1.0, "iterations": 2, "blur_kernel": 5, "row": 3, "col": 3}
    first = explorer.figure.fame_map
    explorer.controls["row"].value = 0
    assert explorer.figure.location == (0, 3)
    assert not np.allclose(explorer.figure.fame_map, first, atol=1e-4)
    explorer.controls["layer"].value = "0"
    assert explorer.figure.location == (2, 14)
    assert "· 0: location (2, 14) of 28×28" in explorer.figure.axes[0].get_title()
    assert len(displayed) == 3


def test_location_explorer_batch_preview_equals_the_callback(batch: None) -> None:
    model, images = explorer_inputs()
    preview = location_explorer(model, ["0", "3"], images, max_iterations=5, iterations=2, blur_kernel=5).figure
    expected = show_location_map(model, images, "a", "3", 1.0, 2, 5, 3, 3)
    assert preview.location == (3, 3)
    np.testing.assert_array_equal(preview.fame_map, expected.fame_map)
    with pytest.raises(ValueError, match="starting layer 'head' is not one of"):
        location_explorer(model, ["0", "3"], images, layer="head")


def test_stage_cell_explorer_clamps_the_stage_per_network_and_redraws(live: None, displayed: list) -> None:
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(8))
    shown = np.repeat(image[0].numpy()[..., None], 3, axis=2)
    explorer = stage_cell_explorer({"pooled · x": NetworkView(pooled_net(), ["0", "3"], image, shown),
                                    "three · x": NetworkView(three_pixel_net(), ["0"], image, shown)})
    assert explorer.values() == {"view": "pooled · x", "stage_index": 1, "row": 3, "col": 3}
    assert explorer.figure.axes[0].get_title().startswith("pooled · x 3 cell")
    explorer.controls["view"].value = "three · x"
    assert explorer.figure.axes[0].get_title().startswith("three · x 0 cell")  # stage 1 clamped to its only stage
    assert len(displayed) == 2
    with pytest.raises(ValueError, match="at least one view"):
        stage_cell_explorer({})


def test_each_explorer_closes_its_notebook_after_a_markdown_cell_saying_what_to_try() -> None:
    import nbformat

    calls = ("Explorer(", "stage_cell_explorer(", "location_explorer(", "face_explorer(")
    with_widgets = set()
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for index, cell in enumerate(cells):
            if cell.cell_type == "code" and any(call in cell.source for call in calls):
                with_widgets.add(path.stem[:2])
                assert index == len(cells) - 1, f"{path.name}: the explorer (cell {index}) must be the notebook's last cell"
                assert cell.source.startswith("# NBVAL_IGNORE_OUTPUT"), f"{path.name}: widget output must not be compared by nbval"
                assert cells[index - 1].cell_type == "markdown" and "Things to try" in cells[index - 1].source, path.name
    assert {"01", "02", "05"} <= with_widgets
