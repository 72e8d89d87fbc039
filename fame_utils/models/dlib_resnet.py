"""dlib's face-recognition ResNet-29 (150×150 → 128-D) as a PyTorch module, with a reader for dlib's ``.dat``.

The weights are ``face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat`` (CC0);
the package is located through its import spec and never imported (it needs ``pkg_resources``).

Architecture (input side first): ``stem`` = conv 7×7/2 valid (with bias) → affine → ReLU → max-pool
3×3/2; residual blocks ``conv32_1..3``, ``conv64_down``, ``conv64_1..3``, ``conv128_down``,
``conv128_1..2``, ``conv256_down``, ``conv256_1..2``, ``conv256_down_out``; global average pool →
``fc`` (256 → 128, no bias). "affine" is dlib's per-channel y = γ·x + β (a frozen batch norm).
Feature maps at 150: 32×35×35, 64×17×17, 128×8×8, 256×4×4, 256×2×2.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import read_weights_file
from .spec import FacePreprocess, ModelSpec
from .weights import INSTALL_HINT, RANDOM_SOURCE, CheckpointError, load_state_dict_strict, seeded_init, weights_file, weights_label

__all__ = ["DlibResNet", "DlibLayer", "read_dlib_dat", "build_dlib_resnet", "DLIB_FILE", "DlibFormatError"]

DLIB_FILE = "models/dlib_face_recognition_resnet_model_v1.dat"
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)
# (block name, input channels, output channels, downsampling?)
_BLOCKS = (
    [(f"conv32_{i}", 32, 32, False) for i in (1, 2, 3)]
    + [("conv64_down", 32, 64, True)]
    + [(f"conv64_{i}", 64, 64, False) for i in (1, 2, 3)]
    + [("conv128_down", 64, 128, True)]
    + [(f"conv128_{i}", 128, 128, False) for i in (1, 2)]
    + [("conv256_down", 128, 256, True)]
    + [(f"conv256_{i}", 256, 256, False) for i in (1, 2)]
    + [("conv256_down_out", 256, 256, True)]
)
_LAYER_NAMES = ("input_rgb_image_sized", "con_4", "affine_", "fc_2")


class DlibFormatError(CheckpointError):
    """The ``.dat`` file is corrupt, truncated, or does not hold the expected dlib ResNet-29."""


class ChannelAffine(nn.Module):
    """dlib's ``affine`` layer: y = γ_c·x + β_c per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class ResidualBlock(nn.Module):
    """Two conv+affine layers with a shortcut; dlib's ``residual`` or ``residual_down`` semantics.

    Down blocks: the first conv has stride 2 and no padding; the shortcut is a 2×2 average pool
    (stride 2) of the input, zero-padded in channels; a spatially smaller branch is zero-padded at the
    bottom and right to the shortcut's size (dlib adds tensors as if the smaller one were zero outside).
    """

    def __init__(self, c_in: int, c_out: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        stride, padding = (2, 0) if downsample else (1, 1)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding)
        self.scale1 = ChannelAffine(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.scale2 = ChannelAffine(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = self.scale2(self.conv2(F.relu(self.scale1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        extra_channels = branch.shape[1] - shortcut.shape[1]
        if extra_channels > 0:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, extra_channels))
        pad_h, pad_w = shortcut.shape[2] - branch.shape[2], shortcut.shape[3] - branch.shape[3]
        if pad_h > 0 or pad_w > 0:
            branch = F.pad(branch, (0, pad_w, 0, pad_h))
        return F.relu(branch + shortcut)


class DlibResNet(nn.Module):
    """dlib ResNet-29 on [0, 1] RGB 150×150 face chips.

    ``forward`` first applies dlib's input scaling (255·x − mean_rgb)/256, so the input tensor is the
    [0, 1] RGB chip. Returns the 128-D embedding (compare with L2 distance, threshold 0.6).
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1))
        self.stem = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(3, 32, 7, 2, 0), scale=ChannelAffine(32), relu=nn.ReLU(), pool=nn.MaxPool2d(3, 2))
        )
        for name, c_in, c_out, downsample in _BLOCKS:
            self.add_module(name, ResidualBlock(c_in, c_out, downsample))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, 128, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem((x * 255.0 - self.mean_rgb) / 256.0)
        for name, *_ in _BLOCKS:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.pool(x), 1))


@dataclass(frozen=True)
class DlibLayer:
    """One parameterised layer read from a ``.dat`` file."""

    kind: str
    params: np.ndarray
    fields: tuple[float, ...] = ()


class _Reader:
    """Sequential reader of dlib's serialisation (integers, floats, strings, tensors)."""

    def __init__(self, data: bytes, position: int) -> None:
        self.data, self.position = data, position

    def integer(self) -> int:
        control = self.data[self.position]
        size = control & 0x0F
        start = self.position + 1
        magnitude = int.from_bytes(self.data[start : start + size], "little")
        self.position = start + size
        return -magnitude if control & 0x80 else magnitude

    def real(self) -> float:
        mantissa = self.integer()
        return float(mantissa) * 2.0 ** self.integer()

    def string(self) -> str:
        length = self.integer()
        text = self.data[self.position : self.position + length].decode("ascii")
        self.position += length
        return text

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise DlibFormatError(f"unsupported dlib tensor version {version} at byte {self.position}")
        shape = [self.integer() for _ in range(4)]
        if min(shape) < 0:
            raise DlibFormatError(f"negative tensor dimension {shape} at byte {self.position}")
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.position).astype(np.float32)
        self.position += 4 * count
        return values


_LAYER_HEADER = re.compile(rb"\x01(" + b"|".join(re.escape(bytes([len(n)]) + n.encode()) for n in _LAYER_NAMES) + b")")


def _next_layer(data: bytes, start: int) -> int | None:
    """Position of the next layer header (0x01, name length, name) at or after ``start``."""
    match = _LAYER_HEADER.search(data, start)
    return match.start() if match else None


def read_dlib_dat(path: str | Path) -> tuple[DlibLayer, ...]:
    """Parameterised layers of a dlib network file in file order (input side first; cached by content).

    ``input_rgb_image_sized`` fields: mean R, G, B, rows, cols. ``con_4``: num_filters, rows, cols,
    stride_y, stride_x, pad_y, pad_x (params = filters O·I·H·W then biases). ``affine_``: params =
    γ then β. ``fc_2``: num_outputs, num_inputs (params = W as [inputs, outputs]).

    Raises:
        WeightsNotAvailableError: ``path`` does not exist.
        DlibFormatError: the file is empty, truncated or corrupt (the byte offset is named).
    """
    return read_weights_file(path, _parse_dlib_dat, "dlib dat", "dlib .dat file")


def _parse_dlib_dat(data: bytes, path: Path) -> tuple[DlibLayer, ...]:
    layers: list[DlibLayer] = []
    position = 0
    while (hit := _next_layer(data, position)) is not None:
        reader = _Reader(data, hit)
        try:
            layers.append(_read_layer(reader))
        except (DlibFormatError, IndexError, ValueError, OverflowError) as error:
            raise DlibFormatError(
                f"dlib .dat file {path} is corrupt or truncated near byte {reader.position} ({error}); copy it again "
                f"(for the shipped file, reinstall face_recognition_models: {INSTALL_HINT})."
            ) from error
        position = reader.position
    return tuple(layers)


def _read_layer(reader: _Reader) -> DlibLayer:
    kind = reader.string()
    if kind == "input_rgb_image_sized":
        fields = (reader.real(), reader.real(), reader.real(), reader.integer(), reader.integer())
        return DlibLayer(kind, np.zeros(0, np.float32), fields)
    if kind == "con_4":
        params = reader.tensor()
        return DlibLayer(kind, params, tuple(reader.integer() for _ in range(7)))
    if kind == "affine_":
        return DlibLayer(kind, reader.tensor())
    fields = (reader.integer(), reader.integer())
    return DlibLayer(kind, reader.tensor(), fields)


def _conv_names() -> list[str]:
    return ["stem.conv"] + [f"{block}.conv{i}" for block, *_ in _BLOCKS for i in (1, 2)]


def _affine_names() -> list[str]:
    return ["stem.scale"] + [f"{block}.scale{i}" for block, *_ in _BLOCKS for i in (1, 2)]


def dlib_state_dict(layers: tuple[DlibLayer, ...], module: DlibResNet, origin: str) -> dict[str, torch.Tensor]:
    """Map the layers of a ``.dat`` file to :class:`DlibResNet` parameters, checking shapes and strides.

    Raises:
        DlibFormatError: wrong layer counts, a first layer that is not the input layer, a conv whose
            filter shape, stride or padding differs from the plan, or a layer with the wrong number of values.
    """
    kinds = [layer.kind for layer in layers]
    counts = {kind: kinds.count(kind) for kind in _LAYER_NAMES}
    if not kinds or kinds[0] != "input_rgb_image_sized" or counts != {"input_rgb_image_sized": 1, "con_4": 29, "affine_": 29, "fc_2": 1}:
        raise DlibFormatError(
            f"{origin}: expected the input layer first, then 29 con_4, 29 affine_ and 1 fc_2 layers; found {counts}. "
            "The file is corrupt or not dlib's dlib_face_recognition_resnet_model_v1.dat: copy it again."
        )
    expected = module.state_dict()
    mean_r, mean_g, mean_b, rows, cols = layers[0].fields
    state = {"mean_rgb": torch.tensor([mean_r, mean_g, mean_b], dtype=torch.float32).view(1, 3, 1, 1)}
    convs = [layer for layer in layers if layer.kind == "con_4"]
    for name, layer in zip(_conv_names(), convs):
        conv = module.get_submodule(name)
        filters, kernel_h, kernel_w, stride_y, stride_x, pad_y, pad_x = layer.fields
        plan = (conv.out_channels, *conv.kernel_size, *conv.stride, *conv.padding)
        if (filters, kernel_h, kernel_w, stride_y, stride_x, pad_y, pad_x) != plan:
            raise DlibFormatError(f"{origin}: conv {name} is {layer.fields} (filters, kh, kw, stride, pad), the plan says {plan}")
        shape = expected[f"{name}.weight"].shape
        params = _values(layer, shape.numel() + filters, f"conv {name}", origin)
        state[f"{name}.weight"] = torch.from_numpy(params[: shape.numel()].reshape(shape).copy())
        state[f"{name}.bias"] = torch.from_numpy(params[shape.numel() :].copy())
    affines = [layer for layer in layers if layer.kind == "affine_"]
    for name, layer in zip(_affine_names(), affines):
        gamma, beta = np.split(_values(layer, 2 * expected[f"{name}.weight"].numel(), f"affine {name}", origin), 2)
        state[f"{name}.weight"], state[f"{name}.bias"] = torch.from_numpy(gamma.copy()), torch.from_numpy(beta.copy())
    fc = next(layer for layer in layers if layer.kind == "fc_2")
    outputs, inputs = expected["fc.weight"].shape
    if fc.fields != (outputs, inputs):
        raise DlibFormatError(f"{origin}: fc_2 is {fc.fields} (outputs, inputs), the plan says {(outputs, inputs)}")
    state["fc.weight"] = torch.from_numpy(_values(fc, inputs * outputs, "fc_2", origin).reshape(inputs, outputs).T.copy())
    return state


def _values(layer: DlibLayer, count: int, what: str, origin: str) -> np.ndarray:
    """The parameters of ``layer``, which must hold exactly ``count`` values."""
    if layer.params.size != count:
        raise DlibFormatError(f"{origin}: {what} holds {layer.params.size} values, the plan needs {count}")
    return layer.params


def build_dlib_resnet(name: str, weights: str | None, trust_checkpoint: bool = False) -> ModelSpec:
    """Build the dlib ResNet-29 with ``weights`` = ``"shipped"``, a ``.dat`` path, or ``None`` (seeded random).

    ``trust_checkpoint`` has no effect: ``.dat`` files are parsed, never unpickled.
    """
    with seeded_init():
        module = DlibResNet()
    if weights is None:
        source = dict(RANDOM_SOURCE)
    else:
        path, source = weights_file(weights, "face_recognition_models", DLIB_FILE, "face_recognition_models==0.3.0", {"package": "face_recognition_models==0.3.0", "file": f"face_recognition_models/{DLIB_FILE}", "licence": "CC0-1.0"})
        origin = f"dlib .dat file {path}"
        load_state_dict_strict(module, dlib_state_dict(read_dlib_dat(path), module, origin), origin)
    return ModelSpec(
        name=name,
        module=module,
        preprocess=FacePreprocess(size=150),
        task="verification",
        input_size=150,
        target_layer="conv256_2",
        stages=["stem", "conv32_3", "conv64_3", "conv128_2", "conv256_2", "conv256_down_out"],
        class_names=None,
        source=source,
        input_space="[0, 1] RGB 150×150 face chip (dlib chip, padding 0.25); the module computes (255·x − mean_rgb)/256",
        similarity="l2",
        weights=weights_label(weights),
    )
