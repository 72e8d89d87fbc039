"""Faces: MTCNN detection + 5-point similarity alignment, and the shipped aligned portrait pairs.

Alignment: MTCNN (facenet-pytorch weights) finds faces and 5 landmarks (left eye,
right eye, nose tip, left and right mouth corner, in image coordinates). A similarity transform
(rotation, uniform scale, translation; least squares, ``SimilarityTransform.from_estimate``) maps
them onto a template; the image is warped bilinearly with edge-mode borders.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from skimage.transform import SimilarityTransform, warp

from fame_utils.data.images import to_rgb
from fame_utils.data.paths import DATA_DIR

__all__ = [
    "FACES_DIR",
    "TEMPLATES",
    "MIN_FACE_SIDE",
    "AlignmentError",
    "FaceDetection",
    "FaceImage",
    "FaceNotFoundError",
    "FacePair",
    "align_face",
    "align_to_template",
    "box_iou",
    "detect_faces",
    "face_image",
    "face_images",
    "face_pairs",
    "match_boxes",
    "solvay_boxes",
    "solvay_image",
]

FACES_DIR = DATA_DIR / "faces"
LANDMARKS_JSON = FACES_DIR / "landmarks.json"
PAIRS_CSV = FACES_DIR / "pairs.csv"
SOLVAY_JPEG = FACES_DIR / "solvay_1927.jpg"
SOLVAY_BOXES_JSON = FACES_DIR / "solvay_1927_boxes.json"

#: Landmark targets (left eye, right eye, nose, left mouth, right mouth) in output pixels.
TEMPLATES: dict[int, np.ndarray] = {
    112: np.array(  # ArcFace / SFace 112x112 template
        [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
    ),
    150: np.array(  # approximate dlib 150x150 chip, from dlib's mean face shape
        [[47.55, 46.60], [100.48, 46.60], [74.01, 76.56], [50.41, 103.02], [97.61, 103.02]]
    ),
}

#: Smallest face MTCNN looks for, in pixels; an image with a shorter side cannot hold a detectable face.
MIN_FACE_SIDE = 20
LANDMARK_NAMES = ("left eye", "right eye", "nose tip", "left mouth corner", "right mouth corner")

Box = tuple[int, int, int, int]


class FaceNotFoundError(ValueError):
    """MTCNN found no face in an image (or the image is too small to hold one)."""


class AlignmentError(ValueError):
    """Landmarks or an image that cannot be aligned: wrong shape, NaN/inf, degenerate, or an empty image."""


@dataclass(frozen=True)
class FaceDetection:
    """One MTCNN detection: box (x0, y0, x1, y1, float pixels), probability, 5 landmarks (5, 2) as (x, y)."""

    box: tuple[float, float, float, float]
    probability: float
    landmarks: np.ndarray = field(repr=False)


@dataclass(frozen=True)
class FaceImage:
    """One shipped aligned portrait."""

    face_id: str
    identity: str
    image: Image.Image = field(repr=False)
    source: dict[str, str]
    licence: str
    credit: str


@dataclass(frozen=True)
class FacePair:
    """A verification pair of aligned crops; ``genuine`` means same identity."""

    gallery: Image.Image = field(repr=False)
    probe: Image.Image = field(repr=False)
    genuine: bool
    gallery_id: str
    probe_id: str
    gallery_identity: str
    probe_identity: str


@lru_cache(maxsize=1)
def _mtcnn():
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, min_face_size=MIN_FACE_SIDE, device="cpu")


def detect_faces(image: Image.Image) -> list[FaceDetection]:
    """All MTCNN face detections in ``image`` (any PIL mode), most confident first.

    Empty if there is none, including for images whose shorter side is below ``MIN_FACE_SIDE`` pixels.
    """
    rgb = to_rgb(image)
    if min(rgb.size) < MIN_FACE_SIDE:
        return []
    boxes, probabilities, landmarks = _mtcnn().detect(rgb, landmarks=True)
    if boxes is None:
        return []
    boxes = np.asarray(boxes.tolist(), dtype=np.float64)
    probabilities = np.asarray(probabilities.tolist(), dtype=np.float64)
    landmarks = np.asarray(landmarks.tolist(), dtype=np.float64)
    order = np.argsort(-probabilities, kind="stable")
    return [FaceDetection(tuple(boxes[i]), float(probabilities[i]), landmarks[i]) for i in order]


def align_to_template(image: Image.Image, landmarks: np.ndarray, size: int = 112) -> Image.Image:
    """Warp ``image`` so that its 5 ``landmarks`` land on ``TEMPLATES[size]`` (bilinear, edge borders).

    Raises:
        ValueError: unknown size.
        AlignmentError: an empty image, landmarks not (5, 2) numbers, NaN/inf landmarks (the points are
            named), or landmarks that define no similarity transform (e.g. all at one point).
    """
    if size not in TEMPLATES:
        raise ValueError(f"no alignment template for size {size}; use one of {sorted(TEMPLATES)}.")
    rgb = to_rgb(image)
    if min(rgb.size) < 1:
        raise AlignmentError(f"cannot align an empty {rgb.width}x{rgb.height} image.")
    points = _landmark_points(landmarks)
    try:
        transform = SimilarityTransform.from_estimate(points, TEMPLATES[size])
    except np.linalg.LinAlgError as error:
        raise AlignmentError(f"could not estimate a similarity transform from landmarks {points.tolist()} ({error}).") from error
    if not transform:
        raise AlignmentError(
            f"could not estimate a similarity transform from landmarks {points.tolist()}; the five points must be distinct "
            "(left eye, right eye, nose tip, left and right mouth corner as (x, y) pixels)."
        )
    pixels = np.asarray(rgb, dtype=np.float64) / 255.0
    warped = warp(pixels, transform.inverse, output_shape=(size, size), order=1, mode="edge")
    return Image.fromarray(np.clip(np.round(warped * 255.0), 0, 255).astype(np.uint8), mode="RGB")


def _landmark_points(landmarks: np.ndarray) -> np.ndarray:
    """``landmarks`` as a finite (5, 2) float array, or an :class:`AlignmentError` saying what is wrong."""
    try:
        points = np.asarray(landmarks, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise AlignmentError(f"landmarks must be five (x, y) number pairs, got {landmarks!r}.") from error
    if points.shape != (5, 2):
        raise AlignmentError(f"landmarks must have shape (5, 2) (x, y per point), got {points.shape}.")
    bad = [name for name, point in zip(LANDMARK_NAMES, points) if not np.isfinite(point).all()]
    if bad:
        raise AlignmentError(f"landmarks must be finite; NaN or infinite coordinates at: {', '.join(bad)}.")
    return points


def align_face(image: Image.Image, size: int = 112) -> Image.Image:
    """Detect the most confident face in ``image`` and return it aligned to the ``size`` template.

    ``size`` 112 gives the ArcFace/SFace crop, 150 the (approximate) dlib chip.

    Raises:
        FaceNotFoundError: MTCNN found no face, or the image's shorter side is below ``MIN_FACE_SIDE``
            pixels (try a larger, frontal, well-lit photo).
    """
    rgb = to_rgb(image)
    if min(rgb.size) < MIN_FACE_SIDE:
        raise FaceNotFoundError(
            f"the {rgb.width}x{rgb.height} image is too small to hold a face: MTCNN looks for faces of at least "
            f"{MIN_FACE_SIDE} px, so the shorter side must be at least {MIN_FACE_SIDE} px."
        )
    detections = detect_faces(rgb)
    if not detections:
        raise FaceNotFoundError(
            f"no face found in the {rgb.width}x{rgb.height} image; use a photo with a visible, roughly frontal face "
            f"at least {MIN_FACE_SIDE} px wide."
        )
    return align_to_template(rgb, detections[0].landmarks, size)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(truth: Sequence[Sequence[float]], detected: Sequence[Sequence[float]], threshold: float = 0.3) -> list[float]:
    """Greedy one-to-one matching: for each ground-truth box, the IoU of its matched detection (0 if none ≥ threshold).

    Pairs are taken in decreasing IoU order; each detection is used at most once.
    """
    candidates = sorted(((box_iou(t, d), i, j) for i, t in enumerate(truth) for j, d in enumerate(detected)), reverse=True)
    matched = [0.0] * len(truth)
    used_truth: set[int] = set()
    used_detected: set[int] = set()
    for score, i, j in candidates:
        if score < threshold:
            break
        if i in used_truth or j in used_detected:
            continue
        matched[i] = score
        used_truth.add(i)
        used_detected.add(j)
    return matched


def _catalogue() -> dict:
    if not LANDMARKS_JSON.exists():
        raise FileNotFoundError(f"{LANDMARKS_JSON} is missing; regenerate it with `python -m fame_utils.data align`.")
    return json.loads(LANDMARKS_JSON.read_text())


def _crop_path(face_id: str, size: int) -> Path:
    if size not in TEMPLATES:
        raise ValueError(f"aligned crops exist for sizes {sorted(TEMPLATES)}, not {size}.")
    return FACES_DIR / f"aligned_{size}" / f"{face_id}.png"


def face_image(face_id: str, size: int = 112) -> FaceImage:
    """One shipped aligned portrait by id (e.g. ``"obama_1"``).

    Raises:
        KeyError: unknown id (the message lists the known ones).
    """
    faces = _catalogue()["faces"]
    if face_id not in faces:
        raise KeyError(f"no shipped face {face_id!r}; known ids: {', '.join(faces)}.")
    entry = faces[face_id]
    with Image.open(_crop_path(face_id, size)) as crop:
        image = crop.convert("RGB")
    return FaceImage(face_id, entry["identity"], image, entry["source"], entry["licence"], entry["credit"])


def face_images(size: int = 112) -> list[FaceImage]:
    """All 10 shipped aligned portraits (5 identities), at ``size`` 112 (ArcFace) or 150 (dlib)."""
    return [face_image(face_id, size) for face_id in _catalogue()["faces"]]


def face_pairs(size: int = 112) -> list[FacePair]:
    """Every pair of ``data/faces/pairs.csv`` with its aligned crops (8 genuine, 37 impostor).

    Raises:
        ValueError: a row of pairs.csv names an unknown face or has a bad ``genuine`` value.
    """
    faces = {face.face_id: face for face in face_images(size)}
    pairs = []
    with PAIRS_CSV.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            for key in ("gallery", "probe"):
                if row[key] not in faces:
                    raise ValueError(f"{PAIRS_CSV}, line {line}: unknown face id {row[key]!r} in column {key!r}.")
            if row["genuine"] not in ("0", "1"):
                raise ValueError(f"{PAIRS_CSV}, line {line}: genuine must be 0 or 1, got {row['genuine']!r}.")
            gallery, probe = faces[row["gallery"]], faces[row["probe"]]
            pairs.append(
                FacePair(gallery.image, probe.image, row["genuine"] == "1", gallery.face_id, probe.face_id, gallery.identity, probe.identity)
            )
    return pairs


def solvay_image() -> Image.Image:
    """The 1927 Solvay conference group photo (public domain; 1280 px wide), RGB."""
    with Image.open(SOLVAY_JPEG) as photo:
        return photo.convert("RGB")


def solvay_boxes() -> list[Box]:
    """The 30 ground-truth face boxes of the Solvay photo as (x0, y0, x1, y1) pixels."""
    return [tuple(box) for box in json.loads(SOLVAY_BOXES_JSON.read_text())["boxes"]]
