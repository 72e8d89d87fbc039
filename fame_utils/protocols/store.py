"""The result store of a protocol run: one checksummed ``.npz`` per (method, item), every file written atomically.

Layout under the run folder: ``items/<method-slug>/<item_id>.npz`` (maps in float16 and the item's metric inputs)
and ``context/<split>.npz`` (inputs shared by a split, e.g. clean scores). A file is written to a temporary name
and renamed, so a killed run leaves either a complete file or none; each file carries a SHA-256 of its arrays, so
a truncated or altered file is detected on load. Knows nothing about methods, metrics or ranks.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "CHECKSUM_KEY",
    "CorruptItemError",
    "ItemStore",
    "arrays_checksum",
    "load_arrays",
    "method_slug",
    "save_arrays",
    "write_atomic",
    "write_json_atomic",
]

#: Name of the array holding the SHA-256 of all other arrays of a stored file.
CHECKSUM_KEY = "_sha256"
_TEMPORARY_SUFFIX = ".tmp"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CorruptItemError(ValueError):
    """A stored file cannot be read, lacks its checksum, or its arrays do not match the checksum."""


def write_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through ``write(handle)`` to a temporary name in the same folder, sync it, then rename it.

    Readers see the old file or the complete new one, never a partial one; on an exception the temporary
    file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (see :func:`write_atomic`)."""
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return write_atomic(path, lambda handle: handle.write(text.encode()))


def arrays_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_arrays(path: str | Path, arrays: Mapping[str, Any]) -> Path:
    """Store ``arrays`` with their checksum as a compressed ``.npz``, atomically.

    Raises:
        ValueError: an array is named :data:`CHECKSUM_KEY`.
    """
    if CHECKSUM_KEY in arrays:
        raise ValueError(f"{CHECKSUM_KEY!r} is reserved for the checksum.")
    values = {name: np.asarray(value) for name, value in arrays.items()}
    values[CHECKSUM_KEY] = np.asarray(arrays_checksum(values))
    return write_atomic(path, lambda handle: np.savez_compressed(handle, **values))


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_arrays` and verify its checksum.

    Raises:
        FileNotFoundError: no such file.
        CorruptItemError: unreadable (e.g. truncated), no checksum, or arrays that do not match it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as error:
        raise CorruptItemError(f"{path} cannot be read ({type(error).__name__}: {error}).") from error
    stored = arrays.pop(CHECKSUM_KEY, None)
    if stored is None:
        raise CorruptItemError(f"{path} has no checksum ({CHECKSUM_KEY}); it was not written by the protocol store.")
    if str(stored) != arrays_checksum(arrays):
        raise CorruptItemError(f"{path} does not match its checksum (altered or damaged).")
    return arrays


def method_slug(method: str) -> str:
    """Folder name for a method: lower case, runs of other characters → ``-`` (``"FAME (paper-faithful)"`` → ``fame-paper-faithful``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", method.lower()).strip("-")
    if not slug:
        raise ValueError(f"method name {method!r} has no letters or digits.")
    return slug


class ItemStore:
    """Per-item results of one run folder.

    Args:
        root: the run folder (``--out``).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, method: str, item_id: str) -> Path:
        """``items/<method-slug>/<item_id>.npz``.

        Raises:
            ValueError: ``item_id`` is not a plain file name (letters, digits, ``.``, ``_``, ``-``).
        """
        if not _SAFE_NAME.match(item_id):
            raise ValueError(f"item id {item_id!r} must be a plain file name (letters, digits, '.', '_', '-').")
        return self.root / "items" / method_slug(method) / f"{item_id}.npz"

    def context_path(self, split: str) -> Path:
        """``context/<split>.npz``: inputs shared by the items of a split."""
        if not _SAFE_NAME.match(split):
            raise ValueError(f"split name {split!r} must be a plain file name (letters, digits, '.', '_', '-').")
        return self.root / "context" / f"{split}.npz"

    def save(self, method: str, item_id: str, arrays: Mapping[str, Any]) -> Path:
        """Store one item's arrays atomically with their checksum."""
        return save_arrays(self.path(method, item_id), arrays)

    def load(self, method: str, item_id: str) -> dict[str, np.ndarray]:
        """One item's arrays (verified).

        Raises:
            FileNotFoundError: not stored yet.  CorruptItemError: damaged file.
        """
        return load_arrays(self.path(method, item_id))

    def check(self, method: str, item_id: str) -> str | None:
        """``None`` if the item is stored intact, else why not (``"missing"`` or the corruption message)."""
        try:
            self.load(method, item_id)
        except FileNotFoundError:
            return "missing"
        except CorruptItemError as error:
            return str(error)
        return None

    def discard(self, method: str, item_id: str) -> None:
        """Delete an item's file (a damaged one, before it is recomputed)."""
        self.path(method, item_id).unlink(missing_ok=True)

    def remove_temporaries(self) -> int:
        """Delete temporary files left by killed writers; returns how many were removed."""
        removed = 0
        for folder in (self.root / "items", self.root / "context"):
            for temporary in folder.rglob(f".*{_TEMPORARY_SUFFIX}") if folder.is_dir() else ():
                temporary.unlink(missing_ok=True)
                removed += 1
        return removed
