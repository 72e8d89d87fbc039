"""Bad inputs to FAME, the CAMs, FGGB, CorrRISE and the metrics: each gets a named error before any expensive work,
and no hook is left on the model afterwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fame_utils.baselines.cam import finer_cam, full_grad, grad_cam, hires_cam
from fame_utils.baselines.gradient import fggb
from fame_utils.baselines.perturbation import corrrise
from fame_utils.fame import FameConfig, explain_class, explain_locations, explain_verification, optimize
from fame_utils.fame.losses import class_loss
from fame_utils.layers import LayerOutputError, LayerReusedError, probe_layer
from fame_utils.metrics import eer_threshold, iou
from fame_utils.models import available_models, load_model
from tiny_models import Recorder

FAST = FameConfig(iterations=2, blur_kernel=3, blur_sigma=1.0)


def classifier() -> nn.Module:
    """Conv → BatchNorm → ReLU → Dropout → pooled 5-class head, on 3-channel 8×8 images."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5)
    ).eval()


def embedder() -> nn.Module:
    """Conv → ReLU → 2×2 pooling → 16-d embedding."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()).eval()


class SharedReLU(nn.Module):
    """One ReLU module applied after both convolutions, like torchvision ResNet's ``layer4.1.relu``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv2(self.relu(self.conv1(x)))).mean(dim=(2, 3)))


