"""Device choice, seeding, layer hooks and the run session."""

from __future__ import annotations

import io

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fame_utils.layers import LayerNotReachedError, capture_layer, forward_to_layer, layer_name, resolve_layer
from fame_utils.runtime import balanced_chunks, resolve_device, seed_everything
from fame_utils.workbook.session import OutputDirError, Session, choose
from tiny_models import hooked_net


def test_auto_device_is_cpu_without_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_device_prefers_cuda_then_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_explicit_unavailable_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")


def test_same_seed_same_draws() -> None:
    first = seed_everything(7)
    a = (torch.rand(3), torch.rand(3, generator=first))
    second = seed_everything(7)
    b = (torch.rand(3), torch.rand(3, generator=second))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(("count", "most", "sizes"), [
    (49, 8, [7] * 7), (49, 16, [12, 12, 12, 13]), (81, 8, [7, 7, 8, 7, 7, 8, 7, 7, 8, 7, 8]), (16, 8, [8, 8]),
    (3, 8, [3]), (1, 1, [1]), (0, 8, []),
])
def test_balanced_chunks_are_fewest_and_even(count: int, most: int, sizes: list[int]) -> None:
    chunks = balanced_chunks(count, most)
    assert [len(range(count)[chunk]) for chunk in chunks] == sizes
    assert [i for chunk in chunks for i in range(count)[chunk]] == list(range(count))


def test_balanced_chunks_refuse_empty_chunks() -> None:
    with pytest.raises(ValueError, match="most >= 1"):
        balanced_chunks(4, 0)


def test_resolve_layer_by_dotted_and_indexed_names() -> None:
    model = hooked_net()
    assert resolve_layer(model, "2.0") is model[2][0]
    assert resolve_layer(model, "[2][-1]") is model[2][1]
    assert layer_name(model, model[2][1]) == "2.1"


def test_unknown_layer_lists_close_matches() -> None:
    model = nn.Sequential()
    model.add_module("layer4", nn.Sequential(nn.Conv2d(1, 1, 1)))
    with pytest.raises(ValueError, match=r"unknown layer 'layer5\.0'.*layer4\.0"):
        resolve_layer(model, "layer5.0")


def test_foreign_module_is_rejected() -> None:
    with pytest.raises(ValueError, match="not a sub-module"):
        resolve_layer(hooked_net(), nn.Conv2d(1, 1, 1))


def test_forward_to_layer_stops_there_and_removes_its_hook() -> None:
    model = hooked_net()
    out = forward_to_layer(model, "1", torch.ones(1, 1, 5, 5))
    assert out.shape == (1, 2, 3, 3)
    assert model[2][1].calls == 0
    assert all(not m._forward_hooks for m in model.modules())


def test_forward_to_unreached_layer_raises_and_cleans_up() -> None:
    model = hooked_net()
    unused = nn.Conv2d(2, 2, 1)
    model.add_module("unused", unused)
    model.forward = lambda x: model[0](x)  # type: ignore[method-assign]
    with pytest.raises(LayerNotReachedError):
        forward_to_layer(model, "unused", torch.ones(1, 1, 5, 5))
    assert not unused._forward_hooks


def test_capture_layer_removes_hook_after_exception() -> None:
    model = hooked_net()
    with pytest.raises(RuntimeError, match="boom"):
        with capture_layer(model, "0") as capture:
            model(torch.ones(1, 1, 5, 5))
            assert capture.get().shape == (1, 2, 3, 3)
            raise RuntimeError("boom")
    assert not model[0]._forward_hooks


def test_choose_validates_profiles() -> None:
    assert choose("smoke", smoke=1, default=2, paper=3) == 1
    with pytest.raises(ValueError, match="unknown profile"):
        choose("fast", smoke=1)
    with pytest.raises(ValueError, match="no setting"):
        choose("paper", smoke=1, default=2)


