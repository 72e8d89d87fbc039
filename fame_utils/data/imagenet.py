"""ImageNet val in the Kaggle LOC layout: synset mapping, PredictionString, k-per-class protocol, box transform.

Layout under a user-given ``root``: ``LOC_synset_mapping.txt`` (line i → class i; first token = synset),
``LOC_val_solution.csv`` (``ImageId,PredictionString``) and ``ILSVRC/Data/CLS-LOC/val/<ImageId>.JPEG``.
A protocol CSV has the columns ``ImageId,PredictionString,target`` (the paper's layout); the explained
class is ``target`` and the IoU box is the **first** box of the PredictionString.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fame_utils.data.images import load_image

__all__ = [
    "ImageNetSample",
    "imagenet_protocol",
    "load_imagenet_protocol",
    "load_synset_mapping",
    "map_box",
    "parse_prediction_string",
    "sample_imagenet_protocol",
    "write_imagenet_protocol",
]

SYNSET_MAPPING = "LOC_synset_mapping.txt"
VAL_SOLUTION = "LOC_val_solution.csv"
VAL_IMAGES = Path("ILSVRC/Data/CLS-LOC/val")
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ImageNetSample:
    """One protocol row: the image file, its target class and the first box (original pixels)."""

    image_id: str
    path: Path
    synset: str
    target: int
    box: Box
    boxes: tuple[tuple[str, Box], ...]
    line: int

    def load(self) -> Image.Image:
        """The image as RGB PIL (raises ``ImageLoadError`` for a bad file)."""
        return load_image(self.path)


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found ({what}). ImageNet val does not ship with fame-workbook: pass the root of the Kaggle "
            "'ImageNet Object Localization' download (LOC_synset_mapping.txt, LOC_val_solution.csv, ILSVRC/Data/CLS-LOC/val)."
        )
    return path


def load_synset_mapping(path: str | Path) -> list[str]:
    """Synsets in class order from ``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca`` per line).

    Raises:
        FileNotFoundError: missing file.  ValueError: a line without a ``n########`` synset, or duplicates.
    """
    path = _require(Path(path), "synset mapping")
    synsets: list[str] = []
    for line_number, line in enumerate(path.read_text().splitlines(), start=1):
        token = line.split(maxsplit=1)[0] if line.strip() else ""
        if not (len(token) == 9 and token[0] == "n" and token[1:].isdigit()):
            raise ValueError(f"{path}, line {line_number}: expected a synset like 'n01440764' first, got {line!r}.")
        if token in synsets:
            raise ValueError(f"{path}, line {line_number}: synset {token} listed twice.")
        synsets.append(token)
    return synsets


def parse_prediction_string(text: str) -> list[tuple[str, Box]]:
    """``"syn x0 y0 x1 y1 syn x0 y0 x1 y1 "`` → [(synset, (x0, y0, x1, y1)), ...] (original pixels).

    Raises:
        ValueError: empty string, token count not a multiple of 5, non-integer coordinates or x1 <= x0 / y1 <= y0.
    """
    tokens = text.split()
    if not tokens or len(tokens) % 5:
        raise ValueError(f"PredictionString must hold groups of 5 tokens 'synset x_min y_min x_max y_max', got {text!r}.")
    objects = []
    for start in range(0, len(tokens), 5):
        synset, *numbers = tokens[start : start + 5]
        try:
            box = tuple(int(float(v)) for v in numbers)
        except ValueError as error:
            raise ValueError(f"non-numeric box coordinates {numbers} for {synset} in PredictionString {text!r}.") from error
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"empty box {box} for {synset} in PredictionString {text!r} (need x_max > x_min, y_max > y_min).")
        objects.append((synset, box))
    return objects


def _read_rows(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; found {reader.fieldnames}.")
        return [(line, row) for line, row in enumerate(reader, start=2)]


def sample_imagenet_protocol(root: str | Path, per_class: int = 5, seed: int = 0, replace: bool = False) -> list[dict[str, str]]:
    """Draw a seeded protocol of ``per_class`` val images per class, ordered by synset (class order).

    An image's class is the first synset of its PredictionString. ``replace=False`` (default) draws
    distinct images; ``replace=True`` reproduces the paper's sampling with replacement (duplicate rows
    possible, as in the paper). Classes with no image are skipped; a class with fewer than
    ``per_class`` images and ``replace=False`` raises.

    Returns rows ``{"ImageId", "PredictionString", "target"}`` (write them with :func:`write_imagenet_protocol`).
    """
    root = Path(root)
    synsets = load_synset_mapping(root / SYNSET_MAPPING)
    solution = _require(root / VAL_SOLUTION, "val ground truth")
    by_class: dict[str, list[tuple[str, str]]] = {s: [] for s in synsets}
    for line, row in _read_rows(solution, ("ImageId", "PredictionString")):
        try:
            objects = parse_prediction_string(row["PredictionString"])
        except ValueError as error:
            raise ValueError(f"{solution}, line {line}: {error}") from error
        if objects[0][0] not in by_class:
            raise ValueError(f"{solution}, line {line}: synset {objects[0][0]} is not in {SYNSET_MAPPING}.")
        by_class[objects[0][0]].append((row["ImageId"], row["PredictionString"]))
    rng = np.random.default_rng(seed)
    rows = []
    for synset in synsets:
        candidates = sorted(by_class[synset])
        if not candidates:
            continue
        if not replace and len(candidates) < per_class:
            raise ValueError(f"class {synset} has only {len(candidates)} val images; ask for fewer per class or use replace=True.")
        for index in rng.choice(len(candidates), size=per_class, replace=replace):
            image_id, prediction = candidates[index]
            rows.append({"ImageId": image_id, "PredictionString": prediction, "target": synset})
    return rows


def write_imagenet_protocol(rows: list[dict[str, str]], path: str | Path) -> Path:
    """Write protocol rows as ``ImageId,PredictionString,target`` CSV."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ImageId", "PredictionString", "target"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def load_imagenet_protocol(protocol: str | Path, root: str | Path) -> list[ImageNetSample]:
    """Read a protocol CSV and resolve every row against the val images under ``root``.

    Raises:
        ValueError: the first bad row (line number and problem): unknown target synset, bad PredictionString.
        FileNotFoundError: missing protocol/mapping file, or image files (count and the first few listed).
    """
    protocol, root = Path(protocol), Path(root)
    _require(protocol, "protocol CSV")
    synsets = load_synset_mapping(root / SYNSET_MAPPING)
    index = {s: i for i, s in enumerate(synsets)}
    samples, missing = [], []
    for line, row in _read_rows(protocol, ("ImageId", "PredictionString", "target")):
        if row["target"] not in index:
            raise ValueError(f"{protocol}, line {line}: target {row['target']!r} is not a synset of {SYNSET_MAPPING}.")
        try:
            objects = parse_prediction_string(row["PredictionString"])
        except ValueError as error:
            raise ValueError(f"{protocol}, line {line}: {error}") from error
        path = root / VAL_IMAGES / f"{row['ImageId']}.JPEG"
        if not path.is_file():
            missing.append(f"line {line}: {path}")
        samples.append(ImageNetSample(row["ImageId"], path, row["target"], index[row["target"]], objects[0][1], tuple(objects), line))
    if missing:
        raise FileNotFoundError(f"{len(missing)} image file(s) of {protocol} are missing, e.g. " + "; ".join(missing[:3]))
    return samples


