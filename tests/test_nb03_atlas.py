"""The feature-map atlas (notebook 03): locations, in-cell mass on known receptive fields, panels and the mass table."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from tiny_models import pointwise_net, spread_net
from fame_utils.workbook import nb03_atlas as atlas
from fame_utils.fame import FameConfig
from fame_utils.models import ModelSpec

UNBLURRED = FameConfig(iterations=3, blur_kernel=None)


def _spec(module: nn.Module, target_layer: str, task: str = "classification") -> ModelSpec:
    return ModelSpec(name="tiny", module=module.eval(), preprocess=lambda image: torch.as_tensor(image).permute(2, 0, 1).float(),
                     task=task, input_size=16, target_layer=target_layer, stages=[target_layer], class_names=None,
                     source={}, input_space="RGB in [0, 1]")


def _image() -> torch.Tensor:
    return torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(3))


def test_atlas_locations_cover_the_grid_or_three_cells_of_the_middle_row() -> None:
    assert atlas.atlas_locations((2, 3)) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert atlas.atlas_locations((7, 7), all_cells=False) == [(3, 0), (3, 3), (3, 6)]
    assert atlas.atlas_locations((4, 1), all_cells=False) == [(2, 0)]


def test_pointwise_network_keeps_every_fame_and_gradient_map_in_its_cell() -> None:
    result = atlas.compute_atlas("pointwise", _spec(pointwise_net(), "2"), _image(), UNBLURRED, progress=False)
    assert result.grid == (4, 4) and len(result.maps) == 16 and result.scored == sorted(result.maps)
    assert torch.allclose(result.fame_mass.double(), torch.ones(16, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(result.gradient_mass.double(), torch.ones(16, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(result.uniform.double(), torch.full((16,), 1 / 16, dtype=torch.float64))


def test_a_wider_receptive_field_spreads_the_maps_out_of_their_cells() -> None:
    result = atlas.compute_atlas("spread", _spec(spread_net(), "2"), _image(), UNBLURRED, progress=False)
    assert float(result.gradient_mass.max()) < 1 - 1e-3
    assert float(result.fame_mass.mean()) < 1 - 1e-3


def test_all_zero_maps_everywhere_raise_a_named_error() -> None:
    dead = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.AvgPool2d(4))
    with torch.no_grad():
        dead[0].weight.zero_()
        dead[0].bias.fill_(-1.0)
    with pytest.raises(ValueError, match="dead: FAME or the gradient is all zero"):
        atlas.compute_atlas("dead", _spec(dead, "2"), _image(), UNBLURRED, progress=False)


def test_paper_atlas_weights_from_the_notebook_parameters() -> None:
    assert atlas.paper_atlas_weights(None, {}) == dict.fromkeys(["resnet34", "resnet50", "resnet101", "iresnet18", "iresnet50", "iresnet101"])
    hub = atlas.paper_atlas_weights("hub", {"iresnet50": "/c/ir50.ckpt"})
    assert hub["resnet101"] == "hub" and hub["iresnet50"] == "/c/ir50.ckpt" and hub["iresnet18"] is None
    assert atlas.paper_atlas_weights("/w", {})["resnet34"] == Path("/w/resnet34.pth")


def test_fig1_rows_sheet_and_mass_table() -> None:
    result = atlas.compute_atlas("pointwise", _spec(pointwise_net(), "2"), _image(), UNBLURRED, all_cells=False, progress=False)
    rows = atlas.cell_row_panels(result, [2])
    assert [(label, row, grid) for label, _, _, grid, row in rows] == [("pointwise", 2, (4, 4))]
    fig = atlas.atlas_sheet(result)
    assert sum(bool(ax.images) for ax in fig.axes) >= 3
    plt.close(fig)
    table = atlas.mass_table({"pointwise": result})
    assert table.loc[0, "locations"] == 3 and table.loc[0, "grid"] == "4×4"
    assert table.loc[0, "fame_mass"] == pytest.approx(1.0, abs=1e-6) and table.loc[0, "uniform"] == pytest.approx(1 / 16)
    assert np.isfinite(table[["fame_mass", "fame_max", "gradient_mass", "uniform"]].to_numpy()).all()
