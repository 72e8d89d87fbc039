"""Protocol runs end to end on the shipped networks: torchrun with 2 gloo ranks equals one process item by item,
a run killed with SIGTERM resumes and recomputes only what is missing, damaged items are recomputed and never
merged, a second run on the same folder is refused, and bad input stops before any work."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fame_utils.data import object_images, write_imagenet_protocol
from fame_utils.protocols import IncompleteStoreError, report, stored_table
from fame_utils.protocols.__main__ import EXIT_USER_ERROR, main
from fame_utils.protocols.store import load_arrays

pytestmark = pytest.mark.slow

#: Every run compares with another one, so all use one CPU thread per rank (thread counts change float rounding).
COMMON = ["--threads", "1", "--no-progress"]
OBJECTS = ["--protocol", "shipped_objects", "--network", "efficientnet_lite0", "--methods", "Grad-CAM", "FAME", "--iterations", "20", "--subset", "6", *COMMON]
OBJECT_ITEMS = 6 * 2
FACES = ["--protocol", "shipped_faces", "--network", "sface", "--methods", "Grad-CAM", "FAME", "--iterations", "3", "--subset", "6", *COMMON]
IMAGENET_PHOTOS = ["chelsea", "coffee", "orange", "squirrel"]


def run_here(args: list[str], out: Path) -> int:
    """One process, in this interpreter (rank 0 of 1)."""
    return main(["run", *args, "--out", str(out)])


def torchrun(args: list[str], out: Path) -> subprocess.Popen:
    """``torchrun --standalone --nproc_per_node=2`` (gloo on the CPU), output captured."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "fame_utils.protocols",
               "run", *args, "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "TQDM_DISABLE": "1"})


def torchrun_done(args: list[str], out: Path) -> str:
    process = torchrun(args, out)
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output
    return output


def stored_files(out: Path) -> list[Path]:
    return sorted(path.relative_to(out) for folder in ("items", "context") for path in (out / folder).rglob("*.npz"))


def assert_same_store(expected: Path, actual: Path) -> None:
    """Same files; maps (float16) and metric inputs bit-identical."""
    assert stored_files(actual) == stored_files(expected)
    for relative in stored_files(expected):
        want, got = load_arrays(expected / relative), load_arrays(actual / relative)
        assert set(got) == set(want), relative
        for name in want:
            assert got[name].dtype == want[name].dtype, (relative, name)
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"{relative}: {name}")


def assert_same_tables(expected: Path, actual: Path) -> None:
    want, got = report([expected]), report([actual])
    pd.testing.assert_frame_equal(got.long, want.long, check_exact=True)
    pd.testing.assert_frame_equal(got.table, want.table)


def last_run(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["runs"][-1]


def imagenet_folder(root: Path, names: list[str]) -> Path:
    """The Kaggle ImageNet-LOC layout made of shipped photos (JPEG), with a protocol CSV; returns the CSV."""
    synsets = [f"n{index:08d}" for index in range(1000)]
    val = root / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    val.mkdir(parents=True)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{synset} class {index}\n" for index, synset in enumerate(synsets)))
    rows = []
    for number, photo in enumerate(object_images(names), start=1):
        image_id = f"ILSVRC2012_val_{number:08d}"
        photo.image.save(val / f"{image_id}.JPEG", quality=95)
        boxes = "".join(f"{synsets[c]} {x0} {y0} {x1} {y1} " for c, (x0, y0, x1, y1) in zip(photo.classes, photo.boxes))
        rows.append({"ImageId": image_id, "PredictionString": boxes, "target": synsets[photo.classes[0]]})
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "".join(f"{r['ImageId']},{r['PredictionString']}\n" for r in rows))
    return write_imagenet_protocol(rows, root / "protocol.csv")


@pytest.fixture(scope="module")
def objects_single(tmp_path_factory) -> Path:
    """The uninterrupted single-process run every object comparison refers to."""
    out = tmp_path_factory.mktemp("objects") / "single"
    assert run_here(OBJECTS, out) == 0
    return out


# ---------------------------------------------------------------- 2 ranks = 1 process


