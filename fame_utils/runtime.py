"""Device selection, seeding, package versions and the measured forward-pass layout: one place for each, so runs are
reproducible, say what ran them and run at the speed this CPU allows.

Knows nothing of models, methods or notebooks.
"""

from __future__ import annotations

import os
import platform
import random
from collections.abc import Sequence
from importlib import metadata
import re

import numpy as np
import torch

__all__ = ["DEVICE_CHOICES", "FORWARD_BATCH", "LOCATION_BATCH", "DeviceError", "balanced_chunks", "fast_layout", "process_alive", "resolve_device", "seed_everything"]

FORWARD_BATCH = 4
"""Images per gradient-free forward pass of the deletion/insertion sweeps, fed in channels_last layout.

Measured on a quiet 2-core CPU on the networks as loaded, ms per image (NCHW at 1 / 4 / 9 / 32 → channels_last
at 1 / 4 / 9 / 32): EfficientNet-Lite0 18 / 24 / 32 / 38 → 20 / 10.5 / 16 / 26; Lite2 45 / 42 / 74 / 87 → 33 / 25 / 34 / 55;
SFace 13 / 10 / 15 / 32 → 15 / 10 / 12 / 21; dlib ResNet 11 / 4.6 / 4.0 / 4.8 → 9.5 / 4.3 / 3.9 / 3.4. Batch 4 in
channels_last is the fastest or within 25 % of it on every shipped network; larger batches of these depthwise
networks are slower per image on this CPU.
"""


LOCATION_BATCH = 8
"""Most feature-map locations FAME optimises together (copies of one image, forward to the CAM layer + input gradient).

Measured on a quiet 2-core CPU, channels_last, ms per location-iteration at batch 4 / 7 / 8 / 16: EfficientNet-Lite0
25–28 / 26 / 24–25 / 29–55; Lite2 49 / 44 / 43 / 91; SFace 32 / 30 / 31 / 37; dlib ResNet 11.4 / 9.3 / 9.4 / 8.7.
Batches of 16 copies of a 224-px image are slower per image than batches of 8 on the depthwise networks. Again with
BatchNorm folded (the inference copies FAME runs on), at 4 / 8 / 16: Lite0 22.3 / 21.8 / 25.7, Lite2 40.7 / 40.4 / 45.5.
"""


def balanced_chunks(count: int, most: int) -> list[slice]:
    """Split ``count`` items into the fewest consecutive chunks of at most ``most``, sizes differing by at most one.

    49 locations at most 8 → seven chunks of 7, not six of 8 and a lone one run at batch-1 speed.

    Raises:
        ValueError: ``most`` < 1 or ``count`` < 0.
    """
    if most < 1 or count < 0:
        raise ValueError(f"balanced_chunks needs count >= 0 and most >= 1, got count={count}, most={most}.")
    parts = -(-count // most)
    bounds = [part * count // parts for part in range(parts + 1)] if parts else [0]
    return [slice(start, stop) for start, stop in zip(bounds, bounds[1:])]


def fast_layout(batch: torch.Tensor) -> torch.Tensor:
    """``batch`` in the memory layout forward passes run fastest in (channels_last for 4-D image batches)."""
    return batch.contiguous(memory_format=torch.channels_last) if batch.ndim == 4 else batch

#: What ``device`` may be, in words (``"cuda:N"`` is any CUDA device index).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_DEVICE_PATTERN = re.compile(r"cpu(:0)?|cuda(:\d+)?|mps(:0)?")


class DeviceError(ValueError):
    """A requested device is not a valid choice, or not available on this machine."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device to use.

    Args:
        device: ``"auto"`` picks CUDA, then Apple MPS, then the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` and
            ``"mps"`` (or the same as a ``torch.device``) are used as given if available.

    Raises:
        DeviceError: an unknown device string (e.g. ``"gpu"``; the message lists the valid choices), or an
            accelerator that is not available here.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or a torch.device, got {type(device).__name__}; use one of {', '.join(DEVICE_CHOICES)}.")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if not _DEVICE_PATTERN.fullmatch(device):
        raise DeviceError(f"device={device!r} is not a valid choice; use one of {', '.join(repr(c) for c in DEVICE_CHOICES)}.")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device={device!r} was requested but CUDA is not available; use device='auto' or 'cpu'.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device={device!r} was requested but only {torch.cuda.device_count()} CUDA device(s) exist "
                f"(cuda:0 … cuda:{torch.cuda.device_count() - 1}); use device='auto' or 'cuda'."
            )
    if resolved.type == "mps" and not _mps_available():
        raise DeviceError(f"device={device!r} was requested but MPS is not available; use device='auto' or 'cpu'.")
    return resolved


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a seeded CPU generator.

    Same seed, same maps on the CPU: every random draw in the workbook goes through these generators.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Python's version and those of the installed distributions ``names`` (ones not installed are left out)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this host (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
