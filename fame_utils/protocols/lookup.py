"""Find finished protocol runs for a notebook, or say how to produce them.

A notebook's ``paper`` profile looks for run folders under one root (the root itself or its sub-folders) and
merges the complete ones with :func:`fame_utils.protocols.report` instead of recomputing on one core.
Knows nothing about methods or metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fame_utils.protocols.catalogue import PROTOCOLS
from fame_utils.protocols.manifest import MANIFEST_NAME, PLAN_NAME, read_json
from fame_utils.protocols.report import ProtocolReport, report

__all__ = ["FoundRuns", "find_runs", "production_hint", "stored_table"]


@dataclass(frozen=True)
class FoundRuns:
    """Run folders of the asked protocols: complete ones (ready to report) and unfinished ones (to resume)."""

    complete: list[Path] = field(default_factory=list)
    unfinished: list[Path] = field(default_factory=list)


def find_runs(root: str | Path | None, protocols: Sequence[str]) -> FoundRuns:
    """Run folders under ``root`` (itself or its direct sub-folders) whose plan is one of ``protocols``, sorted by path.

    A folder is complete when its manifest says every item of every planned method is stored; an empty or
    missing ``root`` finds nothing.

    Raises:
        ValueError: an unknown protocol name.
    """
    unknown = [name for name in protocols if name not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocol(s) {unknown}; choose from {', '.join(PROTOCOLS)}.")
    if not root or not Path(root).expanduser().is_dir():
        return FoundRuns()
    base = Path(root).expanduser()
    found = FoundRuns()
    for folder in sorted([base, *(path for path in base.iterdir() if path.is_dir())]):
        plan = read_json(folder / PLAN_NAME)
        if plan is None or plan.get("protocol") not in protocols:
            continue
        manifest = read_json(folder / MANIFEST_NAME) or {}
        (found.complete if manifest.get("complete") else found.unfinished).append(folder)
    return found


def production_hint(protocol: str, root: str | Path, network: str, data_flags: str) -> str:
    """The command that fills ``root`` with a run of ``protocol`` for ``network`` (to print when none is found).

    Args:
        protocol: a protocol name.
        root: the folder the notebook searches.
        network: the network of the example command.
        data_flags: the data and weights flags of the example, e.g. ``"--weights hub --data-root /data/imagenet"``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}.")
    out = Path(root) / f"{protocol}_{network}"
    return (f"No complete {protocol} run under {root}. Produce one per network (resumable; see the README section "
            f"'Running the paper's protocols at scale'), e.g. on 8 GPUs:\n"
            f"  torchrun --standalone --nproc_per_node=8 -m fame_utils.protocols run --protocol {protocol} --network {network} "
            f"{data_flags} --out {out}\nthen run this notebook again.")


def stored_table(root: str | Path, protocols: Sequence[str], network: str, data_flags: str) -> tuple[ProtocolReport | None, str]:
    """The table of the complete runs of ``protocols`` under ``root`` and a status text for the notebook.

    Args:
        root: the folder holding run folders.
        protocols: the protocol names the table is made of (one task).
        network, data_flags: the example command printed when no complete run exists (:func:`production_hint`).

    Returns:
        ``(report, status)``: the merged :class:`~fame_utils.protocols.report.ProtocolReport` (None without a complete
        run) and lines naming the merged runs, the unfinished ones (to resume), or how to produce one.
    """
    found = find_runs(root, protocols)
    lines = [f"unfinished run, resume it with its own command (see its manifest.json): {folder}" for folder in found.unfinished]
    if not found.complete:
        return None, "\n".join([*lines, production_hint(protocols[0], root, network, data_flags)])
    lines.insert(0, f"merged {len(found.complete)} protocol run(s): {', '.join(str(folder) for folder in found.complete)}")
    return report(found.complete), "\n".join(lines)
