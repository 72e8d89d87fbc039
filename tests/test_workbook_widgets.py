"""The notebook-02 explorer callback: different widget values give different maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fame_utils.workbook.widgets import STATIC_WIDGETS_ENV, interact_or_show, location_explorer, show_location_map, widgets_live
from tiny_models import grid7_network


def explorer_inputs() -> tuple[nn.Module, dict]:
    model = grid7_network()[:4].eval()
    generator = torch.Generator().manual_seed(1)
    images = {}
    for name in ("a", "b"):
        pixels = torch.rand(3, 28, 28, generator=generator)
        images[name] = (pixels, pixels.permute(1, 2, 0).numpy())
    return model, images


def test_callback_map_changes_with_every_control() -> None:
    model, images = explorer_inputs()
    base = dict(image="a", step_size=1.0, iterations=3, blur_kernel=5, row=3, col=3)
    reference = show_location_map(model, "3", images, **base)
    assert reference.fame_map.shape == (28, 28) and reference.location == (3, 3)
    assert reference.fame_map.max() == pytest.approx(1.0, abs=1e-6)
    for change in ({"image": "b"}, {"step_size": 8.0}, {"iterations": 1}, {"blur_kernel": 11}, {"row": 0}, {"col": 6}):
        changed = show_location_map(model, "3", images, **{**base, **change})
        assert not np.allclose(changed.fame_map, reference.fame_map, atol=1e-4), change
    again = show_location_map(model, "3", images, **base)
    np.testing.assert_array_equal(again.fame_map, reference.fame_map)


def test_callback_clips_locations_and_rejects_unknown_images() -> None:
    model, images = explorer_inputs()
    assert show_location_map(model, "3", images, "a", iterations=1, blur_kernel=0, row=20, col=-3).location == (6, 0)
    with pytest.raises(ValueError, match="unknown image"):
        show_location_map(model, "3", images, "c")


def test_interactive_widget_drives_the_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATIC_WIDGETS_ENV, raising=False)
    assert widgets_live()
    model, images = explorer_inputs()
    explorer = location_explorer(model, "3", images, grid=(7, 7), max_iterations=5, iterations=2, blur_kernel=5)
    controls = {widget.description: widget for widget in explorer.kwargs_widgets}
    first = explorer.result.fame_map
    controls["row"].value = 0
    assert explorer.result.location == (0, 3)
    assert not np.allclose(explorer.result.fame_map, first, atol=1e-4)


def test_batch_runs_get_the_starting_figure_instead_of_a_widget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATIC_WIDGETS_ENV, "1")
    assert not widgets_live()
    model, images = explorer_inputs()
    preview = location_explorer(model, "3", images, grid=(7, 7), max_iterations=5, iterations=2, blur_kernel=5)
    expected = show_location_map(model, "3", images, "a", 1.0, 2, 5, 3, 3)
    assert preview.location == (3, 3)
    np.testing.assert_array_equal(preview.fame_map, expected.fame_map)


def test_interact_or_show_draws_the_start_values_once_in_batch_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setenv(STATIC_WIDGETS_ENV, "1")
    assert interact_or_show(lambda row, col: calls.append((row, col)), {"row": 2, "col": 5}, row=(0, 6), col=(0, 6)) is None
    assert calls == [(2, 5)]


def test_interact_or_show_builds_one_control_per_argument_when_live(monkeypatch: pytest.MonkeyPatch) -> None:
    import ipywidgets

    calls = []
    monkeypatch.delenv(STATIC_WIDGETS_ENV, raising=False)
    panel = interact_or_show(lambda network, row: calls.append((network, row)), {"network": "a", "row": 0},
                             network=ipywidgets.Dropdown(options=["a", "b"]), row=ipywidgets.IntSlider(value=1, min=0, max=3))
    assert isinstance(panel, ipywidgets.interactive)
    assert [child.description for child in panel.kwargs_widgets] == ["network", "row"]
    panel.kwargs_widgets[0].value = "b"
    assert calls[-1] == ("b", 1)
