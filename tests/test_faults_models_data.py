"""Faults and bad inputs at the model and data boundary: each gets a named error that names the file.

Every fault file is built in ``tmp_path`` (random bytes, truncated archives, pickles with side effects,
odd image modes); none of the paper's networks or datasets is needed.
"""

from __future__ import annotations

import argparse
import codecs
import io
import os
import shutil
import warnings

import h5py
import numpy as np
import pytest
import tifffile
import torch
from onnx import TensorProto, helper
from PIL import Image

from fame_utils.data import (
    TEMPLATES,
    AlignmentError,
    FaceNotFoundError,
    ImageLoadError,
    ProtocolError,
    align_face,
    align_to_template,
    detect_faces,
    load_crop,
    load_image,
    read_face_protocol,
    to_rgb,
)
from fame_utils.models import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointTrustWarning,
    DeviceError,
    load_model,
    optional_models,
)
from fame_utils.models.checkpoints import clear_checkpoint_cache, load_torch_checkpoint
from fame_utils.models.dlib_resnet import read_dlib_dat
from fame_utils.runtime import resolve_device


@pytest.fixture(autouse=True)
def _cold_cache():
    clear_checkpoint_cache()
    yield
    clear_checkpoint_cache()


def _torch_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _tiny_onnx_bytes() -> bytes:
    """A valid ONNX model with one initializer (none of SFace's tensors)."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    node = helper.make_node("Add", ["x", "w"], ["y"])
    graph = helper.make_graph(
        [node], "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weight],
    )
    return helper.make_model(graph).SerializeToString()


def _dlib_header_bytes() -> bytes:
    """The start of a dlib network file cut inside the input layer's fields."""
    name = b"input_rgb_image_sized"
    return b"\x01" + bytes([len(name)]) + name + b"\x08\x01"


_STATE = {"w": torch.arange(6.0).view(2, 3)}
_RANDOM = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()

# (network, file name, bytes, words the message must contain besides the file name)
CORRUPT_FILES = [
    ("efficientnet_lite0", "random.pth", _RANDOM, "corrupt or truncated"),
    ("efficientnet_lite0", "truncated.pth", _torch_bytes(_STATE)[:300], "corrupt or truncated"),
    ("resnet34", "empty.pth", b"", "empty"),
    ("resnet34", "text.pth", b"not a checkpoint\n", "corrupt or truncated"),
    ("iresnet18", "truncated.ckpt", _torch_bytes({"state_dict": _STATE})[:-200], "corrupt or truncated"),
    ("sface", "random.onnx", _RANDOM, "corrupt or truncated"),
    ("sface", "truncated.onnx", _tiny_onnx_bytes()[:-7], "corrupt or truncated"),
    ("sface", "other_model.onnx", _tiny_onnx_bytes(), "lacks"),
    ("dlib_resnet", "random.dat", _RANDOM, "expected the input layer first"),
    ("dlib_resnet", "truncated.dat", _dlib_header_bytes(), "corrupt or truncated near byte"),
]


# ---------------------------------------------------------------- corrupt checkpoints of every family


@pytest.mark.parametrize("name, filename, content, words", CORRUPT_FILES, ids=[f"{n}-{f}" for n, f, _, _ in CORRUPT_FILES])
def test_corrupt_weights_of_every_family_raise_checkpoint_error_naming_the_file(tmp_path, name, filename, content, words):
    path = tmp_path / filename
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load_model(name, weights=path, device="cpu")
    message = str(error.value)
    assert str(path) in message and words in message
    assert isinstance(error.value, ValueError)


def test_a_checkpoint_holding_a_list_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointMismatchError, match="holds a list, not a state_dict"):
        load_model("resnet34", weights=path)


def test_a_lightning_checkpoint_given_to_a_classifier_lists_its_non_tensor_values(tmp_path):
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": _STATE, "epoch": 3}, path)
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(2\): epoch, state_dict"):
        load_model("resnet34", weights=path)


# ---------------------------------------------------------------- trust: no unpickling without consent


