"""Where this process sits in a torchrun launch: rank, shard of the work, device, threads, process group.

Reads only the torchrun environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``); a plain
``python -m`` launch is rank 0 of 1. Knows nothing about protocols, methods or the result store.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from fame_utils.runtime import resolve_device

__all__ = ["RankContext", "available_cores", "barrier", "broadcast_from_main", "cpu_threads", "process_group", "rank_device", "shard"]

T = TypeVar("T")
#: How long a rank waits at a barrier for the slowest rank (shards of long protocols finish hours apart).
BARRIER_TIMEOUT = timedelta(hours=48)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={value!r} must be an integer (set by torchrun).") from error


@dataclass(frozen=True)
class RankContext:
    """One process of a (possibly single-process) launch.

    Attributes:
        rank, world_size: global rank and number of processes (``RANK``, ``WORLD_SIZE``).
        local_rank, local_world_size: rank and process count on this node (``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``).
        host: this node's host name.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    host: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 ≤ RANK < WORLD_SIZE, got RANK={self.rank}, WORLD_SIZE={self.world_size}.")
        if self.local_world_size < 1 or not 0 <= self.local_rank < self.local_world_size:
            raise ValueError(f"need 0 ≤ LOCAL_RANK < LOCAL_WORLD_SIZE, got {self.local_rank} and {self.local_world_size}.")

    @classmethod
    def from_env(cls) -> "RankContext":
        """The rank torchrun assigned to this process (rank 0 of 1 without torchrun)."""
        world_size = _env_int("WORLD_SIZE", 1)
        return cls(
            rank=_env_int("RANK", 0),
            world_size=world_size,
            local_rank=_env_int("LOCAL_RANK", 0),
            local_world_size=_env_int("LOCAL_WORLD_SIZE", world_size),
        )

    @property
    def is_main(self) -> bool:
        """True on global rank 0, which owns the lock, the shared context and the manifest."""
        return self.rank == 0

    @property
    def label(self) -> str:
        """``"rank r/N"`` for progress bars and log lines."""
        return f"rank {self.rank}/{self.world_size}"


def shard(units: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The units of ``rank``: unit ``i`` goes to rank ``i mod world_size`` (deterministic, balanced to ±1).

    Raises:
        ValueError: ``rank`` outside ``[0, world_size)``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 ≤ rank < world_size, got rank={rank}, world_size={world_size}.")
    return list(units[rank::world_size])


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_threads(cores: int, local_world_size: int) -> int:
    """Threads per CPU rank so that the ranks of one node share its cores: ``max(1, cores // local_world_size)``."""
    if cores < 1 or local_world_size < 1:
        raise ValueError(f"cores and local_world_size must be ≥ 1, got {cores} and {local_world_size}.")
    return max(1, cores // local_world_size)


def rank_device(requested: str, context: RankContext) -> torch.device:
    """The device of this rank: with CUDA, GPU ``LOCAL_RANK``; otherwise :func:`fame_utils.runtime.resolve_device`.

    Raises:
        ValueError: CUDA asked for (``"auto"`` on a CUDA machine or ``"cuda"``) but ``LOCAL_RANK`` has no GPU,
            or an accelerator that is not available.
    """
    device = resolve_device(requested)
    if device.type != "cuda" or device.index is not None:
        return device
    count = torch.cuda.device_count()
    if context.local_rank >= count:
        raise ValueError(f"LOCAL_RANK {context.local_rank} has no GPU: this node has {count}; start at most {count} processes per node.")
    return torch.device("cuda", context.local_rank)


@contextmanager
def process_group(context: RankContext, device: torch.device) -> Iterator[bool]:
    """Join the torchrun process group when there is more than one rank (NCCL on GPUs, gloo on CPUs).

    Yields whether a group was initialised; it is always destroyed on exit, also after an exception.
    A single process never initialises one.
    """
    if context.world_size == 1 or not dist.is_available():
        yield False
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
    try:
        yield True
    finally:
        dist.destroy_process_group()


def broadcast_from_main(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