def test_two_ranks_on_shipped_photos_equal_one_process_item_by_item(objects_single, tmp_path):
    out = tmp_path / "ranks2"
    output = torchrun_done(OBJECTS, out)
    assert_same_store(objects_single, out)
    assert_same_tables(objects_single, out)
    run = last_run(out)
    assert run["world_size"] == 2 and run["computed"] == OBJECT_ITEMS and run["reused"] == 0
    assert [(r["rank"], r["computed"]) for r in run["ranks"]] == [(0, 6), (1, 6)]  # chunks 0, 2, 4 and 1, 3, 5, two methods each
    assert "[rank 0/2]" in output and "[rank 1/2]" in output and "items/s" in output


def test_two_ranks_on_an_imagenet_layout_folder_equal_one_process(tmp_path):
    csv = imagenet_folder(tmp_path / "imagenet", IMAGENET_PHOTOS)
    args = ["--protocol", "imagenet_loc", "--network", "efficientnet_lite0", "--data-root", str(tmp_path / "imagenet"), "--protocol-csv", str(csv),
            "--methods", "Grad-CAM", "FAME", "--iterations", "3", *COMMON]
    assert run_here(args, tmp_path / "single") == 0
    torchrun_done(args, tmp_path / "ranks2")
    assert_same_store(tmp_path / "single", tmp_path / "ranks2")
    assert_same_tables(tmp_path / "single", tmp_path / "ranks2")
    assert [p.name for p in sorted((tmp_path / "single" / "items" / "fame").iterdir())] == [
        f"{index:05d}-ILSVRC2012_val_{index + 1:08d}.npz" for index in range(len(IMAGENET_PHOTOS))]


def test_two_ranks_on_shipped_face_pairs_equal_one_process(tmp_path):
    assert run_here(FACES, tmp_path / "single") == 0
    torchrun_done(FACES, tmp_path / "ranks2")
    assert_same_store(tmp_path / "single", tmp_path / "ranks2")  # includes the split's clean scores and threshold
    assert_same_tables(tmp_path / "single", tmp_path / "ranks2")
    table = report([tmp_path / "single"]).long
    assert list(table["method"]) == ["Grad-CAM", "FAME"] and set(table["pairs"]) == {6}


def test_notebooks_read_the_complete_runs_of_a_folder(objects_single, tmp_path):
    stored, status = stored_table(objects_single.parent, ["shipped_objects"], "efficientnet_lite0", "")
    pd.testing.assert_frame_equal(stored.long, report([objects_single]).long, check_exact=True)
    assert status == f"merged 1 protocol run(s): {objects_single}"
    missing, hint = stored_table(tmp_path, ["imagenet_loc"], "resnet50", "--weights hub --data-root /data/imagenet")
    assert missing is None and f"No complete imagenet_loc run under {tmp_path}" in hint and "--out " + str(tmp_path / "imagenet_loc_resnet50") in hint


# ---------------------------------------------------------------- kill, resume, concurrent run