class PairOut(nn.Module):
    """Returns a (features, features) tuple."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


class TupleLayerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pair = PairOut()
        self.head = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pair(self.conv(x))[0].mean(dim=(2, 3)))


def images(batch: int = 2, channels: int = 3, size: int = 8) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(1))


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks and not m._backward_hooks for m in model.modules())


CLASSIFIER_METHODS = {
    "FAME": lambda model, x, classes: explain_class(model, x, classes, FAST),
    "Grad-CAM": lambda model, x, classes: grad_cam(model, "2", x, classes),
    "HiResCAM": lambda model, x, classes: hires_cam(model, "2", x, classes),
    "FullGrad": lambda model, x, classes: full_grad(model, x, classes),
    "Finer-CAM": lambda model, x, classes: finer_cam(model, "2", x, classes),
}
PAIR_METHODS = {
    "FAME": lambda model, x, r: explain_verification(model, x, r, FAST),
    "FGGB": lambda model, x, r: fggb(model, x, r, threshold=0.3, blur_kernel=3, blur_sigma=1.0),
    "CorrRISE": lambda model, x, r: corrrise(model, x, r, n_masks=8),
}


@pytest.mark.parametrize("method", CLASSIFIER_METHODS)
@pytest.mark.parametrize("submodule", ["1", "3"])
def test_a_submodule_alone_in_training_mode_is_refused_by_name(method, submodule):
    model = classifier()
    model[int(submodule)].train()
    with pytest.raises(ValueError, match=rf"training mode \({submodule}\).*model\.eval\(\)"):
        CLASSIFIER_METHODS[method](model, images(), [0, 1])
    assert model[1].num_batches_tracked == 0  # BatchNorm statistics untouched


@pytest.mark.parametrize("method", PAIR_METHODS)
def test_pair_methods_refuse_a_submodule_in_training_mode(method):
    model = embedder()
    model[0].train()
    with pytest.raises(ValueError, match=r"training mode \(0\)"):
        PAIR_METHODS[method](model, images(), images())


@pytest.mark.parametrize(
    "run",
    [
        lambda model, x: explain_locations(model, "relu", x[0], [(0, 0)], FAST),
        lambda model, x: grad_cam(model, "relu", x, [0, 1]),
        lambda model, x: hires_cam(model, "relu", x, [0, 1]),
        lambda model, x: finer_cam(model, "relu", x, [0, 1]),
    ],
    ids=["FAME", "Grad-CAM", "HiResCAM", "Finer-CAM"],
)
def test_a_module_run_twice_per_forward_is_refused_by_name(run):
    model = SharedReLU().eval()
    with pytest.raises(LayerReusedError, match=r"layer 'relu' runs 2 times"):
        run(model, images())
    assert no_hooks(model)


@pytest.mark.parametrize(
    "run",
    [lambda model, x: explain_locations(model, "pair", x[0], [(0, 0)], FAST), lambda model, x: grad_cam(model, "pair", x, [0, 1])],
    ids=["FAME", "Grad-CAM"],
)
def test_a_layer_returning_a_tuple_is_refused_and_its_hook_removed(run):
    model = TupleLayerNet().eval()
    with pytest.raises(LayerOutputError, match=r"layer 'pair' returns a tuple"):
        run(model, images())
    assert no_hooks(model)


@pytest.mark.parametrize("method", CLASSIFIER_METHODS)
@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (-1, ValueError, r"≥ 0, got \[-1\]"),
        (True, TypeError, r"got True \(bool\)"),
        (1.9, TypeError, r"got 1\.9 \(float\)"),
        (5, ValueError, r"\[5\] are out of range: the model has 5 classes"),
    ],
    ids=["minus-one", "bool", "float", "out-of-range"],
)
def test_bad_class_indices_are_refused(method, bad, error, message):
    model = classifier()
    with pytest.raises(error, match=message):
        CLASSIFIER_METHODS[method](model, images(), [0, bad])
    assert no_hooks(model)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("method", CLASSIFIER_METHODS)
def test_non_finite_images_are_refused_by_classifier_methods(method, value):
    x = images()
    x[1, 0, 2, 2] = value
    with pytest.raises(ValueError, match="images contains NaN or infinite values"):
        CLASSIFIER_METHODS[method](classifier(), x, [0, 1])


@pytest.mark.parametrize("method", PAIR_METHODS)
def test_non_finite_images_are_refused_by_pair_methods(method):
    x = images()
    x[0, 1, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="contains NaN or infinite values"):
        PAIR_METHODS[method](embedder(), x, images())


@pytest.mark.parametrize("channels", [1, 4])
@pytest.mark.parametrize("method", CLASSIFIER_METHODS)
def test_wrong_channel_count_is_refused(method, channels):
    with pytest.raises(ValueError, match=rf"have {channels} channels but the model's first convolution takes 3"):
        CLASSIFIER_METHODS[method](classifier(), images(channels=channels), [0, 1])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
@pytest.mark.parametrize("method", {**CLASSIFIER_METHODS, **{f"pair-{k}": v for k, v in PAIR_METHODS.items()}})
def test_image_dtype_other_than_the_model_is_refused(method, dtype):
    if method.startswith("pair-"):
        run = lambda: PAIR_METHODS[method[5:]](embedder(), images().to(dtype), images().to(dtype))  # noqa: E731
    else:
        run = lambda: CLASSIFIER_METHODS[method](classifier(), images().to(dtype), [0, 1])  # noqa: E731
    with pytest.raises(ValueError, match=rf"are {dtype} but the model's parameters are torch\.float32"):
        run()


@pytest.mark.parametrize("method", CLASSIFIER_METHODS)
def test_device_mismatch_names_both_devices(method):
    model = classifier().to("meta")
    with pytest.raises(ValueError, match=r"images are on cpu but the model is on meta"):
        CLASSIFIER_METHODS[method](model, images(), [0, 1])


def test_fame_under_no_grad_equals_the_normal_run():
    model, x = classifier(), images()
    expected = explain_class(model, x, [0, 3], FAST)
    expected_locations = explain_locations(model, "2", x[0], [(1, 2)], FAST)
    with torch.no_grad():
        got = explain_class(model, x, [0, 3], FAST)
        got_locations = explain_locations(model, "2", x[0], [(1, 2)], FAST)
    assert expected.abs().sum() > 0
    assert torch.equal(got, expected) and torch.equal(got_locations, expected_locations)


def test_optimize_under_no_grad_equals_the_normal_run():
    model, x = classifier(), images()
    loss = class_loss(model, [0, 3])
    expected = optimize(x, loss, FAST)
    with torch.no_grad():
        got = optimize(x, loss, FAST)
    assert not torch.equal(expected, x)
    assert torch.equal(got, expected)


@pytest.mark.parametrize(
    ("locations", "message"),
    [((1, 2), r"bare pair \(1, 2\); wrap it in a list: \[\(1, 2\)\]"), ([(1.9, 0.2)], r"got 1\.9 \(float\)"), ([(True, 0)], r"got True")],
    ids=["bare-pair", "floats", "bool"],
)
def test_locations_are_never_truncated(locations, message):
    with pytest.raises(TypeError, match=message):
        explain_locations(classifier(), "2", images()[0], locations, FAST)


def recorded_classifier() -> tuple[nn.Module, Recorder]:
    """The classifier with a call counter in front, to prove no forward ran."""
    recorder = Recorder()
    return nn.Sequential(recorder, *classifier()).eval(), recorder


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (FameConfig(iterations=0), r"iterations must be an int ≥ 1"),
        (FameConfig(iterations=3, blur_kernel=49), r"blur kernel 49 is too large for a 8x8 image"),
    ],
    ids=["zero-iterations", "blur-too-large"],
)
def test_config_errors_come_before_any_forward(config, message):
    model, recorder = recorded_classifier()
    with pytest.raises(ValueError, match=message):
        explain_class(model, images(), [0, 1], config)
    with pytest.raises(ValueError, match=message):
        explain_locations(model, "3", images()[0], [(0, 0)], config)
    with pytest.raises(ValueError, match=message):
        explain_verification(model, images(), images(), config)
    assert recorder.calls == 0


def test_negative_iterations_are_refused_by_the_config():
    with pytest.raises(ValueError, match=r"iterations must be an int >= 0, got -1"):
        FameConfig(iterations=-1)


def test_an_unknown_layer_is_refused_before_any_forward():
    model, recorder = recorded_classifier()
    with pytest.raises(ValueError, match=r"unknown layer 'layer4'"):
        explain_locations(model, "layer4", images()[0], [(0, 0)], FAST)
    with pytest.raises(ValueError, match=r"unknown layer 'layer4'"):
        grad_cam(model, "layer4", images(), [0, 1])
    assert recorder.calls == 0


def test_eer_threshold_refuses_distances_and_accepts_their_negation():
    distances = np.array([0.2, 0.3, 0.25, 0.9, 1.1, 0.8])
    labels = np.array([1, 1, 1, 0, 0, 0])
    with pytest.raises(ValueError, match=r"scores look like distances.*P\(genuine > impostor\) = 0\.00.*negate distances"):
        eer_threshold(distances, labels)
    threshold, eer = eer_threshold(-distances, labels)
    assert eer == 0.0 and threshold == -0.3


@pytest.mark.parametrize("tau", [float("nan"), -0.1, 1.5])
def test_iou_refuses_a_threshold_outside_the_unit_interval(tau):
    with pytest.raises(ValueError, match=r"threshold τ must be a number in \[0, 1\]"):
        iou(np.ones((4, 4)), (0, 0, 2, 2), tau)


@pytest.mark.parametrize("method", CLASSIFIER_METHODS)
def test_classifier_methods_need_one_class_per_image(method):
    with pytest.raises(ValueError, match=r"batch has 2 .* but 3 .* were given; pass exactly one per"):
        CLASSIFIER_METHODS[method](classifier(), images(), [0, 1, 2])


@pytest.mark.parametrize("method", PAIR_METHODS)
def test_pair_methods_need_one_reference_per_image(method):
    with pytest.raises(ValueError, match=r"reference"):
        PAIR_METHODS[method](embedder(), images(batch=3), images(batch=2))


@pytest.mark.parametrize("name", available_models())
def test_every_stage_and_cam_layer_of_the_shipped_networks_runs_once(name):
    spec = load_model(name, weights=None, device="cpu")
    spec.module.to("meta")
    x = torch.zeros(1, 3, spec.input_size, spec.input_size, device="meta")
    for layer in [*spec.stages, spec.target_layer]:
        output, _ = probe_layer(spec.module, layer, x)
        assert output.ndim == 4, (name, layer)
    assert no_hooks(spec.module)
