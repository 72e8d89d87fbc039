"""Tests for fame_utils.data: shipped photos/boxes/faces, robust loading, ImageNet and face protocols."""

from __future__ import annotations

import csv
import io
import json

import h5py
import numpy as np
import pytest
from PIL import Image
from skimage.transform import SimilarityTransform

from fame_utils import data
from fame_utils.data import ImageLoadError, load_image, map_box
from fame_utils.data.build import parse_visp_boxes
from fame_utils.data.paths import DATA_DIR


# ---------------------------------------------------------------- shipped object photos
@pytest.fixture(scope="module")
def objects():
    return data.object_images()


@pytest.mark.slow
def test_every_object_photo_loads_with_valid_boxes_and_classes(objects):
    assert len(objects) >= 20
    categories = data.imagenet_categories()
    assert len(categories) == 1000
    for obj in objects:
        assert obj.image.mode == "RGB" and min(obj.image.size) >= 32, obj.name
        assert len(obj.classes) == len(obj.boxes) == len(obj.class_names) >= 1, obj.name
        assert obj.target == obj.classes[0]
        for cls, name, (x0, y0, x1, y1) in zip(obj.classes, obj.class_names, obj.boxes):
            assert 0 <= cls < 1000 and categories[cls] == name
            assert 0 <= x0 < x1 <= obj.image.width and 0 <= y0 < y1 <= obj.image.height, (obj.name, (x0, y0, x1, y1))
        assert obj.licence and obj.source["package"]


@pytest.mark.slow
def test_object_photos_are_distinct_and_copied_files_small(objects):
    assert len({obj.name for obj in objects}) == len(objects)
    assert len({obj.source["resolved"] for obj in objects}) == len(objects)
    for path in (DATA_DIR / "images").iterdir():
        assert path.stat().st_size < 2_000_000, path


def test_object_image_unknown_name_lists_known_names():
    with pytest.raises(KeyError, match="chelsea"):
        data.object_image("no-such-photo")


