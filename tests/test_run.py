"""The papermill runner and the shape every committed notebook must have."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import nbformat
import pytest

from fame_utils.workbook import widgets
from fame_utils.workbook.run import NOTEBOOK_DIR, notebook_paths, run_notebooks

README = NOTEBOOK_DIR.parent / "README.md"
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def _notebook(cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata.update({"kernelspec": KERNELSPEC, "language_info": {"name": "python"}})
    return nb


def _write_toy_notebooks(folder: Path) -> None:
    parameters = nbformat.v4.new_code_cell('profile = "default"\nseed = 0\noutput_dir = None')
    parameters.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "from fame_utils.workbook.session import Session, choose\n"
        'run = Session.start("01_toy", profile=profile, seed=seed, output_dir=output_dir, device="cpu")\n'
        "run.record(size=choose(profile, smoke=2, default=20, paper=200))"
    )
    nbformat.write(_notebook([parameters, body]), folder / "01_toy.ipynb")
    failing = nbformat.v4.new_code_cell('raise ValueError("deliberate failure")')
    nbformat.write(_notebook([parameters, failing]), folder / "02_broken.ipynb")


def test_runner_injects_profile_records_numbers_and_reports_failures(tmp_path: Path) -> None:
    notebooks, output = tmp_path / "notebooks", tmp_path / "out"
    notebooks.mkdir()
    _write_toy_notebooks(notebooks)
    statuses = run_notebooks("smoke", output, notebook_dir=notebooks)
    assert statuses["01_toy"] == "ok"
    assert statuses["02_broken"].startswith("failed") and "deliberate failure" in statuses["02_broken"]
    assert json.loads((output / "executed" / "01_toy.json").read_text())["size"] == 2
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["notebooks"]["01_toy"]["status"] == "ok"
    assert manifest["notebooks"]["02_broken"]["status"].startswith("failed")
    assert (output / "executed" / "02_broken.ipynb").exists()


def test_run_takes_one_sha_and_publishes_sanitised_notebooks_rendered_to_html(tmp_path: Path) -> None:
    from fame_utils.workbook.publish import render_html

    notebooks, output = tmp_path / "notebooks", tmp_path / "out"
    notebooks.mkdir()
    _write_toy_notebooks(notebooks)
    output.mkdir()
    (output / "manifest.json").write_text(json.dumps({"git_sha": "0" * 40, "figures": {}}))  # as older versions wrote it
    run_notebooks("smoke", output, notebook_dir=notebooks)
    manifest = json.loads((output / "manifest.json").read_text())
    assert "git_sha" not in manifest, "a stale top-level sha would contradict run.git_sha"
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", manifest["run"]["git_sha"]) and manifest["run"]["profile"] == "smoke"
    assert {entry["run_id"] for entry in manifest["notebooks"].values()} == {manifest["run"]["run_id"]}
    assert [p.name for p in (output / "notebooks").iterdir()] == ["01_toy.ipynb"], "only notebooks that ran through"
    published = (output / "notebooks" / "01_toy.ipynb").read_text()
    assert str(tmp_path) not in published and "papermill" not in json.loads(published)["metadata"]
    assert '"output_dir = \\"out\\"' in published
    cells = nbformat.reads(published, as_version=4).cells
    assert [c.execution_count for c in cells if c.cell_type == "code"] == [1, 2, 3]
    index = render_html(output / "notebooks", tmp_path / "html", README).read_text()
    assert '<a href="01_toy.html">' in index
    assert not re.search(r'<script[^>]*src="https?://', (tmp_path / "html" / "01_toy.html").read_text()), "offline: no CDN scripts"


def test_notebook_selection_by_prefix_and_unknown_prefix(tmp_path: Path) -> None:
    _write_toy_notebooks(tmp_path)
    assert [p.stem for p in notebook_paths(["02"], tmp_path)] == ["02_broken"]
    with pytest.raises(ValueError, match="no notebook .* starts with '09'"):
        notebook_paths(["09"], tmp_path)


COMMITTED = notebook_paths(notebook_dir=NOTEBOOK_DIR)


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_committed_notebook_is_clean_and_parameterised(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec metadata missing"
    assert nb.metadata.get("language_info", {}).get("name") == "python", "language_info metadata missing"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "commit notebooks without outputs"
    parameter_cells = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(parameter_cells) == 1, "exactly one cell tagged 'parameters'"
    assigned = {t.id: ast.literal_eval(n.value) for n in ast.parse(parameter_cells[0].source).body for t in n.targets}
    assert assigned["profile"] == "default" and isinstance(assigned["seed"], int) and assigned["output_dir"] is None
    assert "build/lab/" in parameter_cells[0].source and "make figures" in parameter_cells[0].source, "say where a lab run writes"
    assert f'Session.start("{path.stem}"' in "".join(c.source for c in code)
    assert nb.cells[0].cell_type == "markdown", "open with the question the notebook asks"
    explorers = set(widgets.__all__) & {name for name in dir(widgets) if name.endswith("_explorer")}
    for cell in code:
        if any(re.search(rf"\b{name}\(", cell.source) for name in explorers):
            assert cell.source.startswith("# NBVAL_IGNORE_OUTPUT"), "widget cells must not be compared by nbval"
    text = json.dumps(nb)
    assert not re.search(r"[\"' (]/(work|tmp|root|home/[a-z]+)/", text), "machine-local path in notebook"


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_papermill_parses_every_parameter(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from papermill.inspection import inspect_notebook

    with caplog.at_level("WARNING"):
        names = list(inspect_notebook(str(path)))
    assert {"profile", "seed", "output_dir", "device"} <= set(names)
    assert "Unable to parse" not in caplog.text, caplog.text


def test_dirty_run_warns_loudly(capsys: pytest.CaptureFixture[str]) -> None:
    from fame_utils.workbook.run import _warn_if_dirty

    _warn_if_dirty("abc123")
    assert capsys.readouterr().err == ""
    _warn_if_dirty("abc123-dirty")
    assert "WARNING: the code or notebooks have uncommitted changes" in capsys.readouterr().err


@pytest.mark.parametrize(("made", "verdict"), [("latest", "verdict: current"), ("latest-dirty", "made from uncommitted code"),
                                              ("0" * 40, "verdict: STALE")])
def test_check_says_whether_outputs_are_current(tmp_path: Path, made: str, verdict: str) -> None:
    import subprocess

    from fame_utils.workbook.run import REPO_ROOT, check
    from fame_utils.workbook.session import RESULT_SOURCES

    latest = subprocess.run(["git", "log", "-1", "--format=%H", "--", *RESULT_SOURCES], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    manifest = {"run": {"git_sha": made.replace("latest", latest)}, "notebooks": {"01_a": {"status": "ok"}, "02_b": {"status": "interrupted"}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    report = check(tmp_path)
    assert verdict in report and "notebooks not ok: 02_b (interrupted)" in report


def test_check_names_notebooks_whose_outputs_older_code_made(tmp_path: Path) -> None:
    import subprocess

    from fame_utils.workbook.run import REPO_ROOT, check
    from fame_utils.workbook.session import RESULT_SOURCES

    latest = subprocess.run(["git", "log", "-1", "--format=%H", "--", *RESULT_SOURCES], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    manifest = {"run": {"git_sha": latest}, "notebooks": {"01_a": {"status": "ok"}, "02_b": {"status": "ok"}},
                "figures": {"fig_a": {"notebook": "01_a", "git_sha": latest}, "fig_b": {"notebook": "02_b", "git_sha": "0" * 40}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert "verdict: PARTLY STALE: the last run is current, but older code made the outputs of 02_b" in check(tmp_path)
    manifest["figures"]["fig_b"]["git_sha"] = latest
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert "verdict: current" in check(tmp_path)


def test_published_images_are_scaled_and_photo_sheets_become_jpeg(tmp_path: Path) -> None:
    import base64
    import io

    import numpy as np
    from PIL import Image

    from fame_utils.workbook.publish import MAX_IMAGE_WIDTH, publish_notebook

    def png(array: np.ndarray) -> str:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format="PNG")
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    noise = np.random.default_rng(0).integers(0, 256, (600, 2000, 3), dtype=np.uint8)
    small = png(np.zeros((10, 20, 3), dtype=np.uint8))
    cell = nbformat.v4.new_code_cell("show()", execution_count=7, outputs=[
        nbformat.v4.new_output("display_data", data={"image/png": png(noise), "text/plain": "<Figure>"}),
        nbformat.v4.new_output("display_data", data={"image/png": small}),
        nbformat.v4.new_output("stream", name="stderr", text="100%|##| 3/3 [00:01<00:00]")])
    (tmp_path / "executed").mkdir()
    nbformat.write(_notebook([cell]), tmp_path / "executed" / "01_x.ipynb")
    published = nbformat.read(publish_notebook(tmp_path / "executed" / "01_x.ipynb", tmp_path, tmp_path), as_version=4)
    big, kept = published.cells[0].outputs
    photo = Image.open(io.BytesIO(base64.b64decode(big.data["image/jpeg"])))
    assert photo.format == "JPEG" and photo.size == (MAX_IMAGE_WIDTH, 300) and "image/png" not in big.data
    assert kept.data["image/png"] == small and published.cells[0].execution_count == 1
