"""An on-disk cache of explanation maps, so a ``make figures`` run computes each map once across notebooks.

A map is stored under ``build/cache/`` (or ``$FAME_CACHE_DIR``) by a key over everything that affects it:
the network's name and weights, the input tensors, the method, its full configuration, the package
versions and the source of the ``fame_utils`` modules that compute it (so editing that code invalidates
the entry). Files are written atomically. Set ``FAME_CACHE=off`` to bypass it. Never use it for runtime
measurements: a cached map takes no time (:func:`disabled` turns it off around a timed block). Only deterministic
computations belong here, as whole results: a map drawn from a shared random generator must be recomputed, or the
draws of later calls would change. Lives in the lowest layer so every map-computing layer can use it; knows
nothing of which notebook asks.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

import fame_utils

__all__ = ["cache_dir", "enabled", "disabled", "weights_digest", "tensor_digest", "source_digest", "map_key", "cached"]

Result = TypeVar("Result", torch.Tensor, dict)
_PACKAGE_ROOT = Path(fame_utils.__file__).parent
_OFF = ("off", "0", "false")
_suspended = 0


def cache_dir() -> Path:
    """``$FAME_CACHE_DIR``, else ``build/cache`` in the repository that holds ``fame_utils``."""
    return Path(os.environ.get("FAME_CACHE_DIR", _PACKAGE_ROOT.parent / "build" / "cache"))


def enabled() -> bool:
    """Whether :func:`cached` reads and writes: not under ``FAME_CACHE=off`` nor inside :func:`disabled`."""
    return _suspended == 0 and os.environ.get("FAME_CACHE", "on").lower() not in _OFF


@contextmanager
def disabled() -> Iterator[None]:
    """Within the block every :func:`cached` call computes and stores nothing (for runtime measurements)."""
    global _suspended
    _suspended += 1
    try:
        yield
    finally:
        _suspended -= 1


def tensor_digest(tensor: torch.Tensor) -> str:
    """SHA-256 of a tensor's dtype, shape and values."""
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{data.dtype}{tuple(data.shape)}".encode())
    digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def weights_digest(model: nn.Module) -> str:
    """SHA-256 over the names and values of every parameter and buffer (the weights' identity)."""
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor_digest(value).encode())
    return digest.hexdigest()


def source_digest(modules: Iterable[str]) -> str:
    """SHA-256 of the source files of ``modules`` (dotted names under ``fame_utils``; a package means all its files)."""
    digest = hashlib.sha256()
    for module in sorted(modules):
        relative = Path(*module.split(".")[1:])
        path = _PACKAGE_ROOT / relative
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        if not files or not all(file.is_file() for file in files):
            raise ValueError(f"source_digest: no source file for module {module!r} under {_PACKAGE_ROOT}; name a fame_utils module or package.")
        for file in files:
            digest.update(str(file.relative_to(_PACKAGE_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def map_key(network: str, weights: nn.Module | str, inputs: Iterable[torch.Tensor], method: str, config: Mapping[str, Any], code: Iterable[str]) -> str:
    """The cache key of one map computation: network, weights, inputs, method, config, versions and code.

    Args:
        network: the network's name.
        weights: the network, or its :func:`weights_digest` (computed once when many keys share it).
        inputs: every tensor the map depends on, as computed (the whole batch when results depend on its composition).
        method: the method key.
        config: every other setting that changes the map (values keyed by their ``repr``).
        code: the ``fame_utils`` modules that compute the map (:func:`source_digest`).
    """
    parts = [
        f"network={network}",
        f"weights={weights if isinstance(weights, str) else weights_digest(weights)}",
        *(f"input={tensor_digest(tensor)}" for tensor in inputs),
        f"method={method}",
        f"config={sorted((str(k), repr(v)) for k, v in config.items())}",
        f"versions=torch {torch.__version__}, fame_utils {fame_utils.__version__}",
        f"code={source_digest(code)}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def cached(key: str, compute: Callable[[], Result]) -> Result:
    """The stored result under ``key``, or ``compute()`` stored atomically and returned.

    A stored file that cannot be read is recomputed and replaced.
    """
    if not enabled():
        return compute()
    path = cache_dir() / f"{key}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError):  # a torn or foreign file is recomputed
            path.unlink(missing_ok=True)
    result = compute()
    _save_atomic(result, path)
    return result


def _save_atomic(result: object, path: Path) -> None:
    """``torch.save`` to a temporary name in the same folder, then rename (readers never see a partial file)."""
    buffer = io.BytesIO()
    torch.save(result, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(buffer.getvalue())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