def test_killed_run_refuses_a_second_run_then_resumes_only_the_missing_items(objects_single, tmp_path, capsys):
    out = tmp_path / "killed"
    process = torchrun(OBJECTS, out)
    deadline = time.monotonic() + 600
    while not list((out / "items").rglob("*.npz")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.poll() is None, "the run ended before the test could interrupt it:\n" + (process.stdout.read() if process.stdout else "")

    lock = json.loads((out / "run.lock").read_text())
    assert run_here(OBJECTS, out) == EXIT_USER_ERROR
    refusal = capsys.readouterr().err
    assert "in use by another run" in refusal and f"pid {lock['pid']}" in refusal and lock["host"] in refusal

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0, output
    done = [path for path in stored_files(out) if path.parts[0] == "items"]
    assert 0 < len(done) < OBJECT_ITEMS, f"{len(done)} items stored when the run was killed"
    assert not (out / "run.lock").exists()  # released while unwinding

    assert run_here(OBJECTS, out) == 0  # resume in one process: ranks may change between runs
    resumed = last_run(out)
    assert (resumed["computed"], resumed["reused"], resumed["recomputed_damaged"]) == (OBJECT_ITEMS - len(done), len(done), 0)
    assert_same_store(objects_single, out)
    assert_same_tables(objects_single, out)


def test_damaged_items_are_never_merged_and_are_recomputed(objects_single, tmp_path):
    out = tmp_path / "damaged"
    shutil.copytree(objects_single, out)
    truncated, flipped = out / "items" / "fame" / "00000-chelsea.npz", out / "items" / "grad-cam" / "00011-apple.npz"
    truncated.write_bytes(truncated.read_bytes()[:100])
    content = bytearray(flipped.read_bytes())
    content[len(content) // 2] ^= 0xFF
    flipped.write_bytes(bytes(content))

    with pytest.raises(IncompleteStoreError) as refused:
        report([out])
    assert "2 of 12 items are missing or damaged" in str(refused.value) and "00000-chelsea" in str(refused.value)

    assert run_here(OBJECTS, out) == 0
    repaired = last_run(out)
    assert (repaired["computed"], repaired["reused"], repaired["recomputed_damaged"]) == (2, OBJECT_ITEMS - 2, 2)
    assert_same_store(objects_single, out)
    assert_same_tables(objects_single, out)


def test_resume_with_other_settings_is_refused(objects_single, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(objects_single, out)
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*")}
    changed = [arg if arg != "20" else "7" for arg in OBJECTS]
    assert run_here(changed, out) == EXIT_USER_ERROR
    message = capsys.readouterr().err
    assert "holds a run with other settings (settings.fame.iterations: the folder has 20, this run asks for 7)" in message
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*")} == before


# ---------------------------------------------------------------- bad input: one clear error, nothing written


def test_missing_dataset_path_stops_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    code = run_here(["--protocol", "imagenet_loc", "--network", "efficientnet_lite0", "--data-root", str(tmp_path / "nowhere"), *COMMON], out)
    message = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and not out.exists()
    assert "--data-root" in message and str(tmp_path / "nowhere") in message and "does not exist" in message
    assert message.startswith("fame_utils.protocols run: error:")


def test_protocol_csv_with_unknown_image_ids_stops_before_any_work(tmp_path, capsys):
    csv = imagenet_folder(tmp_path / "imagenet", ["coffee"])
    csv.write_text(csv.read_text() + "ILSVRC2012_val_99999999,n00000967 10 10 50 50 ,n00000967\n")
    out = tmp_path / "out"
    code = run_here(["--protocol", "imagenet_loc", "--network", "efficientnet_lite0", "--data-root", str(tmp_path / "imagenet"),
                     "--protocol-csv", str(csv), *COMMON], out)
    message = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and not out.exists()
    assert "1 image file(s)" in message and "line 3" in message and "ILSVRC2012_val_99999999" in message and "<ImageId>.JPEG" in message


def test_network_without_weights_stops_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    code = run_here(["--protocol", "shipped_objects", "--network", "resnet50", *COMMON], out)
    message = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and not out.exists()
    assert "--network resnet50 --weights shipped" in message and "WeightsNotAvailable" not in message


def test_unknown_method_stops_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    code = run_here(["--protocol", "shipped_faces", "--network", "sface", "--methods", "FAME", "HiResCAM", *COMMON], out)
    message = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and not out.exists()
    assert "unknown verification method(s) ['HiResCAM']" in message and "'CorrRISE'" in message


def test_face_protocol_without_its_csv_stops_before_any_work(tmp_path, capsys):
    for folder in ("protocols", "images"):
        (tmp_path / "cfp" / folder).mkdir(parents=True)
    out = tmp_path / "out"
    code = run_here(["--protocol", "cfp_fp", "--network", "sface", "--data-root", str(tmp_path / "cfp"), *COMMON], out)
    message = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and not out.exists()
    assert str(tmp_path / "cfp" / "protocols" / "CFP" / "01FP.csv") in message


def test_unrelated_non_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert run_here(["--protocol", "shipped_objects", "--network", "efficientnet_lite0", "--subset", "1", *COMMON], tmp_path) == EXIT_USER_ERROR
    assert "holds no protocol run" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
