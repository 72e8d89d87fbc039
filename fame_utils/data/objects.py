"""Shipped object photos with hand-annotated ImageNet boxes (``data/objects.json``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image

from fame_utils.data.images import load_image
from fame_utils.data.paths import DATA_DIR, installed_file

__all__ = ["ObjectImage", "imagenet_categories", "object_image", "object_images", "object_image_names"]

OBJECTS_JSON = DATA_DIR / "objects.json"
Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ObjectImage:
    """One real photo with its ImageNet targets.

    ``boxes[i]`` (x0, y0, x1, y1; original pixels, end-exclusive) outlines one instance of class
    ``classes[i]``; ``classes[0]`` is the explanation target.
    """

    name: str
    image: Image.Image = field(repr=False)
    classes: list[int]
    boxes: list[Box]
    class_names: list[str]
    source: dict[str, str]
    licence: str
    credit: str = ""
    note: str = ""

    @property
    def target(self) -> int:
        """The ImageNet index to explain (the first listed object)."""
        return self.classes[0]

    @property
    def path(self) -> Path:
        """The image file that was loaded."""
        return Path(self.source["resolved"])


@lru_cache(maxsize=1)
def imagenet_categories() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (torchvision metadata; no download)."""
    from torchvision.models import ResNet18_Weights

    return tuple(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def _entries() -> list[dict]:
    return json.loads(OBJECTS_JSON.read_text())["images"]


def _resolve(source: dict[str, str]) -> Path:
    if "file" in source:
        return DATA_DIR / source["file"]
    return installed_file(source["module"], source["path"])


def _build(entry: dict) -> ObjectImage:
    path = _resolve(entry["source"])
    categories = imagenet_categories()
    classes = [int(obj["class"]) for obj in entry["objects"]]
    boxes = [tuple(int(v) for v in obj["box"]) for obj in entry["objects"]]
    return ObjectImage(
        name=entry["name"],
        image=load_image(path),
        classes=classes,
        boxes=boxes,
        class_names=[categories[c] for c in classes],
        source={**entry["source"], "resolved": str(path)},
        licence=entry["licence"],
        credit=entry.get("credit", ""),
        note=entry.get("note", ""),
    )


def object_image_names() -> list[str]:
    """Names of the shipped object photos, in catalogue order."""
    return [entry["name"] for entry in _entries()]


def object_images(names: list[str] | None = None) -> list[ObjectImage]:
    """Load the shipped object photos (all, or ``names`` in the given order).

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    return [object_image(name) for name in (names if names is not None else object_image_names())]


def object_image(name: str) -> ObjectImage:
    """Load one shipped object photo by name.

    Raises:
        KeyError: ``name`` is not in ``data/objects.json``; the message lists the known names.
    """
    for entry in _entries():
        if entry["name"] == name:
            return _build(entry)
    raise KeyError(f"no object photo named {name!r}; known names: {', '.join(object_image_names())}.")
