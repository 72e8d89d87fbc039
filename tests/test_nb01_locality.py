"""Notebook 01's own code: the networks' inputs, the trained-vs-random control, the verdict and the widget callbacks."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from fame_utils.locality import locality_by_stage, summarize_locality  # noqa: E402
from fame_utils.models import load_model  # noqa: E402
from fame_utils.workbook.nb01_locality import (  # noqa: E402
    NetworkView,
    locality_verdict,
    network_inputs,
    show_cell,
    show_network_cell,
    trained_and_random_locality,
    verdict_lines,
    verdict_record,
)
from tiny_models import pooled_net, three_pixel_net  # noqa: E402


def test_show_cell_changes_with_cell_and_stage() -> None:
    model = pooled_net()
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(7))
    display = np.repeat(image[0].numpy()[..., None], 3, axis=2)
    views = {}
    for key in [("3", 0, 0), ("3", 6, 6), ("0", 0, 0)]:
        fig = show_cell(model, ["0", "3"], image, display, *key)
        fig.canvas.draw()
        views[key] = (np.asarray(fig.canvas.buffer_rgba()).copy(), fig.axes[0].get_title(), fig.cell_mass)
        plt.close(fig)
    assert not np.array_equal(views[("3", 0, 0)][0], views[("3", 6, 6)][0])
    assert "cell (0, 0)" in views[("3", 0, 0)][1] and "cell (7, 7) of 8×8" in views[("3", 6, 6)][1]
    assert views[("3", 0, 0)][1] != views[("0", 0, 0)][1]
    assert all(0 < view[2] <= 1 for view in views.values())



def test_network_widget_callback_clamps_the_stage_and_changes_with_the_network() -> None:
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(8))
    display = np.repeat(image[0].numpy()[..., None], 3, axis=2)
    views = {"pooled": NetworkView(pooled_net(), ["0", "3"], image, display),
             "three": NetworkView(three_pixel_net(), ["0"], image, display)}
    titles = []
    for network, stage_index in [("pooled", 5), ("three", 5)]:
        fig = show_network_cell(views, network, stage_index, 2, 2)
        titles.append(fig.axes[0].get_title())
        plt.close(fig)
    assert titles[0].startswith("pooled 3 cell") and titles[1].startswith("three 0 cell")
    with pytest.raises(ValueError, match="unknown network"):
        show_network_cell(views, "nope", 0, 0, 0)



def test_locality_verdict_picks_first_target_and_last_stage() -> None:
    frame = locality_by_stage(pooled_net(), ["0", "3"], [torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(9))], network="tiny", max_cells=4)
    summary = summarize_locality(frame, n_boot=50)
    verdict = locality_verdict(summary, {"tiny": "0"}).iloc[0]
    assert (verdict.first_stage, verdict.target_stage) == ("0", "0")
    assert verdict.last_mass == pytest.approx(summary["mass"].iloc[1])
    assert verdict.target_ratio == pytest.approx(summary["mass"].iloc[0] * 256)



def test_verdict_record_and_lines_read_trained_and_random_rows() -> None:
    base = dict(first_stage="s0", target_stage="s3", target_low=0.1, target_high=0.3, target_uniform=0.02, last_mass=0.4, last_ratio=20.0)
    verdict = pd.DataFrame([
        dict(base, network="a", weights="trained", first_mass=0.5, first_ratio=200.0, target_mass=0.2, target_ratio=10.0),
        dict(base, network="a", weights="random", first_mass=0.6, first_ratio=300.0, target_mass=0.25, target_ratio=12.5),
        dict(base, network="b", weights="trained", first_mass=0.7, first_ratio=100.0, target_mass=0.1, target_ratio=5.0),
    ])
    record = verdict_record(verdict)
    assert record["cam_layer_mass"] == {"a": 0.2, "b": 0.1}
    assert record["cam_layer_mass_high"] == {"a": 0.3, "b": 0.3}
    assert record["first_stage_ratio"] == {"a": 200.0, "b": 100.0}
    assert record["random_cam_layer_mass"] == {"a": 0.25}
    assert record["random_first_stage_ratio"] == {"a": 300.0}
    lines = verdict_lines(verdict)
    assert len(lines) == 2
    assert "rho = 0.20 (uniform 0.020)" in lines[0] and "first stage 200x, CAM layer 10.0x" in lines[0]
    assert "random weights at CAM layer: rho = 0.25 (more in-cell than trained)" in lines[0]
    assert "random" not in lines[1]



def test_network_inputs_take_photos_for_classifiers_and_distinct_gallery_faces_for_face_networks() -> None:
    photos = [SimpleNamespace(name=f"p{i}", image=np.full((4, 4, 3), i, dtype=np.uint8)) for i in range(3)]
    to_tensor = lambda image: torch.tensor(np.array(image), dtype=torch.float32).permute(2, 0, 1)
    classifier = SimpleNamespace(task="classification", preprocess=to_tensor)
    assert [name for name, _ in network_inputs(classifier, photos, 2)] == ["p0", "p1"]
    face_net = SimpleNamespace(task="verification", input_size=150, preprocess=to_tensor)
    faces = network_inputs(face_net, photos, 3)
    assert len({name for name, _ in faces}) == 3 and all(x.shape == (3, 150, 150) for _, x in faces)



@pytest.mark.slow
def test_trained_and_random_locality_adds_the_seeded_random_control() -> None:
    stand_in = load_model("dlib_resnet", weights=None, device="cpu")  # seeded random "trained" weights = the control's
    inputs = {"dlib_resnet": network_inputs(stand_in, [], 1)}
    frame = trained_and_random_locality({"dlib_resnet": stand_in}, inputs, max_cells=2, seed=0)
    trained, random_ = frame[frame["weights"] == "trained"], frame[frame["weights"] == "random"]
    assert len(trained) == len(random_) > 0 and set(frame["network"]) == {"dlib_resnet"}
    assert np.allclose(trained["mass"].to_numpy(), random_["mass"].to_numpy())
