"""What a run leaves behind when it is killed, doubled, or handed a broken manifest or a bad name."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from PIL import Image

from fame_utils.workbook.run import main, run_notebooks
from fame_utils.workbook.session import (
    LAB_DIR, RUN_ID_ENV, RUN_SHA_ENV, OutputDirError, RunLock, Session, update_manifest,
)

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def _toy(folder: Path, figures: int, pixels: int, pid_file: Path | None = None) -> Path:
    """A two-cell notebook that saves ``figures`` random images of ``pixels``² (and writes its kernel pid)."""
    folder.mkdir(parents=True, exist_ok=True)
    pid_line = f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))" if pid_file else ""
    parameters = nbformat.v4.new_code_cell('profile = "default"\nseed = 0\noutput_dir = None')
    parameters.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import os\nimport matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
        "from fame_utils.workbook.session import Session\n"
        f"{pid_line}\n"
        'run = Session.start("01_toy", profile=profile, seed=seed, output_dir=output_dir, device="cpu")\n'
        f"for index in range({figures}):\n"
        f"    fig = plt.figure(figsize=({pixels} / 100, {pixels} / 100), dpi=100)\n"
        f"    fig.figimage(np.random.default_rng(index).random(({pixels}, {pixels})))\n"
        '    run.save_figure(fig, f"fig_{index}")\n    plt.close(fig)\n    run.record(saved=index)'
    )
    nb = nbformat.v4.new_notebook(cells=[parameters, body])
    nb.metadata.update({"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    nbformat.write(nb, folder / "01_toy.ipynb")
    return folder


def _manifest(output: Path) -> dict:
    return json.loads((output / "manifest.json").read_text())


def _opens(path: Path) -> None:
    """Raise unless ``path`` is a complete PNG, PDF or JSON file."""
    if path.suffix == ".png":
        with Image.open(path) as image:
            image.load()
    elif path.suffix == ".pdf":
        data = path.read_bytes()
        assert data.startswith(b"%PDF") and b"%%EOF" in data[-64:], f"{path.name} is a truncated PDF"
    else:
        json.loads(path.read_text())


def _wait_dead(pid: int, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def test_sigkill_during_saves_leaves_only_complete_ok_files_and_keeps_earlier_ones(tmp_path: Path) -> None:
    output = tmp_path / "out"
    run_notebooks("smoke", output, notebook_dir=_toy(tmp_path / "first", figures=3, pixels=50))
    first = _manifest(output)
    earlier = {name: (output / f"{name}.png").read_bytes() for name in first["figures"]}
    pid_file = tmp_path / "kernel.pid"
    notebooks = _toy(tmp_path / "second", figures=40, pixels=1500, pid_file=pid_file)
    code = f"from fame_utils.workbook.run import run_notebooks; run_notebooks('smoke', {str(output)!r}, notebook_dir=__import__('pathlib').Path({str(notebooks)!r}))"
    runner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _manifest(output)["figures"]["fig_0"]["run_id"] == first["run"]["run_id"] and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.send_signal(signal.SIGKILL)
    runner.wait()
    _wait_dead(int(pid_file.read_text()))

    manifest = _manifest(output)
    assert manifest["notebooks"]["01_toy"]["status"] == "running"
    for name, entry in manifest["figures"].items():
        if entry["status"] == "ok":
            for file in entry["files"]:
                _opens(output / file)
        if entry["run_id"] == first["run"]["run_id"]:
            assert (output / f"{name}.png").read_bytes() == earlier[name], f"{name}: the earlier good version was lost"
    _opens(output / "executed" / "01_toy.json")
    with pytest.warns(UserWarning, match="stale lock"):
        lock = RunLock.acquire(output)
    lock.release()
    manifest = _manifest(output)
    assert manifest["notebooks"]["01_toy"]["status"] == "interrupted"
    assert {entry["status"] for entry in manifest["figures"].values()} <= {"ok", "interrupted"}
    assert not list(output.glob(".*.tmp"))


def test_second_run_into_the_same_folder_is_refused_naming_the_first(tmp_path: Path) -> None:
    lock = RunLock.acquire(tmp_path)
    try:
        second = subprocess.run([sys.executable, "-m", "fame_utils.workbook.run", "--profile", "smoke", "--output", str(tmp_path),
                                 "--notebooks", "00"], capture_output=True, text=True, timeout=300)
    finally:
        lock.release()
    assert second.returncode == 2
    assert f"pid {os.getpid()} on {lock.record['host']}, started {lock.record['started']}" in second.stderr
    assert "command:" in second.stderr and not (tmp_path / "executed" / "00_data_tour.ipynb").exists()


def test_corrupt_manifest_is_moved_aside_named_and_rebuilt(tmp_path: Path) -> None:
    conflicted = '<<<<<<< HEAD\n{"figures": {}}\n=======\n{"tables": {}}\n>>>>>>> theirs\n'
    (tmp_path / "manifest.json").write_text(conflicted)
    with pytest.warns(UserWarning, match=r"manifest.json is corrupt .*moved it to manifest.json.corrupt-"):
        update_manifest(tmp_path, "figures", "fig_a", {"status": "ok"})
    (aside,) = tmp_path.glob("manifest.json.corrupt-*")
    assert aside.read_text() == conflicted
    assert _manifest(tmp_path)["figures"] == {"fig_a": {"status": "ok"}}


def test_names_leaving_the_folder_and_unwritable_folders_are_named_errors(tmp_path: Path) -> None:
    run = Session.start("99_x", profile="smoke", seed=0, output_dir=tmp_path / "out", device="cpu")
    with pytest.raises(OutputDirError, match=r"'\.\./x'"):
        run.save_table(pd.DataFrame({"a": [1]}), "../x")
    assert not (tmp_path / "x.csv").exists()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(OutputDirError, match=r"a_file/out is not writable"):
        Session.start("99_x", profile="smoke", seed=0, output_dir=tmp_path / "a_file" / "out", device="cpu")


def test_notebooks_flag_without_names_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--profile", "smoke", "--notebooks"])
    assert exit_info.value.code == 2
    assert "--notebooks: expected at least one argument" in capsys.readouterr().err


def test_interactive_run_writes_to_build_lab_and_leaves_figures_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nbclient import NotebookClient

    figures = Path(__file__).resolve().parents[1] / "figures"
    before = {p.name: p.stat().st_mtime_ns for p in figures.iterdir()}
    nb = nbformat.read(_toy(tmp_path, figures=1, pixels=20) / "01_toy.ipynb", as_version=4)
    nb.cells[1].source = nb.cells[1].source.replace('"fig_{index}"', f'"lab_test_{os.getpid()}_{{index}}"')
    for name in (RUN_ID_ENV, RUN_SHA_ENV):
        monkeypatch.delenv(name, raising=False)
    NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    written = [LAB_DIR / f"lab_test_{os.getpid()}_0.{suffix}" for suffix in ("pdf", "png")]
    try:
        assert all(path.exists() for path in written)
        assert {p.name: p.stat().st_mtime_ns for p in figures.iterdir()} == before
    finally:
        for path in written:
            path.unlink(missing_ok=True)


def test_sigterm_marks_the_notebook_interrupted_and_frees_the_folder(tmp_path: Path) -> None:
    output, pid_file = tmp_path / "out", tmp_path / "kernel.pid"
    notebooks = _toy(tmp_path / "nb", figures=400, pixels=200, pid_file=pid_file)
    code = f"from fame_utils.workbook.run import run_notebooks; run_notebooks('smoke', {str(output)!r}, notebook_dir=__import__('pathlib').Path({str(notebooks)!r}))"
    runner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (output / "fig_0.png").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.send_signal(signal.SIGTERM)
    _, stderr = runner.communicate(timeout=120)
    _wait_dead(int(pid_file.read_text()))
    assert "KeyboardInterrupt: signal 15" in stderr
    assert _manifest(output)["notebooks"]["01_toy"]["status"] == "interrupted"
    assert RunLock.holder(output) is None and not (output / "executed" / "01_toy.ipynb").exists()
