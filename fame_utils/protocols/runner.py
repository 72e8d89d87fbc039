"""Run a protocol on this rank's shard: check every input, take the folder, compute the missing items, record the run.

Items are cut into chunks of ``batch_size`` (never across splits); chunk ``c`` belongs to rank ``c mod world``.
Every rank skips the items already stored intact, recomputes damaged ones, and writes each new item atomically,
so a killed run resumes where it stopped. Rank 0 holds the folder lock, the split contexts and the manifest.
Knows nothing about how a method computes its maps or how tables are reduced.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from fame_utils.fame import FameConfig
from fame_utils.models import CheckpointError, DeviceError, MissingPackageError, ModelSpec, UnknownModelError, WeightsNotAvailableError, load_model
from fame_utils.protocols.catalogue import PROTOCOLS, DataOptions, resolve_items
from fame_utils.protocols.distributed import (
    RankContext,
    available_cores,
    barrier,
    broadcast_from_main,
    cpu_threads,
    process_group,
    rank_device,
    shard,
)
from fame_utils.protocols.errors import ProtocolInputError, StoreMismatchError
from fame_utils.protocols.lock import RunLock, RunLockedError
from fame_utils.protocols.manifest import PLAN_NAME, merge_plan, record_run, utc_now
from fame_utils.protocols.store import ItemStore, load_arrays, save_arrays
from fame_utils.protocols.tasks import ClassificationTask, VerificationTask, check_methods, chunk_seed

__all__ = ["RankStats", "RunOptions", "RunSummary", "chunks_of", "run_protocol"]

Task = ClassificationTask | VerificationTask
_FOLDER_ERRORS = {error.__name__: error for error in (RunLockedError, StoreMismatchError)}


@dataclass(frozen=True)
class RunOptions:
    """Everything ``python -m fame_utils.protocols run`` takes.

    Attributes:
        protocol: a key of :data:`~fame_utils.protocols.catalogue.PROTOCOLS`.
        network: a :func:`fame_utils.models.load_model` name; ``weights`` and ``trust_checkpoint`` as there
            (``weights=None``: seeded random weights).
        out: the run folder (created; a later run with the same settings resumes it).
        methods: method names (empty: the paper's methods of the protocol's table).
        iterations: FAME iterations T.
        batch_size: items explained together (part of the settings: batching changes float rounding).
        n_masks: CorrRISE masks (verification).
        seed: seed of the random maps and of CorrRISE's masks.
        subset: evenly spaced items per split (a trial run); None = all.
        data: the user's data locations.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"`` (with CUDA each rank takes GPU ``LOCAL_RANK``).
        threads: CPU threads per rank (None: this node's cores split between its ranks).
        progress: show a progress bar per rank.
    """

    protocol: str
    network: str
    out: Path
    methods: tuple[str, ...] = ()
    weights: str | None = "shipped"
    trust_checkpoint: bool = False
    iterations: int = 500
    batch_size: int = 1
    n_masks: int = 500
    seed: int = 0
    subset: int | None = None
    data: DataOptions = field(default_factory=DataOptions)
    device: str = "auto"
    threads: int | None = None
    progress: bool = True


@dataclass
class RankStats:
    """What one rank did in one run: items (protocol item × method) computed, reused, and damaged ones recomputed."""

    rank: int
    host: str
    device: str
    threads: int
    computed: int = 0
    reused: int = 0
    damaged: int = 0
    seconds: float = 0.0

    @property
    def items_per_second(self) -> float:
        """Computed items per second of this rank's wall time."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def line(self, world_size: int) -> str:
        """One log line for this rank."""
        return (f"[rank {self.rank}/{world_size}] {self.computed} items computed, {self.reused} reused, {self.damaged} damaged ones "
                f"recomputed in {self.seconds:.1f} s ({self.items_per_second:.3f} items/s, {self.device}, {self.threads} threads)")


@dataclass(frozen=True)
class RunSummary:
    """The whole run (all ranks) as recorded in the manifest."""

    out: Path
    ranks: list[RankStats]
    seconds: float
    complete: bool

    @property
    def computed(self) -> int:
        """Items computed by all ranks."""
        return sum(stats.computed for stats in self.ranks)

    @property
    def reused(self) -> int:
        """Items found intact in the store."""
        return sum(stats.reused for stats in self.ranks)

    @property
    def damaged(self) -> int:
        """Items found damaged and recomputed."""
        return sum(stats.damaged for stats in self.ranks)

    @property
    def items_per_second(self) -> float:
        """Computed items per second of wall time."""
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        """The summary line printed at the end of a run."""
        state = "complete" if self.complete else "incomplete"
        return (f"summary: {self.computed} items computed, {self.reused} reused, {self.damaged} damaged ones recomputed, "
                f"by {len(self.ranks)} rank(s) in {self.seconds:.1f} s: {self.items_per_second:.3f} items/s; store {state}: {self.out}")


def chunks_of(items: Sequence[Any], batch_size: int) -> list[list[Any]]:
    """Consecutive chunks of at most ``batch_size`` items that never mix splits (the same for every world size)."""
    chunks: list[list[Any]] = []
    for item in items:
        if chunks and len(chunks[-1]) < batch_size and chunks[-1][0].split == item.split:
            chunks[-1].append(item)
        else:
            chunks.append([item])
    return chunks


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _load_network(options: RunOptions, device: torch.device) -> ModelSpec:
    try:
        return load_model(options.network, weights=options.weights, device=device, trust_checkpoint=options.trust_checkpoint)
    except (UnknownModelError, WeightsNotAvailableError, MissingPackageError, CheckpointError, DeviceError) as error:
        raise ProtocolInputError(f"--network {options.network} --weights {options.weights or 'random'}: {error}") from error


def _task(kind: str, spec: ModelSpec, options: RunOptions) -> Task:
    if kind == "classification":
        return ClassificationTask(spec, FameConfig(iterations=options.iterations))
    return VerificationTask(spec, FameConfig(iterations=options.iterations), n_masks=options.n_masks, seed=options.seed)


def _check_numbers(options: RunOptions) -> None:
    for flag, value, low in (("--iterations", options.iterations, 0), ("--batch-size", options.batch_size, 1), ("--n-masks", options.n_masks, 1),
                             ("--threads", options.threads, 1), ("--subset", options.subset, 1)):
        if value is not None and value < low:
            raise ProtocolInputError(f"{flag} must be at least {low}, got {value}.")


def _check_splits(items: Sequence[Any]) -> None:
    """Every verification split needs genuine and impostor pairs (its EER threshold needs both)."""
    labels: dict[str, set[bool]] = {}
    for item in items:
        labels.setdefault(item.split, set()).add(item.genuine)
    lacking = [split for split, seen in labels.items() if len(seen) < 2]
    if lacking:
        raise ProtocolInputError(f"split(s) {lacking} hold only genuine or only impostor pairs; the EER threshold needs both "
                                 "(check the protocol CSV's T column, or choose a larger --subset).")


def _plan(options: RunOptions, kind: str, spec: ModelSpec, task: Task, items: Sequence[Any], methods: Sequence[str]) -> dict[str, Any]:
    return {"protocol": options.protocol, "task": kind, "network": spec.name, "weights": spec.weights, "methods": list(methods),
            "settings": {**task.settings(), "batch_size": options.batch_size, "seed": options.seed, "subset": options.subset},
            "items": [item.item_id for item in items]}


def _open_folder(context: RankContext, lock: RunLock, store: ItemStore, plan: dict[str, Any]) -> dict[str, Any]:
    """Rank 0 takes the lock, clears temporaries and merges the plan; every rank gets the outcome."""
    outcome: tuple[str, str] | dict[str, Any]
    if context.is_main:
        try:
            folder = store.root
            if folder.exists() and any(folder.iterdir()) and not (folder / PLAN_NAME).exists():
                raise StoreMismatchError(f"{folder} is not empty and holds no protocol run; choose a new or empty --out folder.")
            lock.acquire()
            if lock.took_over:
                print(f"[{context.label}] took over the stale lock of pid {lock.took_over.get('pid')} (no longer running)", file=sys.stderr)
            store.remove_temporaries()
            outcome = merge_plan(folder, plan)
        except (RunLockedError, StoreMismatchError) as error:
            outcome = (type(error).__name__, str(error))
    else:
        outcome = ("", "")
    outcome = broadcast_from_main(outcome)
    if isinstance(outcome, tuple):
        raise _FOLDER_ERRORS[outcome[0]](outcome[1])
    return outcome


def _split_contexts(context: RankContext, task: Task, store: ItemStore, items: Sequence[Any], batch_size: int) -> dict[str, dict[str, np.ndarray]]:
    """Verification: rank 0 computes (or reuses) each split's clean scores and threshold; every rank reads them."""
    splits: dict[str, list[Any]] = {}
    for item in items:
        splits.setdefault(item.split, []).append(item)
    if context.is_main:
        for split, members in splits.items():
            path = store.context_path(split)
            try:
                stored = load_arrays(path)
                if list(stored["item_ids"]) == [item.item_id for item in members]:
                    continue
            except (FileNotFoundError, KeyError, ValueError):
                pass
            save_arrays(path, task.context(members, batch_size))
    barrier()
    return {split: load_arrays(store.context_path(split)) for split in splits}


def _scan(store: ItemStore, chunks: list[list[Any]], mine: Sequence[int], methods: Sequence[str], stats: RankStats, label: str) -> list[tuple[int, str, set[str]]]:
    """This rank's (chunk, method, missing item ids) to compute; damaged files are reported and removed."""
    todo = []
    for index in mine:
        for method in methods:
            missing = set()
            for item in chunks[index]:
                problem = store.check(method, item.item_id)
                if problem is None:
                    stats.reused += 1
                    continue
                if problem != "missing":
                    stats.damaged += 1
                    print(f"[{label}] damaged, recomputing: {problem}", file=sys.stderr)
                    store.discard(method, item.item_id)
                missing.add(item.item_id)
            if missing:
                todo.append((index, method, missing))
    return todo


def _compute(task: Task, store: ItemStore, chunks: list[list[Any]], todo: list[tuple[int, str, set[str]]], seed: int,
             contexts: dict[str, dict[str, np.ndarray]], stats: RankStats, bar: Any) -> None:
    prepared_index, prepared = None, None
    for index, method, missing in todo:
        if index != prepared_index:
            prepared_index, prepared = index, task.prepare(chunks[index])
        first = chunks[index][0]
        draw_seed = chunk_seed(seed, first.item_id)
        torch.manual_seed(draw_seed)
        records = task.compute(method, prepared, draw_seed, contexts.get(first.split))
        for item, record in zip(chunks[index], records):
            if item.item_id in missing:
                store.save(method, item.item_id, record)
                stats.computed += 1
                bar.update(1)


def _gather(stats: RankStats) -> list[RankStats]:
    if not (dist.is_available() and dist.is_initialized()):
        return [stats]
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, stats)
    return everyone