# ---------------------------------------------------------------- shipped faces
def test_pairs_csv_has_genuine_pairs_of_existing_identities():
    catalogue = json.loads((DATA_DIR / "faces" / "landmarks.json").read_text())["faces"]
    with (DATA_DIR / "faces" / "pairs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert set(rows[0]) == {"gallery", "probe", "genuine"}
    assert sum(row["genuine"] == "1" for row in rows) >= 8
    for row in rows:
        assert row["gallery"] in catalogue and row["probe"] in catalogue and row["gallery"] != row["probe"]
        same = catalogue[row["gallery"]]["identity"] == catalogue[row["probe"]]["identity"]
        assert (row["genuine"] == "1") == same


@pytest.mark.parametrize("size", [112, 150])
def test_face_pairs_serve_aligned_crops(size):
    pairs = data.face_pairs(size)
    assert len(pairs) == 45 and sum(p.genuine for p in pairs) == 8
    assert len({p.gallery_identity for p in pairs} | {p.probe_identity for p in pairs}) == 5
    for pair in pairs:
        assert pair.gallery.size == pair.probe.size == (size, size) and pair.gallery.mode == "RGB"
        assert pair.genuine == (pair.gallery_identity == pair.probe_identity)


def test_face_image_rejects_unknown_size_and_id():
    with pytest.raises(ValueError, match="112"):
        data.face_images(size=128)
    with pytest.raises(KeyError, match="obama_1"):
        data.face_image("nobody")


@pytest.mark.slow
@pytest.mark.parametrize("size", [112, 150])
def test_aligned_crops_put_the_eyes_on_the_template(size):
    """Eyes land on the template up to the 5-point least-squares residual (measured ≤ 3.7 px).

    Exact part: the stored landmarks mapped by the fitted transform. Re-detection part: MTCNN run again
    on the crop (edge-padded by half its size: MTCNN needs context around a face-filling crop), which
    adds the detector's own landmark noise.
    """
    template = data.TEMPLATES[size]
    catalogue = json.loads((DATA_DIR / "faces" / "landmarks.json").read_text())["faces"]
    redetected_errors = []
    for face in data.face_images(size):
        landmarks = np.asarray(catalogue[face.face_id]["landmarks"])
        fitted = SimilarityTransform.from_estimate(landmarks, template)(landmarks)
        assert np.abs(fitted[:2] - template[:2]).max() <= 4.0, face.face_id
        pad = size // 2
        padded = Image.fromarray(np.pad(np.asarray(face.image), ((pad, pad), (pad, pad), (0, 0)), mode="edge"))
        detections = data.detect_faces(padded)
        assert detections, face.face_id
        error = np.abs(detections[0].landmarks[:2] - pad - template[:2]).max()
        assert error <= 5.0, (face.face_id, error)
        redetected_errors.append(error)
    assert np.mean(redetected_errors) <= 3.5


@pytest.mark.slow
def test_align_face_on_a_shipped_portrait_and_error_without_face():
    portrait = data.face_image("obama_2", 150).image
    canvas = Image.new("RGB", (400, 300), (90, 120, 150))
    canvas.paste(portrait, (120, 60))
    aligned = data.align_face(canvas, size=112)
    assert aligned.size == (112, 112)
    with pytest.raises(data.FaceNotFoundError, match="no face"):
        data.align_face(Image.new("RGB", (200, 200), (128, 128, 128)))


def test_align_to_template_maps_landmarks_exactly():
    """On a linear ramp (R = 0.8 x, G = 0.8 y), landmarks at 2 * template + 20 give output(u, v) = ramp(2u + 20, 2v + 20)."""
    ys, xs = np.mgrid[0:300, 0:300]
    ramp = np.dstack([0.8 * xs, 0.8 * ys, np.zeros_like(xs)]).round().astype(np.uint8)
    landmarks = data.TEMPLATES[112] * 2.0 + 20.0
    aligned = np.asarray(data.align_to_template(Image.fromarray(ramp), landmarks, 112), dtype=float)
    v, u = np.mgrid[0:112, 0:112]
    assert np.abs(aligned[..., 0] - 0.8 * (2 * u + 20)).max() <= 1.0
    assert np.abs(aligned[..., 1] - 0.8 * (2 * v + 20)).max() <= 1.0
    with pytest.raises(ValueError, match="shape"):
        data.align_to_template(Image.fromarray(ramp), landmarks[:4])
    with pytest.raises(ValueError, match="template"):
        data.align_to_template(Image.fromarray(ramp), landmarks, 128)


def test_solvay_photo_and_boxes():
    photo = data.solvay_image()
    boxes = data.solvay_boxes()
    assert photo.size == (1280, 926) and len(boxes) == 30
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= photo.width and 0 <= y0 < y1 <= photo.height


def test_parse_visp_boxes_uses_row_col_corners():
    text = "detection_0\n376 35\n376 114\n454 35\n454 114\ndetection_1\n10 20\n10 40\n50 20\n50 40\n"
    assert parse_visp_boxes(text) == [(35, 376, 114, 454), (20, 10, 40, 50)]
    with pytest.raises(ValueError, match="line 2"):
        parse_visp_boxes("detection_0\n1 2 3\n")


def test_match_boxes_is_one_to_one():
    truth = [(0, 0, 10, 10), (20, 20, 30, 30)]
    assert data.match_boxes(truth, [(0, 0, 10, 10), (1, 1, 11, 11)]) == [1.0, 0.0]
    assert data.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


# ---------------------------------------------------------------- load_image
def _save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


@pytest.fixture
def photo_array():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)


