"""AdaFace-style IResNet-18/50/101 (112×112 → 512-D), for user-provided AdaFace checkpoints.

Layout (parameter names match AdaFace Lightning checkpoints after stripping ``model.``):
``input_layer`` = conv 3×3/1 (64, no bias) → BN → PReLU; ``body`` = a flat sequence of BasicBlockIR
units in four stages of widths 64, 128, 256, 512, the first unit of each stage with stride 2
(units per stage: 18 → 2-2-2-2, 50 → 3-4-14-3, 101 → 3-13-30-3); ``output_layer`` = BN2d(512) →
Dropout(0.4) → Flatten → Linear(512·7·7 → 512) → BN1d(512, affine=False).
BasicBlockIR: residual = BN → conv 3×3/1 → BN → PReLU → conv 3×3/stride → BN; shortcut = identity
(max-pool 1×1 with the stride) when widths agree, else conv 1×1/stride + BN; output = residual + shortcut.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .checkpoints import load_torch_checkpoint
from .spec import FacePreprocess, ModelSpec
from .weights import CheckpointMismatchError, WeightsNotAvailableError, load_state_dict_strict, seeded_init, weights_label

__all__ = ["IResNet", "BasicBlockIR", "build_iresnet", "IRESNET_UNITS", "adaface_state_dict"]

IRESNET_UNITS = {"iresnet18": (2, 2, 2, 2), "iresnet50": (3, 4, 14, 3), "iresnet101": (3, 13, 30, 3)}
_WIDTHS = (64, 128, 256, 512)


class BasicBlockIR(nn.Module):
    """Improved residual unit (pre-BN, PReLU, stride in the second conv)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        if c_in == c_out:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.PReLU(c_out),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IResNet(nn.Module):
    """IResNet on [0, 1] **BGR** aligned 112×112 crops; ``forward`` applies (x − 0.5)/0.5 first.

    Returns the 512-D embedding without L2 normalisation (compare with cosine similarity).
    """

    def __init__(self, units: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.input_layer = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        blocks: list[nn.Module] = []
        c_in = 64
        for width, count in zip(_WIDTHS, units):
            blocks.append(BasicBlockIR(c_in, width, 2))
            blocks.extend(BasicBlockIR(width, width, 1) for _ in range(count - 1))
            c_in = width
        self.body = nn.Sequential(*blocks)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512), nn.Dropout(0.4), nn.Flatten(), nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512, affine=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer((x - 0.5) / 0.5)))


def adaface_state_dict(checkpoint: object, origin: str = "the AdaFace checkpoint") -> dict[str, torch.Tensor]:
    """Backbone weights of an AdaFace checkpoint.

    Accepts a Lightning checkpoint (``{"state_dict": {...}}``) or a bare state_dict. When keys carry the
    ``model.`` prefix, only those are kept (the prefix stripped): the margin head (``head.*``) is dropped.

    Raises:
        CheckpointMismatchError: ``checkpoint`` is neither (``origin`` names it).
    """
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointMismatchError(
            f"{origin} holds a {type(checkpoint).__name__}, not a Lightning checkpoint or a state_dict; "
            "pass the AdaFace .ckpt file itself."
        )
    prefixed = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    return prefixed if prefixed else dict(state)


def _stage_ends(units: tuple[int, ...]) -> list[int]:
    return [sum(units[: i + 1]) - 1 for i in range(len(units))]


def build_iresnet(name: str, weights: str | None, trust_checkpoint: bool = False) -> ModelSpec:
    """Build IResNet ``name`` with ``weights`` = an AdaFace ``.ckpt`` path or ``None`` (seeded random).

    A Lightning ``.ckpt`` that pickles its hyper-parameters loads only with ``trust_checkpoint=True``
    (see :func:`load_torch_checkpoint`).

    Raises:
        WeightsNotAvailableError: for ``"shipped"`` (no AdaFace weights ship anywhere offline).
    """
    units = IRESNET_UNITS[name]
    if weights == "shipped":
        raise WeightsNotAvailableError(
            f"no {name} (AdaFace) weights ship in any package registry; download an AdaFace checkpoint yourself "
            f"(e.g. adaface_ir{name.removeprefix('iresnet')}_webface4m.ckpt) and pass weights='/path/to.ckpt', "
            "or weights=None for seeded random weights."
        )
    with seeded_init():
        module = IResNet(units)
    if weights is None:
        source = {"package": "fame_utils", "file": "(seeded random weights)", "licence": "MIT"}
    else:
        path = Path(weights).expanduser()
        origin = f"AdaFace checkpoint {path}"
        load_state_dict_strict(module, adaface_state_dict(load_torch_checkpoint(path, trust_checkpoint), origin), origin)
        source = {"package": "user checkpoint (AdaFace)", "file": str(path), "licence": "as provided by the user (AdaFace: MIT)"}
    ends = _stage_ends(units)
    return ModelSpec(
        name=name,
        module=module,
        preprocess=FacePreprocess(size=112, bgr=True),
        task="verification",
        input_size=112,
        target_layer=f"body.{ends[-1]}",
        stages=["input_layer"] + [f"body.{i}" for i in ends],
        class_names=None,
        source=source,
        input_space="[0, 1] BGR aligned 112×112 crop (ArcFace 5-point template); the module computes (x − 0.5)/0.5",
        bgr=True,
        similarity="cosine",
        weights=weights_label(weights),
    )