def _complete(store: ItemStore, plan: dict[str, Any]) -> bool:
    return all(store.path(method, item_id).is_file() for method in plan["methods"] for item_id in plan["items"])


def _validated(options: RunOptions, context: RankContext) -> tuple[str, tuple[str, ...], torch.device, int]:
    """Protocol task, methods, device and CPU threads of this rank, or the first bad input."""
    if options.protocol not in PROTOCOLS:
        raise ProtocolInputError(f"unknown protocol {options.protocol!r}; choose one of {', '.join(PROTOCOLS)}.")
    kind = PROTOCOLS[options.protocol].task
    methods = check_methods(kind, options.methods)
    _check_numbers(options)
    try:
        device = rank_device(options.device, context)
    except (ValueError, RuntimeError) as error:
        raise ProtocolInputError(f"--device {options.device}: {error}") from error
    return kind, methods, device, options.threads or cpu_threads(available_cores(), context.local_world_size)


def _run_entry(summary: RunSummary, started: str, world_size: int, methods: Sequence[str]) -> dict[str, Any]:
    """This run's entry of the manifest."""
    ranks = [{**asdict(stats), "seconds": round(stats.seconds, 3), "items_per_second": round(stats.items_per_second, 4)} for stats in summary.ranks]
    return {"started": started, "seconds": round(summary.seconds, 3), "command": " ".join(sys.argv), "world_size": world_size, "methods": list(methods),
            "computed": summary.computed, "reused": summary.reused, "recomputed_damaged": summary.damaged,
            "items_per_second": round(summary.items_per_second, 4), "ranks": ranks}


