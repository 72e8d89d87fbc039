"""Reading weight files safely: tensors-only PyTorch loading, full unpickling only with the caller's consent,
and one content-keyed cache for every format.

PyTorch checkpoints are read with ``torch.load(..., weights_only=True)``: only tensors and plain containers
are rebuilt and no code from the file runs. A checkpoint that pickles other Python objects (a Lightning
``.ckpt`` with its hyper-parameters, a whole ``nn.Module``) is refused with the objects it names, unless the
caller passes ``trust_checkpoint=True``; then it is unpickled in full and a :class:`CheckpointTrustWarning`
says so. Anything unreadable (empty, random bytes, truncated) raises :class:`CheckpointError` naming the file.

Every weights reader goes through :func:`read_weights_file`: the file is read once, hashed (SHA-256) and the
parsed result is cached under (format, size, hash). A file replaced in place is read again even if its
mtime is unchanged, and each caller gets its own deep copy, so mutating it never reaches the next caller.
"""

from __future__ import annotations

import copy
import hashlib
import io
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import torch

from .weights import CheckpointError, WeightsNotAvailableError

__all__ = ["CACHE_SIZE", "CheckpointTrustWarning", "clear_checkpoint_cache", "load_torch_checkpoint", "read_weights_file"]

#: Parsed weight files kept per process (least recently used dropped first).
CACHE_SIZE = 8
_CACHE: OrderedDict[tuple[str, int, str], object] = OrderedDict()
Parsed = TypeVar("Parsed")


class CheckpointTrustWarning(UserWarning):
    """A checkpoint is being unpickled in full because the caller passed ``trust_checkpoint=True``."""


def clear_checkpoint_cache() -> None:
    """Forget every cached weights file (the next load reads and parses it again)."""
    _CACHE.clear()


def _file_bytes(path: Path, what: str) -> bytes:
    if not path.is_file():
        raise WeightsNotAvailableError(f"{what} {path} does not exist; pass the path of an existing weights file.")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{what} {path} cannot be read ({error.strerror or error}); check its permissions.") from error
    if not data:
        raise CheckpointError(f"{what} {path} is empty (0 bytes); copy or download it again.")
    return data


def read_weights_file(path: str | Path, parse: Callable[[bytes, Path], Parsed], fmt: str, what: str) -> Parsed:
    """``parse(file bytes, path)``, cached by content; every call returns its own deep copy.

    Args:
        path: the weights file.
        parse: turns the file's bytes into the parsed weights; raises :class:`CheckpointError` on bad bytes.
        fmt: the parser's cache namespace (the same bytes parsed differently are another entry).
        what: the kind of file, for error messages (e.g. ``"SFace ONNX file"``).

    Raises:
        WeightsNotAvailableError: ``path`` does not exist.
        CheckpointError: the file is empty or unreadable, or ``parse`` rejects it.
    """
    path = Path(path).expanduser()
    data = _file_bytes(path, what)
    key = (fmt, len(data), hashlib.sha256(data).hexdigest())
    if key in _CACHE:
        _CACHE.move_to_end(key)
    else:
        _CACHE[key] = parse(data, path)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    return copy.deepcopy(_CACHE[key])


def load_torch_checkpoint(path: str | Path, trust_checkpoint: bool = False) -> object:
    """The object a ``torch.save``'d file holds (usually a state_dict), on the CPU; cached by content.

    Args:
        path: ``.pth`` / ``.ckpt`` file.
        trust_checkpoint: allow full unpickling (runs code from the file) when tensors-only loading is not
            enough; emits a :class:`CheckpointTrustWarning` when it happens.

    Raises:
        WeightsNotAvailableError: ``path`` does not exist.
        CheckpointError: the file is empty, corrupt or truncated, or it needs full unpickling and
            ``trust_checkpoint`` is False (the message lists the Python objects it would import).
    """
    fmt = "torch, trusted" if trust_checkpoint else "torch"
    return read_weights_file(path, partial(_parse_torch, trust_checkpoint=trust_checkpoint), fmt, "checkpoint")


def _parse_torch(data: bytes, path: Path, trust_checkpoint: bool) -> object:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # bad bytes surface as UnpicklingError, RuntimeError, EOFError, struct.error, KeyError, ...
        tensors_only_error = error
    unsafe = _unsafe_globals(data, tensors_only_error)
    if unsafe == []:
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({_reason(tensors_only_error)}); copy or download it again."
        ) from tensors_only_error
    if not trust_checkpoint:
        if unsafe:
            raise CheckpointError(
                f"checkpoint {path} pickles Python objects besides tensors ({', '.join(unsafe)}); unpickling it runs code "
                "from the file. If you trust its source, pass trust_checkpoint=True (e.g. load_model(..., "
                "trust_checkpoint=True)); otherwise re-save the weights alone with torch.save(model.state_dict(), path)."
            ) from tensors_only_error
        raise CheckpointError(
            f"checkpoint {path} cannot be read tensors-only ({_reason(tensors_only_error)}): it is corrupt or truncated "
            "(copy or download it again), or an old-format checkpoint that needs full unpickling (pass "
            "trust_checkpoint=True only if you trust its source)."
        ) from tensors_only_error
    warnings.warn(
        f"unpickling checkpoint {path} in full because trust_checkpoint=True: code in the file runs; load only "
        "checkpoints you trust.",
        CheckpointTrustWarning,
        stacklevel=2,
    )
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as error:  # arbitrary unpickling can fail in any way on damaged bytes
        raise CheckpointError(
            f"checkpoint {path} cannot be read even with full unpickling ({_reason(error)}); it is corrupt or "
            "truncated: copy or download it again."
        ) from error


def _unsafe_globals(data: bytes, error: Exception) -> list[str] | None:
    """Python objects a checkpoint would import beyond torch's tensors-only allowlist.

    Zip-format checkpoints are inspected without unpickling; for old-format ones the object torch refused
    is read from ``error``. ``None`` when neither tells (the file is damaged or not a checkpoint).
    """
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data)))
    except Exception:  # not a readable zip-format checkpoint: fall back to what torch.load reported
        refused = re.search(r"GLOBAL ([\w.]+) was not an allowed global", str(error))
        return [refused.group(1)] if refused else None


def _reason(error: BaseException) -> str:
    """One sentence saying why torch could not read a file (its advice to disable weights_only left out)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    sentence = lines[0].split(". ", 1)[0] if lines else "no details"
    return f"{type(error).__name__}: {sentence[:160]}"
