"""The paper's protocols at scale: sharded over torchrun ranks (CPUs or GPUs, one node or many), resumable, merged into tables.

``python -m fame_utils.protocols run`` computes every item's maps (float16) and metric inputs into a checksummed
store, one atomic file per item; ``report`` merges the store into Table 1 / Table 2 with bootstrap intervals.
It builds on the methods, metrics and models; nothing below it imports it.

- :mod:`~fame_utils.protocols.catalogue`: the protocols and their items (user datasets checked up front).
- :mod:`~fame_utils.protocols.tasks`: one item's maps and metric inputs (classification, verification).
- :mod:`~fame_utils.protocols.distributed`: rank, shard, device and threads from the torchrun environment.
- :mod:`~fame_utils.protocols.store`, :mod:`~fame_utils.protocols.lock`, :mod:`~fame_utils.protocols.manifest`:
  atomic checksummed files, the one-run-per-folder lock, the plan and the manifest.
- :mod:`~fame_utils.protocols.runner`, :mod:`~fame_utils.protocols.report`: run a shard; merge the tables.
- :mod:`~fame_utils.protocols.lookup`: finished runs for the notebooks' ``paper`` profile, or how to produce them.
"""

from fame_utils.protocols.catalogue import PROTOCOLS, DataOptions, resolve_items
from fame_utils.protocols.distributed import RankContext, cpu_threads, shard
from fame_utils.protocols.errors import IncompleteStoreError, ProtocolInputError, StoreMismatchError
from fame_utils.protocols.lock import RunLock, RunLockedError
from fame_utils.protocols.lookup import FoundRuns, find_runs, production_hint, stored_table
from fame_utils.protocols.report import ProtocolReport, load_items, report
from fame_utils.protocols.runner import RunOptions, RunSummary, run_protocol
from fame_utils.protocols.store import CorruptItemError, ItemStore

__all__ = [
    "PROTOCOLS",
    "CorruptItemError",
    "DataOptions",
    "FoundRuns",
    "IncompleteStoreError",
    "ItemStore",
    "ProtocolInputError",
    "ProtocolReport",
    "RankContext",
    "RunLock",
    "RunLockedError",
    "RunOptions",
    "RunSummary",
    "StoreMismatchError",
    "cpu_threads",
    "find_runs",
    "load_items",
    "production_hint",
    "report",
    "resolve_items",
    "run_protocol",
    "shard",
    "stored_table",
]