def run_protocol(options: RunOptions, context: RankContext | None = None) -> RunSummary:
    """Run (or resume) a protocol on this process's shard; under torchrun every rank calls this.

    Every input is checked before anything is written: protocol and methods, numbers, device, the network's
    weights (:func:`fame_utils.models.load_model`) and the dataset (folder, CSV, image files). Then rank 0 takes
    the folder's lock and checks the folder's plan; items stored intact are reused. On CUDA, cuDNN is switched
    to its deterministic kernels so that the same item gives the same numbers on every rank.

    Raises:
        ProtocolInputError: bad input (before any work).
        RunLockedError: another run holds ``options.out``.
        StoreMismatchError: ``options.out`` holds a run with other settings, or is an unrelated non-empty folder.
    """
    context = context or RankContext.from_env()
    started, clock = utc_now(), time.perf_counter()
    kind, methods, device, threads = _validated(options, context)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    with _torch_threads(threads):
        spec = _load_network(options, device)
        task = _task(kind, spec, options)
        items = resolve_items(options.protocol, options.data, spec.input_size, options.subset)
        if kind == "verification":
            _check_splits(items)
        store = ItemStore(options.out)
        stats = RankStats(context.rank, context.host, str(device), threads)
        with process_group(context, device):
            lock = RunLock(options.out, " ".join(sys.argv))
            try:
                plan = _open_folder(context, lock, store, _plan(options, kind, spec, task, items, methods))
                contexts = _split_contexts(context, task, store, items, options.batch_size) if kind == "verification" else {}
                chunks = chunks_of(items, options.batch_size)
                todo = _scan(store, chunks, shard(range(len(chunks)), context.rank, context.world_size), methods, stats, context.label)
                with tqdm(total=sum(len(missing) for _, _, missing in todo), desc=context.label, unit="item", position=context.local_rank,
                          disable=not options.progress) as bar:
                    _compute(task, store, chunks, todo, options.seed, contexts, stats, bar)
                stats.seconds = time.perf_counter() - clock
                print(stats.line(context.world_size), file=sys.stderr)
                summary = RunSummary(store.root, _gather(stats), time.perf_counter() - clock, _complete(store, plan))
                if context.is_main:
                    data = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(options.data).items()}
                    record_run(store.root, plan, _run_entry(summary, started, context.world_size, methods), {"complete": summary.complete, "data": data})
                    print(summary.line(), file=sys.stderr)
                return summary
            finally:
                if context.is_main:
                    lock.release()
