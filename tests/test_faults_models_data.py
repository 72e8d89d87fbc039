"""Faults and bad inputs at the model and data boundary: each gets a named error that names the file.

Every fault file is built in ``tmp_path`` (random bytes, truncated archives, pickles with side effects,
odd image modes); none of the paper's networks or datasets is needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper

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
    import io

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


def test_a_checkpoint_holding_a_module_is_not_a_state_dict(tmp_path):
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
