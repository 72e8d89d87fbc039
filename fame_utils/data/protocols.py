"""Face-verification protocols of the paper (AR Face, SCface, CFP) from user paths.

A protocol is ``<protocols_dir>/<dataset>/<protocol>.csv`` with columns ``G`` (gallery path), ``P``
(probe path), ``T`` (1 genuine, 0 impostor), in any order; other columns (e.g. a pandas index) are
ignored. The file is UTF-8 (a byte-order mark is allowed) or UTF-16 with a byte-order mark (what
spreadsheet programs write as "Unicode text"); any other encoding is refused with the line it fails on.
Images are either files under ``images_dir`` (the CSV paths relative to it) or pre-aligned HDF5 crops,
one per image, named by :func:`h5_filename` (the CSV path without extension, ``/`` → ``_``, plus ``.h5``),
dataset key ``data`` (H×W×3 uint8). Crops load as RGB; a model trained on BGR (AdaFace) flips channels in
its own preprocessing.
"""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fame_utils.data.images import ImageLoadError, load_image

__all__ = [
    "FACE_PROTOCOLS",
    "PROTOCOL_ALIASES",
    "PROTOCOL_COLUMNS",
    "ProtocolError",
    "ProtocolPair",
    "h5_filename",
    "load_crop",
    "load_face_protocol",
    "read_face_protocol",
]

#: Dataset → protocol names as in the reference code's file names.
FACE_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "ARface": ("frontal", "glass", "scarf"),
    "SCface": ("close", "medium", "far"),
    "CFP": ("01FF", "01FP"),
}
#: Paper names → file names.
PROTOCOL_ALIASES = {"neutral": "frontal", "FF": "01FF", "FP": "01FP", "CFP-FF": "01FF", "CFP-FP": "01FP"}
#: Required protocol columns: gallery path, probe path, 1 genuine / 0 impostor.
PROTOCOL_COLUMNS = ("G", "P", "T")
_EXPECTED_ENCODING = "UTF-8 (a byte-order mark is allowed) or UTF-16 with a byte-order mark"


class ProtocolError(ValueError):
    """A protocol CSV cannot be used: wrong encoding, missing columns or a bad row (file and line named)."""


@dataclass(frozen=True)
class ProtocolPair:
    """One protocol row with resolved files (``storage`` is "hdf5" or "images")."""

    gallery: str
    probe: str
    genuine: bool
    gallery_file: Path
    probe_file: Path
    storage: str
    line: int

    def load(self) -> tuple[Image.Image, Image.Image]:
        """(gallery, probe) as RGB PIL images."""
        read = load_crop if self.storage == "hdf5" else load_image
        return read(self.gallery_file), read(self.probe_file)


def h5_filename(path: str) -> str:
    """HDF5 crop name for a protocol path: ``"s1/neutral.png"`` → ``"s1_neutral.h5"`` (extension dropped, / → _)."""
    stem = str(Path(path).with_suffix("")).replace("\\", "/")
    return stem.replace("/", "_") + ".h5"


def load_crop(path: str | Path) -> Image.Image:
    """Read an HDF5 crop (key ``data``, H×W×3 uint8) as an RGB PIL image.

    Raises:
        ImageLoadError: missing, corrupt or truncated file, no ``data`` key, wrong shape or dtype (file named).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{path}: HDF5 crop not found; check images_dir and the storage mode.")
    try:
        with h5py.File(path, "r") as handle:
            keys = list(handle.keys())
            array = np.asarray(handle["data"]) if "data" in keys else None
    except (OSError, KeyError, TypeError, ValueError) as error:
        raise ImageLoadError(f"{path}: not a readable HDF5 file ({error}); it is corrupt or truncated, copy it again.") from error
    if array is None:
        raise ImageLoadError(f"{path}: no dataset 'data' in the HDF5 crop (found {keys}).")
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ImageLoadError(f"{path}: 'data' must be an HxWx3 uint8 array, got shape {array.shape} and dtype {array.dtype}.")
    return Image.fromarray(array, mode="RGB")


def read_face_protocol(path: str | Path) -> list[tuple[int, str, str, bool]]:
    """Rows of a ``G, P, T`` CSV as (line, gallery, probe, genuine); encoding and columns as in the module docstring.

    Raises:
        FileNotFoundError: missing file.
        ProtocolError: an encoding other than UTF-8 / UTF-16 with BOM (the line is named), missing columns
            (the expected and the found ones are named), or the first bad row (line number, empty path or
            ``T`` not 0/1); no row is silently dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocol file {path} not found.")
    reader = csv.DictReader(io.StringIO(_protocol_text(path), newline=""))
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = [c for c in PROTOCOL_COLUMNS if c not in columns]
    if missing:
        unknown = [c for c in columns if c not in PROTOCOL_COLUMNS]
        raise ProtocolError(
            f"{path}, line 1: missing column(s) {', '.join(missing)}; a protocol needs the columns G (gallery path), "
            f"P (probe path) and T (1 genuine, 0 impostor), found {columns or 'no header'}"
            + (f" (unknown: {', '.join(unknown)})." if unknown else ".")
        )
    duplicated = sorted({c for c in PROTOCOL_COLUMNS if columns.count(c) > 1})
    if duplicated:
        raise ProtocolError(f"{path}, line 1: column(s) {', '.join(duplicated)} appear more than once in {columns}.")
    reader.fieldnames = columns
    rows = []
    for row in reader:
        line = reader.line_num
        gallery, probe, label = ((row.get(k) or "").strip() for k in PROTOCOL_COLUMNS)
        if None in row or not gallery or not probe:
            raise ProtocolError(f"{path}, line {line}: every row needs a gallery path G and a probe path P (got {row}).")
        if label not in ("0", "1"):
            raise ProtocolError(f"{path}, line {line}: T must be 1 (genuine) or 0 (impostor), got {label!r}.")
        rows.append((line, gallery, probe, label == "1"))
    if not rows:
        raise ProtocolError(f"{path}: no pairs below the header line.")
    return rows


