"""The protocols a run can take, and their items: ImageNet localisation, the face-verification datasets, the shipped data.

Each protocol resolves to an ordered list of items with stable ids (the store's file names) grouped in splits
(a face protocol's split has its own EER threshold). Everything a user provides is checked here, before any
work: the dataset folder, the protocol CSV and the image files it names. Knows nothing about methods or ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from fame_utils.data import face_pairs, imagenet_protocol, load_face_protocol, load_imagenet_protocol, object_images
from fame_utils.evaluation.classification import samples_from_objects
from fame_utils.protocols.errors import ProtocolInputError

__all__ = ["PROTOCOLS", "ClassificationItem", "DataOptions", "PairItem", "ProtocolInfo", "evenly_spaced", "resolve_items"]

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class ProtocolInfo:
    """A protocol: its task, the dataset splits it covers (face protocols) and what it needs from the user."""

    task: str
    description: str
    splits: tuple[tuple[str, str], ...] = ()
    needs_data: bool = True


PROTOCOLS: dict[str, ProtocolInfo] = {
    "imagenet_loc": ProtocolInfo("classification", "ImageNet val localisation (Table 1): --data-root = Kaggle LOC folder, --protocol-csv or --per-class"),
    "cfp_fp": ProtocolInfo("verification", "CFP frontal-profile split 01 (Table 2)", (("CFP", "01FP"),)),
    "cfp_ff": ProtocolInfo("verification", "CFP frontal-frontal split 01 (Table 2)", (("CFP", "01FF"),)),
    "ar": ProtocolInfo("verification", "AR Face neutral, glass, scarf (Table 2)", (("ARface", "frontal"), ("ARface", "glass"), ("ARface", "scarf"))),
    "scface": ProtocolInfo("verification", "SCface close, medium, far (Table 2)", (("SCface", "close"), ("SCface", "medium"), ("SCface", "far"))),
    "shipped_objects": ProtocolInfo("classification", "the 20 shipped photos with hand-checked boxes", needs_data=False),
    "shipped_faces": ProtocolInfo("verification", "the 45 shipped aligned face pairs", needs_data=False),
}


@dataclass(frozen=True)
class DataOptions:
    """Where the user's data lives (unused by the shipped protocols).

    Attributes:
        data_root: ImageNet: the Kaggle "ImageNet Object Localization" folder. Faces: a folder holding
            ``protocols/<Dataset>/<protocol>.csv`` and ``images/`` (overridden by the two fields below).
        protocol_csv: ImageNet protocol CSV (``ImageId,PredictionString,target``); None draws ``per_class`` rows
            per class with ``seed``.
        per_class, seed: the seeded draw when no CSV is given (the paper: 5 per class).
        protocols_dir, images_dir: face protocol CSVs and images (default: ``data_root/protocols``, ``data_root/images``).
    """

    data_root: Path | None = None
    protocol_csv: Path | None = None
    per_class: int = 5
    seed: int = 0
    protocols_dir: Path | None = None
    images_dir: Path | None = None


@dataclass(frozen=True)
class ClassificationItem:
    """One photo to explain: the class, its first box in original pixels (None: no box) and how to load it."""

    item_id: str
    target: int
    box: Box | None
    load: Callable[[], Image.Image] = field(repr=False, compare=False)
    split: str = "all"


@dataclass(frozen=True)
class PairItem:
    """One verification pair: genuine or impostor, and how to load (gallery, probe)."""

    item_id: str
    split: str
    genuine: bool
    load: Callable[[], tuple[Image.Image, Image.Image]] = field(repr=False, compare=False)


Item = ClassificationItem | PairItem


def evenly_spaced(count: int, wanted: int | None) -> list[int]:
    """Indices of ``wanted`` items spread evenly over ``count`` (first and last included); all of them for None.

    Raises:
        ValueError: ``wanted`` < 1.
    """
    if wanted is None or wanted >= count:
        return list(range(count))
    if wanted < 1:
        raise ValueError(f"--subset must be at least 1, got {wanted}.")
    return sorted({int(i) for i in np.linspace(0, count - 1, wanted).round()})


def _id_width(count: int) -> int:
    return max(5, len(str(count)))


def _shipped_objects() -> list[ClassificationItem]:
    samples = samples_from_objects(object_images())
    width = _id_width(len(samples))
    return [ClassificationItem(f"{index:0{width}d}-{sample.name}", sample.target, sample.box, (lambda image=sample.image: image))
            for index, sample in enumerate(samples)]


def _existing_folder(path: Path | None, flag: str, what: str) -> Path:
    if path is None:
        raise ProtocolInputError(f"{flag} is required: {what}.")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ProtocolInputError(f"{flag} {path} does not exist or is not a folder: {what}.")
    return path


def _imagenet(options: DataOptions) -> list[ClassificationItem]:
    root = _existing_folder(options.data_root, "--data-root", "imagenet_loc needs the Kaggle 'ImageNet Object Localization' folder "
                            "(LOC_synset_mapping.txt, LOC_val_solution.csv, ILSVRC/Data/CLS-LOC/val)")
    try:
        if options.protocol_csv is not None:
            samples = load_imagenet_protocol(Path(options.protocol_csv).expanduser(), root)
        else:
            samples = imagenet_protocol(root, per_class=options.per_class, seed=options.seed)
    except FileNotFoundError as error:
        raise ProtocolInputError(
            f"imagenet_loc: {error} Every ImageId of the protocol must name a file ILSVRC/Data/CLS-LOC/val/<ImageId>.JPEG under --data-root {root}."
        ) from error
    except ValueError as error:
        raise ProtocolInputError(f"imagenet_loc: {error}") from error
    width = _id_width(len(samples))
    return [ClassificationItem(f"{index:0{width}d}-{sample.image_id}", int(sample.target), tuple(int(v) for v in sample.box), sample.load)
            for index, sample in enumerate(samples)]


def _face_protocol(info: ProtocolInfo, options: DataOptions) -> list[PairItem]:
    what = "face protocols need a folder with protocols/<Dataset>/<protocol>.csv and images/ (or --protocols-dir and --images-dir)"
    root = None if options.data_root is None else _existing_folder(options.data_root, "--data-root", what)
    protocols_dir = _existing_folder(options.protocols_dir or (root / "protocols" if root else None), "--protocols-dir", what)
    images_dir = _existing_folder(options.images_dir or (root / "images" if root else None), "--images-dir", what)
    items = []
    for dataset, name in info.splits:
        try:
            pairs = load_face_protocol(dataset, name, protocols_dir, images_dir)
        except (FileNotFoundError, ValueError) as error:
            raise ProtocolInputError(f"{dataset}/{name}: {error}") from error
        width = _id_width(len(pairs))
        split = f"{dataset}-{name}"
        items += [PairItem(f"{split}-{index:0{width}d}", split, bool(pair.genuine), pair.load) for index, pair in enumerate(pairs)]
    return items


def _shipped_faces(input_size: int) -> list[PairItem]:
    pairs = face_pairs(size=input_size)
    width = _id_width(len(pairs))
    return [PairItem(f"shipped-{index:0{width}d}", "shipped", bool(pair.genuine), (lambda pair=pair: (pair.gallery, pair.probe)))
            for index, pair in enumerate(pairs)]


def resolve_items(protocol: str, options: DataOptions, input_size: int, subset: int | None = None) -> list[Item]:
    """The protocol's items in order (ids sort in that order), ``subset`` evenly spaced ones per split if given.

    Args:
        protocol: a key of :data:`PROTOCOLS`.
        options: the user's data locations.
        input_size: the network's input side (the shipped faces are aligned at it).
        subset: keep this many items per split (a quick trial); None keeps all.

    Raises:
        ProtocolInputError: unknown protocol, a missing folder or CSV, a CSV naming images that do not exist,
            data options given to a shipped protocol, or an empty protocol.
    """
    if protocol not in PROTOCOLS:
        raise ProtocolInputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}.")
    info = PROTOCOLS[protocol]
    given = [flag for flag, value in (("--data-root", options.data_root), ("--protocol-csv", options.protocol_csv),
                                      ("--protocols-dir", options.protocols_dir), ("--images-dir", options.images_dir)) if value is not None]
    if not info.needs_data and given:
        raise ProtocolInputError(f"{protocol} uses the shipped data; drop {', '.join(given)}.")
    if protocol == "imagenet_loc":
        items: list[Item] = _imagenet(options)
    elif protocol == "shipped_objects":
        items = _shipped_objects()
    elif protocol == "shipped_faces":
        items = _shipped_faces(input_size)
    else:
        items = _face_protocol(info, options)
    if not items:
        raise ProtocolInputError(f"{protocol}: the protocol has no items.")
    return _subset(items, subset)


def _subset(items: Sequence[Item], subset: int | None) -> list[Item]:
    splits: dict[str, list[Item]] = {}
    for item in items:
        splits.setdefault(item.split, []).append(item)
    try:
        return [group[i] for group in splits.values() for i in evenly_spaced(len(group), subset)]
    except ValueError as error:
        raise ProtocolInputError(str(error)) from error