def test_load_image_converts_modes(tmp_path, photo_array):
    grey = load_image(_save(Image.fromarray(photo_array[..., 0]), tmp_path / "grey.png"))
    assert grey.mode == "RGB" and np.array_equal(np.asarray(grey)[..., 1], photo_array[..., 0])
    rgba = np.dstack([photo_array, np.zeros((40, 60), np.uint8)])
    rgba[:20, :, 3] = 255
    loaded = np.asarray(load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png")))
    assert (loaded[20:] == 255).all() and np.array_equal(loaded[:20], photo_array[:20])
    palette = Image.fromarray(photo_array).convert("P")
    assert load_image(_save(palette, tmp_path / "palette.png")).mode == "RGB"
    cmyk = Image.fromarray(photo_array).convert("CMYK")
    assert load_image(_save(cmyk, tmp_path / "cmyk.jpg")).size == (60, 40)
    sixteen = (photo_array[..., 0].astype(np.uint16) * 257)
    loaded16 = np.asarray(load_image(_save(Image.fromarray(sixteen), tmp_path / "sixteen.png")))
    assert np.array_equal(loaded16[..., 0], photo_array[..., 0])


def test_load_image_applies_exif_rotation(tmp_path, photo_array):
    image = Image.fromarray(photo_array)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise for display
    path = _save(image, tmp_path / "rotated.jpg", exif=exif)
    assert load_image(path).size == (40, 60)


@pytest.mark.parametrize(
    "kind, pattern",
    [("missing", "not found"), ("empty", "empty"), ("text", "not an image"), ("truncated", "truncated"), ("tiny", "too small")],
)
def test_load_image_bad_files_raise_named_errors(tmp_path, photo_array, kind, pattern):
    path = tmp_path / f"{kind}.png"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a picture\n")
    elif kind == "truncated":
        buffer = io.BytesIO()
        Image.fromarray(photo_array).save(buffer, format="PNG")
        path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    elif kind == "tiny":
        _save(Image.fromarray(photo_array[:20, :20]), path)
    with pytest.raises(ImageLoadError, match=pattern) as info:
        load_image(path)
    assert isinstance(info.value, ValueError) and path.name in str(info.value)


# ---------------------------------------------------------------- ImageNet protocol and boxes
def test_map_box_full_image_and_aspect_modes():
    for size in [(500, 375), (375, 500), (224, 224), (640, 640)]:
        for faithful in (False, True):
            assert map_box((0, 0, *size), size, paper_faithful=faithful) == (0, 0, 224, 224)
    box = (50, 50, 150, 150)
    corrected, paper = map_box(box, (500, 375)), map_box(box, (500, 375), paper_faithful=True)
    # hand computation: s = 232/375, offset_x = (500 s - 224)/2 = 42.67 → x0 = max(30.9 - 42.7, 0) = 0, x1 = 92.8 - 42.7 = 50
    assert corrected == (0, 26, 50, 88)
    assert paper == (19, 26, 65, 88)  # s_x = 232/500: 23.2 - 4 = 19, 69.6 - 4 = 65
    assert max(abs(a - b) for a, b in zip(corrected, paper)) > 10
    square = (100, 120, 300, 400)
    assert max(abs(a - b) for a, b in zip(map_box(square, (500, 500)), map_box(square, (500, 500), paper_faithful=True))) <= 1
    with pytest.raises(ValueError, match="empty"):
        map_box((10, 10, 5, 20), (100, 100))


def test_parse_prediction_string():
    text = "n01443537 189 116 499 374 n01443537 0 201 181 374 "
    assert data.parse_prediction_string(text) == [("n01443537", (189, 116, 499, 374)), ("n01443537", (0, 201, 181, 374))]
    for bad in ["", "n01443537 1 2 3", "n01443537 1 2 x 4", "n01443537 10 10 5 20"]:
        with pytest.raises(ValueError):
            data.parse_prediction_string(bad)


def _imagenet_root(tmp_path, per_class=3, synsets=("n00000001", "n00000002", "n00000003")):
    root = tmp_path / "imagenet"
    val = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    val.mkdir(parents=True)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{s} class {i}\n" for i, s in enumerate(synsets)))
    rows = ["ImageId,PredictionString"]
    for c, synset in enumerate(synsets):
        for k in range(per_class):
            image_id = f"ILSVRC2012_val_{c * 100 + k:08d}"
            Image.new("RGB", (50 + k, 40), (c * 60, k * 40, 0)).save(val / f"{image_id}.JPEG")
            rows.append(f"{image_id},{synset} {k} 1 {k + 20} 30 {synset} 0 0 10 10 ")
    (root / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    return root


def test_imagenet_protocol_is_seeded_per_class_first_box(tmp_path):
    root = _imagenet_root(tmp_path)
    samples = data.imagenet_protocol(root, per_class=2, seed=0)
    assert [s.target for s in samples] == [0, 0, 1, 1, 2, 2]
    assert all(s.synset == f"n0000000{s.target + 1}" for s in samples)
    for s in samples:
        k = int(s.image_id[-2:])
        assert s.box == (k, 1, k + 20, 30) and len(s.boxes) == 2
        assert s.load().size == (50 + k, 40)
    assert len({s.image_id for s in samples}) == 6  # without replacement
    again = data.imagenet_protocol(root, per_class=2, seed=0)
    assert [s.image_id for s in again] == [s.image_id for s in samples]
    with_replacement = data.imagenet_protocol(root, per_class=5, seed=0, replace=True)
    assert len(with_replacement) == 15
    with pytest.raises(ValueError, match="only 3"):
        data.imagenet_protocol(root, per_class=5)


def test_imagenet_protocol_csv_round_trip_and_errors(tmp_path):
    root = _imagenet_root(tmp_path)
    path = data.write_imagenet_protocol(data.sample_imagenet_protocol(root, per_class=1, seed=3), tmp_path / "protocol.csv")
    loaded = data.load_imagenet_protocol(path, root)
    assert [s.target for s in loaded] == [0, 1, 2] and [s.line for s in loaded] == [2, 3, 4]
    lines = path.read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], lines[1], lines[2].replace(" 1 ", " 1 x ", 1)]) + "\n")
    with pytest.raises(ValueError, match="line 3"):
        data.load_imagenet_protocol(bad, root)
    missing = tmp_path / "missing.csv"
    missing.write_text("\n".join([lines[0], lines[1].replace("val_", "val_9")]) + "\n")
    with pytest.raises(FileNotFoundError, match="line 2"):
        data.load_imagenet_protocol(missing, root)
    with pytest.raises(FileNotFoundError, match="ImageNet val does not ship"):
        data.imagenet_protocol(tmp_path / "nowhere")


