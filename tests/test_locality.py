"""CAM cells, in-cell mass, stage geometry, the gradient engine, receptive fields and the per-stage tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fame_utils.locality import (
    bootstrap_band,
    cell_bounds,
    cell_gradients,
    cell_masks,
    conv_depth,
    in_cell_mass,
    locality_by_stage,
    receptive_field_size,
    summarize_locality,
    theoretical_receptive_field,
    uniform_mass,
    view_position,
)
from tiny_models import deep_pointwise_net, pooled_net, three_pixel_net


# ----------------------------------------------------------------------------- tiny networks


# ----------------------------------------------------------------------------- cells


def test_cell_bounds_tile_224_into_32_pixel_cells() -> None:
    assert cell_bounds(0, 0, (7, 7), (224, 224)) == (0, 32, 0, 32)
    assert cell_bounds(3, 6, (7, 7), (224, 224)) == (96, 128, 192, 224)


def test_cell_bounds_round_ties_half_up_not_to_even() -> None:
    # 3·150/4 = 112.5: half-up gives 113 (Python's round would give 112).
    assert cell_bounds(2, 0, (4, 4), (150, 150)) == (75, 113, 0, 38)


def test_cells_cover_every_pixel_exactly_once() -> None:
    masks = cell_masks((9, 9), (260, 260))
    assert torch.equal(masks.sum(0), torch.ones(260, 260, dtype=torch.long))


def test_cell_bounds_rejects_location_outside_grid() -> None:
    with pytest.raises(ValueError, match="outside"):
        cell_bounds(7, 0, (7, 7), (224, 224))


# ----------------------------------------------------------------------------- in-cell mass


def test_uniform_map_gives_cell_area_over_image_area() -> None:
    masses = in_cell_mass(torch.ones(49, 224, 224), (7, 7))
    assert torch.allclose(masses, torch.full((49,), 1 / 49, dtype=torch.float64), atol=1e-15)
    assert torch.allclose(uniform_mass((7, 7), (224, 224)), masses, atol=1e-15)


def test_one_hot_maps_give_one_inside_and_zero_outside() -> None:
    maps = torch.zeros(2, 14, 14)
    maps[0, 1, 1] = 1.0  # location (0, 0): cell rows/cols [0, 2)
    maps[1, 1, 1] = 1.0  # location (0, 1): cell cols [2, 4) -> pixel (1, 1) is outside
    assert in_cell_mass(maps, (7, 7), [(0, 0), (0, 1)]).tolist() == [1.0, 0.0]


def test_map_entirely_in_its_cell_gives_one() -> None:
    generator = torch.Generator().manual_seed(0)
    maps = torch.zeros(4, 8, 8)
    for index, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        maps[index, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] = torch.rand(4, 4, generator=generator) + 0.1
    assert torch.allclose(in_cell_mass(maps, (2, 2)), torch.ones(4, dtype=torch.float64), atol=1e-15)


def test_half_in_cell_gives_one_half() -> None:
    maps = torch.zeros(1, 8, 8)
    maps[0, 0, 0] = 0.3  # inside cell (0, 0) of a 2×2 grid
    maps[0, 7, 7] = 0.3  # inside cell (1, 1)
    assert in_cell_mass(maps, (2, 2), [(0, 0)]).item() == 0.5


def test_in_cell_mass_accepts_numpy() -> None:
    assert in_cell_mass(np.ones((4, 8, 8)), (2, 2)).tolist() == [0.25] * 4


@pytest.mark.parametrize(
    ("maps", "grid", "message"),
    [
        (torch.ones(48, 224, 224), (7, 7), "48 maps"),
        (torch.ones(224, 224), (7, 7), "shape"),
        (-torch.ones(1, 4, 4), (1, 1), "non-negative"),
        (torch.full((1, 4, 4), float("nan")), (1, 1), "NaN"),
    ],
)
def test_in_cell_mass_rejects_bad_maps(maps: torch.Tensor, grid: tuple[int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        in_cell_mass(maps, grid)


def test_all_zero_map_raises_and_names_it() -> None:
    maps = torch.ones(4, 8, 8)
    maps[2] = 0
    with pytest.raises(ValueError, match=r"\[2\] are all zero"):
        in_cell_mass(maps, (2, 2))


# ----------------------------------------------------------------------------- receptive fields


def test_theoretical_field_of_a_3x3_conv_is_3_pixels_wide() -> None:
    field = theoretical_receptive_field(three_pixel_net(), "0", (1, 11, 11), (5, 5))
    assert (field.r0, field.r1, field.c0, field.c1) == (4, 7, 4, 7)
    assert (field.height, field.width) == (3, 3)


def test_theoretical_field_is_clipped_at_the_border() -> None:
    field = theoretical_receptive_field(three_pixel_net(), "1", (1, 11, 11), (0, 10))
    assert (field.r0, field.r1, field.c0, field.c1) == (0, 2, 9, 11)


def test_theoretical_field_through_maxpool_and_residual_depthwise_block() -> None:
    model = pooled_net()
    # location (4, 4) of the 8×8 output: pooled pixels 3..5 -> input rows 6..11, plus the first conv's ±1.
    field = theoretical_receptive_field(model, "3", (1, 16, 16), (4, 4))
    assert (field.r0, field.r1, field.c0, field.c1) == (5, 13, 5, 13)
    assert receptive_field_size(model, "3", (1, 16, 16)) == (8, 8)


def test_theoretical_field_does_not_modify_the_model() -> None:
    model = pooled_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    theoretical_receptive_field(model, "3", (1, 16, 16))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model[1], nn.ReLU) and isinstance(model[2], nn.MaxPool2d)


def test_gradient_support_lies_inside_the_theoretical_field() -> None:
    model = pooled_net()
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(1))
    gradient = cell_gradients(model, "3", image, [(4, 4)])[0]
    field = theoretical_receptive_field(model, "3", (1, 16, 16), (4, 4))
    outside = gradient.clone()
    outside[field.r0 : field.r1, field.c0 : field.c1] = 0
    assert gradient.sum() > 0 and outside.abs().max() == 0


# ----------------------------------------------------------------------------- gradients and FAME


def test_pointwise_network_keeps_each_gradient_in_its_cell() -> None:
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(2))
    maps = cell_gradients(deep_pointwise_net(), "5", image)
    assert maps.shape == (16, 16, 16)
    assert torch.allclose(in_cell_mass(maps, (4, 4)), torch.ones(16, dtype=torch.float64), atol=1e-6)


def test_cell_gradients_do_not_depend_on_the_batch_size() -> None:
    model = pooled_net()
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(cell_gradients(model, "3", image, batch_size=64), cell_gradients(model, "3", image, batch_size=5), atol=1e-6)


def test_cell_gradients_run_the_fewest_balanced_batches() -> None:
    model = pooled_net()
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda _module, args: sizes.append(args[0].shape[0]))
    try:
        maps = cell_gradients(model, "3", torch.rand(1, 16, 16), batch_size=7)
    finally:
        handle.remove()
    # one probe of the grid, then 64 locations in 10 batches of 6 or 7 (not 9 × 7 and a lone one)
    assert maps.shape[0] == 64 and sizes[0] == 1 and len(sizes) == 11 and set(sizes[1:]) == {6, 7} and sum(sizes[1:]) == 64


def test_cell_gradients_refuse_training_mode() -> None:
    with pytest.raises(ValueError, match="eval"):
        cell_gradients(pooled_net().train(), "3", torch.rand(1, 16, 16))


def test_unblurred_fame_per_location_stays_in_its_cell() -> None:
    fame = pytest.importorskip("fame_utils.fame", reason="fame_utils.fame (FAME core helper) not landed yet")
    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(4))
    config = fame.FameConfig(iterations=5, blur_kernel=None)
    maps = fame.explain_locations(deep_pointwise_net(), "5", image, config=config)
    assert torch.allclose(in_cell_mass(maps, (4, 4)), torch.ones(16, dtype=torch.float64), atol=1e-6)


# ----------------------------------------------------------------------------- per-stage measurement


def test_locality_by_stage_table_and_summary() -> None:
    model = pooled_net()
    images = [torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(s)) for s in (5, 6)]
    frame = locality_by_stage(model, ["0", "3"], images, network="tiny", max_cells=10, seed=0)
    assert set(frame["stage"]) == {"0", "3"}
    assert frame.groupby(["stage", "image"]).size().tolist() == [10, 10, 10, 10]
    assert frame.loc[frame["stage"] == "0", "depth"].iloc[0] == 1 and frame.loc[frame["stage"] == "3", "depth"].iloc[0] == 2
    assert frame["relative_depth"].max() == 1.0
    assert ((frame["mass"] > 0) & (frame["mass"] <= 1)).all()
    # Stage "0" is a 3×3 conv on a 16×16 grid (one-pixel cells): an interior gradient is the 3×3 kernel.
    summary = summarize_locality(frame, n_boot=200, seed=0)
    assert list(summary["stage"]) == ["0", "3"]
    assert (summary["low"] <= summary["mass"]).all() and (summary["mass"] <= summary["high"]).all()
    assert summary["uniform"].tolist() == pytest.approx([1 / 256, 1 / 64])


def test_bootstrap_band_is_seeded_and_degenerate_for_constant_values() -> None:
    import pandas as pd

    frame = pd.DataFrame({"image": ["a"] * 5 + ["b"] * 5, "mass": np.linspace(0, 1, 10)})
    assert bootstrap_band(frame, seed=3) == bootstrap_band(frame, seed=3)
    low, high = bootstrap_band(frame, seed=3)
    assert low < 0.5 < high
    constant = frame.assign(mass=0.25)
    assert bootstrap_band(constant) == (0.25, 0.25)


def test_conv_depth_counts_convolutions_up_to_the_layer() -> None:
    assert conv_depth(deep_pointwise_net(), "3", (3, 16, 16)) == 2


# ----------------------------------------------------------------------------- widget callback


def test_view_position_maps_the_same_region_at_every_stage() -> None:
    assert view_position(3, 3, 7, (7, 7)) == (3, 3)
    assert view_position(3, 3, 7, (112, 112)) == (56, 56)
    assert view_position(0, 6, 7, (14, 14)) == (1, 13)


def test_receptive_fields_table_matches_single_probes() -> None:
    from fame_utils.locality import receptive_fields

    model = pooled_net()
    table = receptive_fields(model, ["0", "3"], (1, 16, 16), max_scale=4)
    assert table["stage"].tolist() == ["0", "3"] and table["depth"].tolist() == [1, 2]
    for entry in table.itertuples():
        field = theoretical_receptive_field(model, entry.stage, (1, 16, 16), (entry.row, entry.col))
        assert (entry.r0, entry.r1, entry.c0, entry.c1) == (field.r0, field.r1, field.c0, field.c1)
    assert table["rf_height"].tolist() == [3, 8] and table["rf_width"].tolist() == [3, 8]


def test_stage_shapes_give_depth_and_grid_in_one_pass() -> None:
    from fame_utils.locality import stage_shapes

    assert stage_shapes(pooled_net(), ["0", "3"], (1, 16, 16)) == [(1, (16, 16)), (2, (8, 8))]


@pytest.mark.slow
def test_sface_receptive_fields_match_the_kernel_stride_formula() -> None:
    from fame_utils.locality import receptive_fields
    from fame_utils.models import load_model

    spec = load_model("sface", device="cpu")
    table = receptive_fields(spec.module, spec.stages[:3], (3, 112, 112), max_scale=None)
    # r = 1 + Σ (k_l − 1)·(product of earlier strides): conv_1..conv_2 → 5, conv_4 → 11, conv_6 → 23.
    assert table["clipped_height"].tolist() == [5, 11, 23]


@pytest.mark.slow
def test_shipped_classifier_gradient_stays_inside_the_theoretical_field() -> None:
    from fame_utils.models import load_model

    spec = load_model("efficientnet_lite0", device="cpu")
    image = torch.rand(3, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    gradient = cell_gradients(spec.module, "stages.2", image, [(14, 14)])[0]
    field = theoretical_receptive_field(spec.module, "stages.2", (3, 224, 224), (14, 14))
    outside = gradient.clone()
    outside[field.r0 : field.r1, field.c0 : field.c1] = 0
    # stem 3×3/2 → 3, stages.0 dw3 → 7, stages.1 dw3/2 + dw3 → 11, 19, stages.2 dw5/2 + dw5 → 35, 67.
    assert field.height == 67 and gradient.sum() > 0 and outside.max() == 0


def test_stage_cell_gradients_equal_single_cell_gradients() -> None:
    from fame_utils.locality import stage_cell_gradients

    model = pooled_net()
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(10))
    for stage, location, grid, gradient in stage_cell_gradients(model, ["0", "3"], image, (2, 5)):
        assert grid == {"0": (16, 16), "3": (8, 8)}[stage]
        assert torch.allclose(gradient, cell_gradients(model, stage, image, [location])[0], atol=1e-7)


def test_locality_by_stage_matches_per_stage_cell_gradients() -> None:
    model = pooled_net()
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(11))
    frame = locality_by_stage(model, ["0", "3"], [image], network="tiny", max_cells=5, batch_size=2, seed=1)
    for stage, group in frame.groupby("stage"):
        locations = list(zip(group["row"], group["col"]))
        grid = (int(group["grid_h"].iloc[0]), int(group["grid_w"].iloc[0]))
        expected = in_cell_mass(cell_gradients(model, stage, image, locations), grid, locations)
        assert np.allclose(group["mass"].to_numpy(), expected.numpy(), atol=1e-6)