class _MakesDirectory:
    """Unpickling this object creates a directory (a visible stand-in for arbitrary code)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_a_pickle_with_code_is_refused_by_default_and_nothing_runs(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "payload": _MakesDirectory(str(marker))}, path)
    with pytest.raises(CheckpointError) as error:
        load_model("iresnet18", weights=path)
    assert not marker.exists()
    message = str(error.value)
    assert str(path) in message and "posix.mkdir" in message and "trust_checkpoint=True" in message


def test_a_trusted_pickle_is_unpickled_with_a_warning(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "trusted.pth"
    torch.save({"payload": _MakesDirectory(str(marker))}, path)
    with pytest.warns(CheckpointTrustWarning, match="trusted.pth"):
        loaded = load_torch_checkpoint(path, trust_checkpoint=True)
    assert marker.is_dir() and set(loaded) == {"payload"}


def test_lightning_checkpoint_with_hyper_parameters_needs_trust_then_loads(tmp_path):
    reference = load_model("iresnet18", weights=None, device="cpu").module
    state = {f"model.{k}": v + 0.5 if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    path = tmp_path / "adaface_ir18.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(CheckpointError, match=r"argparse\.Namespace.*trust_checkpoint=True"):
        load_model("iresnet18", weights=path)
    with pytest.warns(CheckpointTrustWarning):
        spec = load_model("iresnet18", weights=path, device="cpu", trust_checkpoint=True)
    assert all(torch.equal(tensor, state[f"model.{key}"]) for key, tensor in spec.module.state_dict().items())


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip-format", "old-format"])
def test_the_refusal_names_the_objects_the_file_would_import(tmp_path, zip_format):
    path = tmp_path / "hyper.ckpt"
    torch.save({"hyper_parameters": argparse.Namespace(lr=0.1)}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(CheckpointError, match=r"pickles Python objects besides tensors \(argparse\.Namespace\)"):
        load_torch_checkpoint(path)
    with pytest.warns(CheckpointTrustWarning):
        assert load_torch_checkpoint(path, trust_checkpoint=True)["hyper_parameters"].lr == 0.1


def test_a_tensors_only_checkpoint_loads_without_any_warning(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(_STATE, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = load_torch_checkpoint(path, trust_checkpoint=True)
    assert torch.equal(loaded["w"], _STATE["w"])


def test_an_untrusted_lightning_checkpoint_is_skipped_with_its_reason(tmp_path):
    path = tmp_path / "iresnet18.ckpt"
    torch.save({"state_dict": _STATE, "hyper_parameters": argparse.Namespace(lr=0.1)}, path)
    specs, skipped = optional_models({"iresnet18": path}, device="cpu")
    assert specs == {} and len(skipped) == 1
    assert skipped[0].startswith("iresnet18: skipped (CheckpointError: ") and "trust_checkpoint=True" in skipped[0]


def test_trust_checkpoint_must_be_a_bool():
    with pytest.raises(TypeError, match="trust_checkpoint must be True or False"):
        load_model("sface", weights=None, trust_checkpoint="yes")


# ---------------------------------------------------------------- the cache: keyed on content, hands out copies


def test_a_replaced_file_with_the_same_mtime_serves_the_new_weights(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(3)}, path)
    stamp = path.stat().st_mtime_ns
    assert torch.equal(load_torch_checkpoint(path)["w"], torch.zeros(3))
    torch.save({"w": torch.ones(3)}, path)
    os.utime(path, ns=(stamp, stamp))
    assert path.stat().st_mtime_ns == stamp
    assert torch.equal(load_torch_checkpoint(path)["w"], torch.ones(3))


def test_mutating_a_loaded_checkpoint_does_not_reach_the_next_caller(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(3)}, path)
    first = load_torch_checkpoint(path)
    first["w"].add_(5.0)
    first["extra"] = torch.ones(1)
    second = load_torch_checkpoint(path)
    assert set(second) == {"w"} and torch.equal(second["w"], torch.zeros(3))


def test_the_same_bytes_under_another_name_are_parsed_once(tmp_path, monkeypatch):
    from fame_utils.models import checkpoints

    calls = []
    real_parse = checkpoints._parse_torch
    monkeypatch.setattr(checkpoints, "_parse_torch", lambda *args, **kwargs: calls.append(args[1]) or real_parse(*args, **kwargs))
    torch.save(_STATE, tmp_path / "a.pth")
    shutil.copy(tmp_path / "a.pth", tmp_path / "b.pth")
    first, second = load_torch_checkpoint(tmp_path / "a.pth"), load_torch_checkpoint(tmp_path / "b.pth")
    assert calls == [tmp_path / "a.pth"] and torch.equal(first["w"], second["w"])


def test_dlib_reader_hands_out_copies(tmp_path):
    name = b"affine_"
    # tensor version 2, shape (4, 1, 1, 1) as one-byte integers, then four little-endian float32 values
    tensor = bytes([1, 2]) + bytes([1, 4, 1, 1, 1, 1, 1, 1]) + np.array([1, 2, 3, 4], "<f4").tobytes()
    path = tmp_path / "one_affine.dat"
    path.write_bytes(b"\x01" + bytes([len(name)]) + name + tensor)
    first = read_dlib_dat(path)
    assert first[0].kind == "affine_" and first[0].params.tolist() == [1.0, 2.0, 3.0, 4.0]
    first[0].params[:] = 0.0
    assert read_dlib_dat(path)[0].params.tolist() == [1.0, 2.0, 3.0, 4.0]


# ---------------------------------------------------------------- devices


@pytest.mark.parametrize("device", ["gpu", "GPU", "cuda0", "cuda:x", "tpu", ""])
def test_unknown_device_strings_list_the_valid_choices(device):
    with pytest.raises(DeviceError) as error:
        load_model("sface", weights=None, device=device)
    message = str(error.value)
    assert repr(device) in message and all(choice in message for choice in ("'auto'", "'cpu'", "'cuda'", "'cuda:N'", "'mps'"))


def test_a_device_that_is_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="device must be a string or a torch.device"):
        resolve_device(0)


def test_a_cuda_index_beyond_the_devices_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match=r"only 2 CUDA device\(s\)"):
        resolve_device("cuda:2")


def test_unavailable_accelerators_are_refused_also_as_torch_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device(torch.device("cuda"))
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


# ---------------------------------------------------------------- images: what converts


def _grey_ramp() -> np.ndarray:
    """40×64 grey image holding every 8-bit value 0…255 (repeated)."""
    return (np.arange(40 * 64) % 256).astype(np.uint8).reshape(40, 64)


def test_float32_tiff_in_unit_range_scales_to_8_bit_instead_of_loading_black(tmp_path):
    grey = _grey_ramp()
    path = tmp_path / "float.tif"
    Image.fromarray(grey.astype(np.float32) / 255.0, mode="F").save(path)
    loaded = np.asarray(load_image(path))
    assert loaded.shape == (40, 64, 3) and np.array_equal(loaded[..., 0], grey) and np.array_equal(loaded[..., 2], grey)


def test_two_channel_grey_with_alpha_is_composited_on_white(tmp_path):
    grey = _grey_ramp()
    alpha = np.zeros_like(grey)
    alpha[:20] = 255
    path = tmp_path / "grey_alpha.png"
    Image.fromarray(np.dstack([grey, alpha]), mode="LA").save(path)
    loaded = np.asarray(load_image(path))
    assert np.array_equal(loaded[:20, :, 1], grey[:20]) and (loaded[20:] == 255).all()


def test_four_channel_tiffs_rgba_and_cmyk_convert(tmp_path):
    rgba = np.zeros((40, 64, 4), np.uint8)
    rgba[..., 0], rgba[:20, :, 3] = 200, 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.tif")
    loaded = np.asarray(load_image(tmp_path / "rgba.tif"))
    assert (loaded[:20] == (200, 0, 0)).all() and (loaded[20:] == 255).all()
    cmyk = np.zeros((40, 64, 4), np.uint8)
    cmyk[:20, :, 0] = 255  # pure cyan on the top half, paper white below
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "cmyk.tif")
    loaded = np.asarray(load_image(tmp_path / "cmyk.tif"))
    assert (loaded[:20] == (0, 255, 255)).all() and (loaded[20:] == 255).all()


def test_sixteen_bit_rgb_tiff_keeps_the_high_byte(tmp_path):
    grey = _grey_ramp().astype(np.uint16) * 257
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, np.dstack([grey, grey // 2, grey // 4]), photometric="rgb")
    loaded = np.asarray(load_image(path))
    assert np.array_equal(loaded[..., 0], _grey_ramp())


# ---------------------------------------------------------------- images: what is refused, by name


@pytest.mark.parametrize(
    "values, words",
    [(np.full((40, 64), 200.0), r"span \[200, 200\], outside \[0, 1\]"), (np.full((40, 64), np.nan), "NaN or infinite")],
    ids=["float-0-255", "float-nan"],
)
def test_float_tiff_without_an_8_bit_meaning_is_refused(tmp_path, values, words):
    path = tmp_path / "float.tif"
    Image.fromarray(values.astype(np.float32), mode="F").save(path)
    with pytest.raises(ImageLoadError, match=words) as error:
        load_image(path)
    assert str(path) in str(error.value) and "rescale it to [0, 1]" in str(error.value)


@pytest.mark.parametrize("dtype, channels", [(np.float64, 1), (np.float16, 1), (np.float32, 3)])
def test_tiffs_pillow_cannot_decode_are_named_not_called_unknown(tmp_path, dtype, channels):
    path = tmp_path / "samples.tif"
    shape = (40, 64) if channels == 1 else (40, 64, channels)
    tifffile.imwrite(path, np.full(shape, 0.5, dtype), photometric="minisblack" if channels == 1 else "rgb")
    with pytest.raises(ImageLoadError, match="a TIFF whose samples Pillow cannot decode") as error:
        load_image(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("limit", [1000, 2000], ids=["above-twice-the-limit-error", "above-the-limit-warning"])
def test_a_decompression_bomb_names_the_file_and_the_limit(tmp_path, monkeypatch, limit):
    path = tmp_path / "bomb.png"
    Image.fromarray(_grey_ramp()).save(path)  # 2560 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with pytest.raises(ImageLoadError, match=f"MAX_IMAGE_PIXELS = {limit} pixels") as error:
        load_image(path)
    assert str(path) in str(error.value)


def _encoded(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([_grey_ramp()] * 3)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "filename, damage",
    [
        ("cut.jpg", lambda data: data[: len(data) // 2]),
        ("cut.tif", lambda data: data[: len(data) // 2]),
        ("crc.png", lambda data: data[:60] + bytes(b ^ 0xFF for b in data[60:70]) + data[70:]),
    ],
)
def test_truncated_or_corrupt_files_name_the_file(tmp_path, filename, damage):
    path = tmp_path / filename
    path.write_bytes(damage(_encoded({"jpg": "JPEG", "tif": "TIFF", "png": "PNG"}[filename[-3:]])))
    with pytest.raises(ImageLoadError, match="truncated or corrupt") as error:
        load_image(path)
    assert str(path) in str(error.value)


def test_image_inputs_of_the_wrong_type_are_type_errors():
    with pytest.raises(TypeError, match="path must be a str or pathlib.Path"):
        load_image(np.zeros((40, 40, 3)))
    with pytest.raises(TypeError, match="expected a PIL image, got ndarray"):
        to_rgb(np.zeros((40, 40, 3)))


# ---------------------------------------------------------------- face alignment


@pytest.mark.parametrize("size", [(1, 1), (19, 64), (64, 12)])
def test_align_face_on_a_tiny_image_names_the_size_limit(size):
    with pytest.raises(FaceNotFoundError, match=f"{size[0]}x{size[1]} image is too small .* at least 20 px"):
        align_face(Image.new("RGB", size, (128, 128, 128)))


def test_detect_faces_on_a_tiny_image_finds_none():
    assert detect_faces(Image.new("RGB", (12, 12))) == []


@pytest.mark.parametrize(
    "corrupt, words",
    [
        (lambda points: points.__setitem__((0, 0), np.nan), "NaN or infinite coordinates at: left eye"),
        (lambda points: points.__setitem__((4, 1), np.inf), "NaN or infinite coordinates at: right mouth corner"),
        (lambda points: points.__setitem__(slice(None), 7.0), "the five points must be distinct"),
    ],
    ids=["nan", "inf", "one-point"],
)
def test_bad_landmarks_raise_alignment_error(corrupt, words):
    points = TEMPLATES[112].copy()
    corrupt(points)
    with pytest.raises(AlignmentError, match=words):
        align_to_template(Image.new("RGB", (112, 112)), points)


def test_aligning_an_empty_image_is_refused():
    with pytest.raises(AlignmentError, match="empty 0x0 image"):
        align_to_template(Image.new("RGB", (0, 0)), TEMPLATES[112])


# ---------------------------------------------------------------- protocol CSVs and HDF5 crops

PROTOCOL_TEXT = "G,P,T\ns1/é.png,s1/b.png,1\ns1/é.png,s2/b.png,0\n"
PROTOCOL_ROWS = [(2, "s1/é.png", "s1/b.png", True), (3, "s1/é.png", "s2/b.png", False)]


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-be-bom"])
def test_protocol_csv_reads_utf8_and_utf16_with_a_byte_order_mark(tmp_path, encoding):
    path = tmp_path / "scarf.csv"
    if encoding == "utf-16-be-bom":
        path.write_bytes(codecs.BOM_UTF16_BE + PROTOCOL_TEXT.encode("utf-16-be"))
    else:
        path.write_bytes(PROTOCOL_TEXT.encode(encoding))
    assert read_face_protocol(path) == PROTOCOL_ROWS


@pytest.mark.parametrize(
    "content, words",
    [
        (PROTOCOL_TEXT.encode("latin-1"), r"line 2: byte b'\\xe9' is not valid UTF-8; save the file as UTF-8"),
        (PROTOCOL_TEXT.encode("utf-16-le"), "line 1: NUL bytes, as in UTF-16 without a byte-order mark"),
        (b"gallery,probe,label\na,b,1\n", r"line 1: missing column\(s\) G, P, T.*\(unknown: gallery, probe, label\)"),
        (b"G,P\na,b\n", r"line 1: missing column\(s\) T"),
        (b"G,P,T,G\na,b,1,c\n", "line 1: column.s. G appear more than once"),
        (b"G,P,T\na,b,1\na,,0\n", "line 3: every row needs a gallery path G and a probe path P"),
    ],
    ids=["latin-1", "utf-16-without-bom", "unknown-columns", "missing-column", "duplicate-column", "empty-probe"],
)
def test_bad_protocol_csvs_name_the_file_the_line_and_what_is_expected(tmp_path, content, words):
    path = tmp_path / "glass.csv"
    path.write_bytes(content)
    with pytest.raises(ProtocolError, match=words) as error:
        read_face_protocol(path)
    assert str(error.value).startswith(f"{path}, line ")


def test_protocol_ignores_extra_columns_and_header_spaces(tmp_path):
    path = tmp_path / "frontal.csv"
    path.write_text(",G, P ,T,identity\n0,a.png,b.png,1,s1\n")
    assert read_face_protocol(path) == [(2, "a.png", "b.png", True)]


def _hdf5_crop(path) -> None:
    with h5py.File(path, "w") as handle:
        handle["data"] = np.zeros((112, 112, 3), np.uint8)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda path: None, "HDF5 crop not found"),
        (lambda path: path.write_bytes(_RANDOM), "not a readable HDF5 file"),
        (lambda path: (_hdf5_crop(path), path.write_bytes(path.read_bytes()[:2000])), "not a readable HDF5 file"),
    ],
    ids=["missing", "random-bytes", "truncated"],
)
def test_bad_hdf5_crops_raise_image_load_error_naming_the_file(tmp_path, make, words):
    path = tmp_path / "s1_neutral.h5"
    make(path)
    with pytest.raises(ImageLoadError, match=words) as error:
        load_crop(path)
    assert str(path) in str(error.value)
