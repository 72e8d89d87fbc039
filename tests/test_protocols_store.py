"""Protocol runs, the parts without networks: ranks from the torchrun environment, shards, threads, chunks, the
checksummed atomic store, the run lock, the plan, finding runs, and the report's reduction checked by hand."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from fame_utils.protocols.catalogue import PairItem, evenly_spaced
from fame_utils.protocols.distributed import RankContext, cpu_threads, rank_device, shard
from fame_utils.protocols.errors import StoreMismatchError
from fame_utils.protocols.lock import RunLock, RunLockedError
from fame_utils.protocols.lookup import FoundRuns, find_runs, production_hint
from fame_utils.protocols.manifest import PLAN_NAME, merge_plan, record_run
from fame_utils.protocols.report import report
from fame_utils.protocols.runner import chunks_of
from fame_utils.protocols.store import CHECKSUM_KEY, CorruptItemError, ItemStore, load_arrays, method_slug, save_arrays, write_atomic


# ---------------------------------------------------------------- ranks, shards, threads, chunks


def test_rank_context_reads_the_torchrun_environment(monkeypatch):
    for name, value in {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    context = RankContext.from_env()
    assert (context.rank, context.world_size, context.local_rank, context.local_world_size) == (3, 8, 1, 2)
    assert not context.is_main and context.label == "rank 3/8"


def test_rank_context_without_torchrun_is_rank_zero_of_one(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    context = RankContext.from_env()
    assert (context.rank, context.world_size, context.local_rank, context.local_world_size) == (0, 1, 0, 1)
    assert context.is_main


@pytest.mark.parametrize("env, message", [({"RANK": "2", "WORLD_SIZE": "2"}, "RANK"), ({"WORLD_SIZE": "two"}, "WORLD_SIZE")])
def test_rank_context_rejects_inconsistent_environment(monkeypatch, env, message):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        RankContext.from_env()


def test_shard_gives_unit_i_to_rank_i_mod_world_and_covers_every_unit_once():
    units = list(range(11))
    shards = [shard(units, rank, 3) for rank in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert sorted(u for part in shards for u in part) == units
    assert shard(units, 0, 1) == units
    with pytest.raises(ValueError, match="rank"):
        shard(units, 3, 3)


@pytest.mark.parametrize("cores, ranks, expected", [(2, 2, 1), (2, 1, 2), (8, 3, 2), (1, 4, 1), (64, 8, 8)])
def test_cpu_ranks_split_the_node_cores(cores, ranks, expected):
    assert cpu_threads(cores, ranks) == expected


def test_each_cuda_rank_takes_the_gpu_of_its_local_rank(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert rank_device("auto", RankContext(rank=5, world_size=8, local_rank=1, local_world_size=4)) == torch.device("cuda", 1)
    assert rank_device("cuda", RankContext(rank=3, world_size=4, local_rank=3, local_world_size=4)) == torch.device("cuda", 3)
    assert rank_device("cpu", RankContext(rank=1, world_size=2, local_rank=1, local_world_size=2)) == torch.device("cpu")
    with pytest.raises(ValueError, match="LOCAL_RANK 4 has no GPU: this node has 4"):
        rank_device("auto", RankContext(rank=4, world_size=8, local_rank=4, local_world_size=8))


def _pairs(splits: dict[str, int]) -> list[PairItem]:
    return [PairItem(f"{split}-{i:05d}", split, i % 2 == 0, lambda: None) for split, count in splits.items() for i in range(count)]


def test_chunks_are_consecutive_never_mix_splits_and_do_not_depend_on_ranks():
    items = _pairs({"a": 5, "b": 3})
    chunks = chunks_of(items, 2)
    assert [[item.item_id for item in chunk] for chunk in chunks] == [
        ["a-00000", "a-00001"], ["a-00002", "a-00003"], ["a-00004"], ["b-00000", "b-00001"], ["b-00002"]]
    assert [len(chunk) for chunk in chunks_of(items, 1)] == [1] * 8


def test_evenly_spaced_subset_keeps_first_and_last():
    assert evenly_spaced(10, 3) == [0, 4, 9]
    assert evenly_spaced(45, 2) == [0, 44]
    assert evenly_spaced(4, None) == [0, 1, 2, 3]
    assert evenly_spaced(4, 10) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="subset"):
        evenly_spaced(4, 0)


# ---------------------------------------------------------------- the store


def _record() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"map": rng.random((8, 8)).astype(np.float16), "deletion": rng.random(11), "label": np.int64(1)}


def test_stored_item_round_trips_exactly(tmp_path):
    store = ItemStore(tmp_path)
    record = _record()
    path = store.save("FAME (paper-faithful)", "00003-coffee", record)
    assert path == tmp_path / "items" / "fame-paper-faithful" / "00003-coffee.npz"
    loaded = store.load("FAME (paper-faithful)", "00003-coffee")
    assert set(loaded) == set(record)
    for name, value in record.items():
        assert loaded[name].dtype == np.asarray(value).dtype
        np.testing.assert_array_equal(loaded[name], value)
    assert store.check("FAME (paper-faithful)", "00003-coffee") is None
    assert store.check("FAME (paper-faithful)", "00004-tea") == "missing"


def test_truncated_item_is_detected(tmp_path):
    store = ItemStore(tmp_path)
    path = store.save("FAME", "a", _record())
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptItemError, match="cannot be read"):
        store.load("FAME", "a")
    assert "cannot be read" in store.check("FAME", "a")


def test_item_whose_arrays_do_not_match_their_checksum_is_detected(tmp_path):
    store = ItemStore(tmp_path)
    path = store.save("FAME", "a", _record())
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["deletion"] = arrays["deletion"] + 1e-9  # a silent change: the archive itself is a valid zip
    np.savez_compressed(path, **arrays)
    with pytest.raises(CorruptItemError, match="checksum"):
        load_arrays(path)


def test_item_without_checksum_is_refused(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, map=np.zeros(3))
    with pytest.raises(CorruptItemError, match=CHECKSUM_KEY):
        load_arrays(path)
    with pytest.raises(ValueError, match="reserved"):
        save_arrays(tmp_path / "x.npz", {CHECKSUM_KEY: np.zeros(1)})


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")

    def broken(handle):
        handle.write(b"half a ta")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    store = ItemStore(tmp_path)
    store.save("Grad-CAM", "a", _record())
    leftover = tmp_path / "items" / "grad-cam" / ".b.npz.x1y2.tmp"
    leftover.write_bytes(b"partial")
    assert store.remove_temporaries() == 1
    assert not leftover.exists() and store.check("Grad-CAM", "a") is None


def test_item_ids_and_methods_must_make_plain_file_names(tmp_path):
    store = ItemStore(tmp_path)
    with pytest.raises(ValueError, match="plain file name"):
        store.path("FAME", "../escape")
    assert method_slug("Grad-CAM-EW") == "grad-cam-ew"
    with pytest.raises(ValueError, match="letters or digits"):
        method_slug("()")


# ---------------------------------------------------------------- the lock


def test_second_run_on_a_folder_is_refused_naming_the_holder(tmp_path):
    with RunLock(tmp_path, "first run"):
        with pytest.raises(RunLockedError) as refused:
            RunLock(tmp_path, "second run").acquire()
        holder = json.loads((tmp_path / "run.lock").read_text())
    message = str(refused.value)
    assert f"pid {os.getpid()}" in message and socket.gethostname() in message and holder["started"] in message and "first run" in message
    assert not (tmp_path / "run.lock").exists()


def test_lock_is_released_when_the_run_fails(tmp_path):
    with pytest.raises(KeyError):
        with RunLock(tmp_path):
            raise KeyError("boom")
    RunLock(tmp_path).acquire()


def test_stale_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    record = {"pid": int(dead.stdout), "host": socket.gethostname(), "started": "2020-01-01T00:00:00+00:00", "command": "killed run"}
    (tmp_path / "run.lock").write_text(json.dumps(record))
    lock = RunLock(tmp_path)
    lock.acquire()
    assert lock.took_over == record
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()


def test_lock_from_another_host_is_never_broken(tmp_path):
    record = {"pid": 1, "host": "some-other-node", "started": "2020-01-01T00:00:00+00:00", "command": "run elsewhere"}
    (tmp_path / "run.lock").write_text(json.dumps(record))
    with pytest.raises(RunLockedError, match="some-other-node"):
        RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / "run.lock").read_text()) == record


# ---------------------------------------------------------------- the plan


def _plan(**changes) -> dict:
    plan = {"protocol": "shipped_objects", "task": "classification", "network": "efficientnet_lite0", "weights": "shipped",
            "methods": ["Grad-CAM"], "settings": {"fame": {"iterations": 5}, "batch_size": 1}, "items": ["00000-a", "00001-b"]}
    plan.update(changes)
    return plan


def test_plan_is_written_once_and_later_runs_may_only_add_methods(tmp_path):
    assert merge_plan(tmp_path, _plan())["methods"] == ["Grad-CAM"]
    merged = merge_plan(tmp_path, _plan(methods=["FAME", "Grad-CAM"]))
    assert merged["methods"] == ["Grad-CAM", "FAME"]
    assert json.loads((tmp_path / PLAN_NAME).read_text()) == merged


def test_plan_with_other_settings_is_refused_listing_each_difference(tmp_path):
    merge_plan(tmp_path, _plan())
    with pytest.raises(StoreMismatchError) as refused:
        merge_plan(tmp_path, _plan(network="efficientnet_lite1", settings={"fame": {"iterations": 500}, "batch_size": 1}))
    message = str(refused.value)
    assert 'network: the folder has "efficientnet_lite0", this run asks for "efficientnet_lite1"' in message
    assert "settings.fame.iterations: the folder has 5, this run asks for 500" in message and "another --out" in message
    assert json.loads((tmp_path / PLAN_NAME).read_text())["network"] == "efficientnet_lite0"


def test_damaged_plan_is_reported(tmp_path):
    (tmp_path / PLAN_NAME).write_text("{not json")
    with pytest.raises(StoreMismatchError, match="damaged"):
        merge_plan(tmp_path, _plan())


# ---------------------------------------------------------------- finding runs for the notebooks


def _finished_run(folder, protocol: str, complete: bool) -> None:
    plan = merge_plan(folder, _plan(protocol=protocol))
    record_run(folder, plan, {"seconds": 1.0, "computed": 2}, {"complete": complete})


def test_find_runs_sorts_complete_and_unfinished_runs_of_the_asked_protocols(tmp_path):
    for name, protocol, complete in (("b_ff", "cfp_ff", True), ("a_fp", "cfp_fp", True), ("c_fp", "cfp_fp", False), ("objects", "shipped_objects", True)):
        (tmp_path / name).mkdir()
        _finished_run(tmp_path / name, protocol, complete)
    (tmp_path / "notes").mkdir()
    found = find_runs(tmp_path, ["cfp_fp", "cfp_ff"])
    assert found.complete == [tmp_path / "a_fp", tmp_path / "b_ff"] and found.unfinished == [tmp_path / "c_fp"]
    assert find_runs(tmp_path / "a_fp", ["cfp_fp"]).complete == [tmp_path / "a_fp"]
    assert find_runs("", ["cfp_fp"]) == find_runs(tmp_path / "absent", ["cfp_fp"]) == FoundRuns()
    with pytest.raises(ValueError, match="unknown protocol"):
        find_runs(tmp_path, ["cfp"])


def test_production_hint_is_a_runnable_command_into_the_searched_folder(tmp_path):
    hint = production_hint("imagenet_loc", tmp_path, "resnet50", "--weights hub --data-root /data/imagenet")
    command = hint.splitlines()[1].split()
    assert command[:4] == ["torchrun", "--standalone", "--nproc_per_node=8", "-m"]
    assert command[command.index("--protocol") + 1] == "imagenet_loc" and command[command.index("--network") + 1] == "resnet50"
    assert command[command.index("--out") + 1] == str(tmp_path / "imagenet_loc_resnet50") and "--data-root" in command


# ---------------------------------------------------------------- the report's reduction, by hand


def _stored_run(folder, task: str, methods: list[str], settings: dict, items: dict[str, dict]) -> None:
    merge_plan(folder, _plan(task=task, methods=methods, settings={**settings, "seed": 0}, items=list(items)))
    store = ItemStore(folder)
    for method in methods:
        for item_id, arrays in items.items():
            store.save(method, item_id, arrays)


def test_table1_reduces_stored_items_as_computed_by_hand(tmp_path):
    items = {
        "00000-a": {"iou": np.array([[0.2], [0.4]]), "clean": np.float32(3), "deletion": np.float32([3, 1, 0]), "insertion": np.float32([0, 2, 3])},
        "00001-b": {"iou": np.array([[0.6], [np.nan]]), "clean": np.float32(1), "deletion": np.float32([1, 1, 1]), "insertion": np.float32([1, 1, 1])},
    }
    _stored_run(tmp_path, "classification", ["FAME-paper-faithful"], {"percents": [0, 50, 100], "thresholds": [0.5]}, items)
    long = report([tmp_path]).long.set_index("metric")
    assert set(long["method"]) == {"FAME (paper-faithful)"}  # keys are stored, labels are shown
    # logit drops: a (0, 2, 3) → area 1.75, b (0, 0, 0) → 0; insertion drops: a (3, 1, 0) → 1.25, b → 0
    assert long.loc["deletion_auc", "mean"] == pytest.approx(0.875) and long.loc["insertion_auc", "mean"] == pytest.approx(0.625)
    assert long.loc["iou@0.5 (default)", "mean"] == pytest.approx(40.0) and long.loc["iou@0.5 (default)", "n"] == 2
    assert long.loc["iou@0.5 (paper-faithful)", "mean"] == pytest.approx(40.0) and long.loc["iou@0.5 (paper-faithful)", "n"] == 1


def test_table2_reduces_stored_pairs_as_computed_by_hand(tmp_path):
    items = {
        "s-00000": {"label": np.int64(1), "deletion": np.array([0.9, 0.1]), "insertion": np.array([0.1, 0.9])},
        "s-00001": {"label": np.int64(0), "deletion": np.array([0.2, 0.1]), "insertion": np.array([0.6, 0.2])},
    }
    _stored_run(tmp_path, "verification", ["FAME"], {"percents": [0, 100]}, items)
    save_arrays(ItemStore(tmp_path).context_path("s"), {"item_ids": np.array(list(items)), "threshold": np.float64(0.5)})
    row = report([tmp_path], n_boot=50).long.iloc[0]
    # deletion: correct (1, 0) and (1, 1) → accuracy (1, 0.5) → 75; insertion: (0, 1) and (0, 1) → (0, 1) → 50
    assert (row["split"], row["method"], row["pairs"]) == ("s", "FAME", 2)
    assert row["deletion"] == pytest.approx(75.0) and row["insertion"] == pytest.approx(50.0)
    assert row["deletion_low"] <= 75.0 <= row["deletion_high"]


def test_report_refuses_a_folder_without_a_run(tmp_path):
    with pytest.raises(StoreMismatchError, match="holds no protocol run"):
        report([tmp_path])