def _protocol_text(path: Path) -> str:
    """The CSV's text: UTF-16 if it starts with a UTF-16 byte-order mark, else UTF-8 (optional BOM)."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise ProtocolError(
            f"{path}, line {line}: NUL bytes, as in UTF-16 without a byte-order mark; save the file as {_EXPECTED_ENCODING}."
        )
    else:
        encoding = "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ProtocolError(
            f"{path}, line {line}: byte {data[error.start:error.start + 1]!r} is not valid {encoding.upper().removesuffix('-SIG')}; "
            f"save the file as {_EXPECTED_ENCODING}."
        ) from error


def _protocol_name(dataset: str, protocol: str) -> str:
    if dataset not in FACE_PROTOCOLS:
        raise ValueError(f"unknown dataset {dataset!r}; use one of {', '.join(FACE_PROTOCOLS)}.")
    name = PROTOCOL_ALIASES.get(protocol, protocol)
    if name not in FACE_PROTOCOLS[dataset]:
        raise ValueError(f"unknown {dataset} protocol {protocol!r}; use one of {', '.join(FACE_PROTOCOLS[dataset])}.")
    return name


def load_face_protocol(dataset: str, protocol: str, protocols_dir: str | Path, images_dir: str | Path, storage: str = "auto") -> list[ProtocolPair]:
    """Resolve ``<protocols_dir>/<dataset>/<protocol>.csv`` against ``images_dir``.

    Args:
        dataset: "ARface", "SCface" or "CFP".
        protocol: e.g. "frontal"/"neutral", "glass", "scarf", "close", "medium", "far", "01FF"/"FF", "01FP"/"FP".
        storage: "hdf5" (crops named by :func:`h5_filename`), "images" (paths as given) or "auto"
            (HDF5 if the first gallery crop exists, else images).

    Raises:
        FileNotFoundError: missing directory/protocol, or image files (count and the first few, with lines).
        ValueError: unknown dataset/protocol/storage.
        ProtocolError: the CSV's encoding, columns or a row (file and line named).
    """
    name = _protocol_name(dataset, protocol)
    images_dir = Path(images_dir)
    csv_path = Path(protocols_dir) / dataset / f"{name}.csv"
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"protocol {csv_path} not found. {dataset} does not ship with fame-workbook: obtain it from its owners and "
            f"point protocols_dir at the folder holding {dataset}/{name}.csv."
        )
    if not images_dir.is_dir():
        raise FileNotFoundError(f"image folder {images_dir} not found (expected the {dataset} images or HDF5 crops).")
    rows = read_face_protocol(csv_path)
    if storage == "auto":
        storage = "hdf5" if (images_dir / h5_filename(rows[0][1])).is_file() else "images"
    if storage not in ("hdf5", "images"):
        raise ValueError(f"storage must be 'hdf5', 'images' or 'auto', got {storage!r}.")
    locate = (lambda p: images_dir / h5_filename(p)) if storage == "hdf5" else (lambda p: images_dir / p)
    pairs, missing = [], []
    for line, gallery, probe, genuine in rows:
        files = (locate(gallery), locate(probe))
        missing += [f"line {line}: {f}" for f in files if not f.is_file()]
        pairs.append(ProtocolPair(gallery, probe, genuine, files[0], files[1], storage, line))
    if missing:
        raise FileNotFoundError(f"{len(missing)} file(s) named in {csv_path} are missing, e.g. " + "; ".join(missing[:3]))
    return pairs