def test_session_writes_figures_tables_numbers_and_manifest(tmp_path) -> None:
    run = Session.start("99_test", profile="smoke", seed=3, output_dir=tmp_path, parameters={"iterations": 5}, device="cpu")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    saved = run.save_figure(fig, "fig_test", caption="a line")
    plt.close(fig)
    assert saved == [tmp_path / "fig_test.pdf", tmp_path / "fig_test.png"]
    assert repr(saved) == f"saved fig_test.pdf, fig_test.png in {tmp_path.name}/"  # what a cell ending in a save shows
    run.save_table(pd.DataFrame({"method": ["FAME"], "iou": [0.5]}), "table_test")
    run.record(iou=torch.tensor(0.25), curve=[1.0, float("nan")])
    assert (tmp_path / "fig_test.pdf").stat().st_size > 0 and (tmp_path / "fig_test.png").stat().st_size > 0
    assert "| FAME" in (tmp_path / "table_test.md").read_text()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["figures"]["fig_test"]
    assert (entry["seed"], entry["profile"], entry["parameters"]) == (3, "smoke", {"iterations": 5})
    assert {"torch", "numpy", "python"} <= set(manifest["versions"])
    assert "table_test" in manifest["tables"]
    numbers = json.loads((tmp_path / "executed" / "99_test.json").read_text())
    assert numbers == {"curve": [1.0, None], "iou": 0.25, "profile": "smoke", "seed": 3}


def test_pngs_fit_the_size_limit_and_are_byte_identical_when_redrawn() -> None:
    from PIL import Image as PILImage

    from fame_utils.workbook.session import png_bytes

    def noisy_sheet() -> plt.Figure:
        fig, axes = plt.subplots(4, 4, figsize=(12, 12))
        for index, ax in enumerate(axes.flat):
            ax.imshow(np.random.default_rng(index).random((256, 256)), cmap="jet")
        return fig

    fig = noisy_sheet()
    large = png_bytes(fig, limit=10**9)
    capped = png_bytes(fig, limit=len(large) // 3)
    assert len(capped) <= len(large) // 3
    assert PILImage.open(io.BytesIO(capped)).size[0] < PILImage.open(io.BytesIO(large)).size[0]
    again = noisy_sheet()
    assert png_bytes(again, limit=len(large) // 3) == capped  # no timestamp or software tag in the file
    assert len(png_bytes(fig, limit=1)) <= len(large)  # nothing fits: the smallest rendering, not the last
    plt.close("all")


def test_session_rejects_bad_profile_and_figure_names(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        Session.start("99_test", profile="quick", seed=0, output_dir=tmp_path)
    run = Session.start("99_test", profile="smoke", seed=0, output_dir=tmp_path, device="cpu")
    figure = plt.figure()
    with pytest.raises(OutputDirError, match="plain file stem"):
        run.save_figure(figure, "../escape")
    plt.close(figure)  # a rejected name leaves the figure open, so the caller can save it again
    with pytest.raises(OutputDirError, match="'../x'.*plain file stem"):
        run.save_table(pd.DataFrame({"a": [1]}), "../x")
    assert not (tmp_path.parent / "x.csv").exists() and not (tmp_path.parent / "escape.pdf").exists()


def _write_manifest_entries(output_dir: str, worker: int) -> None:
    from fame_utils.workbook.session import update_manifest

    for index in range(10):
        update_manifest(Path(output_dir), "figures", f"w{worker}_{index}", {"worker": worker})


def test_manifest_updates_from_parallel_notebook_runs_are_all_kept(tmp_path) -> None:
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_manifest_entries, args=(str(tmp_path), worker)) for worker in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0, 0, 0, 0]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert sorted(manifest["figures"]) == sorted(f"w{w}_{i}" for w in range(4) for i in range(10))
    assert not list(tmp_path.glob(".manifest-*"))


def test_git_sha_is_dirty_only_when_code_or_notebooks_changed(tmp_path: Path) -> None:
    import os
    import subprocess

    from fame_utils.workbook.session import git_sha

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "fame_utils").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "fame_utils" / "fame.py").write_text("STEP = 1\n")
    (tmp_path / "figures" / "manifest.json").write_text("{}\n")
    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = git_sha(tmp_path / "fame_utils")
    assert clean is not None and len(clean) == 40
    (tmp_path / "figures" / "manifest.json").write_text('{"figures": {}}\n')  # what a run itself writes
    assert git_sha(tmp_path / "fame_utils") == clean
    (tmp_path / "fame_utils" / "fame.py").write_text("STEP = 2\n")
    assert git_sha(tmp_path / "fame_utils") == f"{clean}-dirty"
    assert git_sha(tmp_path / "figures") == f"{clean}-dirty"


def test_process_alive_tells_a_running_process_from_a_finished_one() -> None:
    import os
    import subprocess
    import sys

    from fame_utils.runtime import process_alive

    assert process_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_alive(child.pid)