# ---------------------------------------------------------------- face protocols
def _face_dataset(tmp_path, storage):
    protocols, images = tmp_path / "protocols", tmp_path / storage
    (protocols / "ARface").mkdir(parents=True)
    images.mkdir()
    rows = [("s1/neutral.png", "s1/scarf.png", 1), ("s1/neutral.png", "s2/scarf.png", 0)]
    (protocols / "ARface" / "scarf.csv").write_text("G,P,T\n" + "".join(f"{g},{p},{t}\n" for g, p, t in rows))
    for index, name in enumerate(["s1/neutral.png", "s1/scarf.png", "s2/scarf.png"]):
        pixels = np.full((112, 112, 3), index * 50, np.uint8)
        if storage == "hdf5":
            with h5py.File(images / data.h5_filename(name), "w") as handle:
                handle["data"] = pixels
        else:
            (images / name).parent.mkdir(exist_ok=True)
            Image.fromarray(pixels).save(images / name)
    return protocols, images


@pytest.mark.parametrize("storage", ["hdf5", "images"])
def test_face_protocol_loads_pairs(tmp_path, storage):
    protocols, images = _face_dataset(tmp_path, storage)
    pairs = data.load_face_protocol("ARface", "scarf", protocols, images)
    assert [p.genuine for p in pairs] == [True, False] and {p.storage for p in pairs} == {storage}
    gallery, probe = pairs[1].load()
    assert gallery.size == (112, 112) and np.asarray(gallery)[0, 0, 0] == 0 and np.asarray(probe)[0, 0, 0] == 100


def test_face_protocol_errors(tmp_path):
    protocols, images = _face_dataset(tmp_path, "hdf5")
    with pytest.raises(FileNotFoundError, match="glass.csv"):
        data.load_face_protocol("ARface", "glass", protocols, images)
    with pytest.raises(ValueError, match="use one of"):
        data.load_face_protocol("ARface", "far", protocols, images)
    csv_path = protocols / "ARface" / "scarf.csv"
    csv_path.write_text("G,P,T\ns1/neutral.png,s1/scarf.png,1\ns1/neutral.png,s2/scarf.png,yes\n")
    with pytest.raises(ValueError, match="line 3"):
        data.load_face_protocol("ARface", "scarf", protocols, images)
    csv_path.write_text("G,P,T\ns1/neutral.png,s9/scarf.png,0\n")
    with pytest.raises(FileNotFoundError, match="line 2"):
        data.load_face_protocol("ARface", "scarf", protocols, images)
    assert data.h5_filename("s1/a/neutral.png") == "s1_a_neutral.h5"
    with h5py.File(images / "bad.h5", "w") as handle:
        handle["data"] = np.zeros((112, 112), np.uint8)
    with pytest.raises(ValueError, match="HxWx3"):
        data.load_crop(images / "bad.h5")