def imagenet_protocol(root: str | Path, per_class: int = 5, seed: int = 0, replace: bool = False) -> list[ImageNetSample]:
    """Sample a protocol (:func:`sample_imagenet_protocol`) and resolve it in one call (nothing written)."""
    root = Path(root)
    rows = sample_imagenet_protocol(root, per_class, seed, replace)
    index = {s: i for i, s in enumerate(load_synset_mapping(root / SYNSET_MAPPING))}
    samples = []
    for line, row in enumerate(rows, start=2):
        objects = parse_prediction_string(row["PredictionString"])
        path = _require(root / VAL_IMAGES / f"{row['ImageId']}.JPEG", "val image listed in LOC_val_solution.csv")
        samples.append(ImageNetSample(row["ImageId"], path, row["target"], index[row["target"]], objects[0][1], tuple(objects), line))
    return samples


def map_box(box: tuple[float, float, float, float], original_size: tuple[int, int], resize: int = 232, crop: int = 224,
            paper_faithful: bool = False) -> Box:
    """Map an original-pixel box through Resize(shorter side → ``resize``) + CenterCrop(``crop``).

    Default (aspect-preserving): s = resize / min(W, H), offset_x = (W s − crop) / 2,
    offset_y = (H s − crop) / 2, x' = x s − offset_x (y likewise).
    ``paper_faithful``: each axis scaled to ``resize`` on its own (s_x = resize / W, s_y = resize / H),
    then shifted by (resize − crop) / 2 — wrong for non-square images, as in the published IoU numbers.
    Both clip to [0, crop] and truncate to int.

    Args:
        box: (x0, y0, x1, y1) in original pixels.
        original_size: (W, H) of the original image (PIL ``size`` order).

    Raises:
        ValueError: non-positive sizes, crop > resize, or a box with x1 <= x0 or y1 <= y0.
    """
    width, height = original_size
    if width <= 0 or height <= 0 or resize <= 0 or crop <= 0:
        raise ValueError(f"sizes must be positive: original_size={original_size}, resize={resize}, crop={crop}.")
    if crop > resize:
        raise ValueError(f"crop ({crop}) cannot exceed resize ({resize}).")
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box} is empty: need x1 > x0 and y1 > y0.")
    if paper_faithful:
        scale_x, scale_y = resize / width, resize / height
        offset_x = offset_y = (resize - crop) / 2
    else:
        scale_x = scale_y = resize / min(width, height)
        offset_x, offset_y = (width * scale_x - crop) / 2, (height * scale_y - crop) / 2

    def place(value: float, scale: float, offset: float) -> int:
        return int(min(max(value * scale - offset, 0.0), float(crop)))

    return (place(x0, scale_x, offset_x), place(y0, scale_y, offset_y), place(x1, scale_x, offset_x), place(y1, scale_y, offset_y))
