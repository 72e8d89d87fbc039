"""The run folder's record files: ``plan.json`` (what the folder holds) and ``manifest.json`` (how it was made).

The plan fixes what every item's numbers depend on (protocol, network, weights, settings, item ids); a later run
on the same folder must agree with it, and may only add methods. The manifest adds the provenance (git revision,
package versions) and one entry per completed run (ranks, items computed and reused, seconds, items/s).
Knows nothing about methods or metrics.
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fame_utils.protocols.errors import StoreMismatchError
from fame_utils.protocols.store import write_json_atomic
from fame_utils.runtime import package_versions as installed_versions

__all__ = ["MANIFEST_NAME", "PLAN_NAME", "git_revision", "merge_plan", "package_versions", "read_json", "record_run", "utc_now"]

PLAN_NAME = "plan.json"
MANIFEST_NAME = "manifest.json"
_VERSIONED = ("fame-workbook", "torch", "torchvision", "numpy", "scipy", "grad-cam", "pandas")


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_revision() -> str | None:
    """``git describe --always --dirty`` of the checkout holding this package (full SHA), or None outside git."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=40"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def package_versions() -> dict[str, str]:
    """Python's version and those of the installed packages that shape the numbers."""
    return installed_versions(_VERSIONED)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON record of the run folder, or None if absent.

    Raises:
        StoreMismatchError: the file exists but is not valid JSON.
    """
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as error:
        raise StoreMismatchError(f"{path} is damaged ({error}); restore it or start in a new --out folder.") from error


def merge_plan(folder: Path, plan: dict[str, Any]) -> dict[str, Any]:
    """Check ``plan`` against the folder's ``plan.json`` and store the union of their methods.

    Returns:
        The folder's plan after the merge.

    Raises:
        StoreMismatchError: the folder holds a run with other settings (each difference is listed).
    """
    normalised = json.loads(json.dumps(plan))
    existing = read_json(folder / PLAN_NAME)
    if existing is not None:
        differences = [f"{key}: the folder has {_short(old)}, this run asks for {_short(new)}"
                       for key, old, new in _differences(existing, normalised) if key != "methods"]
        if differences:
            raise StoreMismatchError(f"{folder} holds a run with other settings ({'; '.join(differences)}). "
                                     "Rerun with the folder's settings to resume it, or choose another --out.")
        normalised["methods"] = existing["methods"] + [m for m in normalised["methods"] if m not in existing["methods"]]
        if normalised == existing:
            return existing
    write_json_atomic(folder / PLAN_NAME, normalised)
    return normalised


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, old, new)`` for every leaf where two JSON records differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [difference for key in sorted(set(old) | set(new)) for difference in _differences(old.get(key), new.get(key), f"{prefix}{key}.")]
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else f"{text[:100]}… ({len(text)} characters)"


def record_run(folder: Path, plan: dict[str, Any], run: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Append one run to ``manifest.json`` (written atomically) and return the new manifest.

    Args:
        folder: the run folder.
        plan: the folder's plan (protocol, network, weights, settings, methods; item ids are counted, not copied).
        run: this run's entry (ranks, counts, seconds).
        extra: further top-level fields (e.g. data locations, completeness).
    """
    previous = read_json(folder / MANIFEST_NAME) or {}
    runs = [*previous.get("runs", []), run]
    manifest = {key: value for key, value in plan.items() if key != "items"}
    manifest.update(items=len(plan["items"]), git_sha=git_revision(), versions=package_versions(), updated=utc_now(),
                    seconds=round(sum(entry["seconds"] for entry in runs), 3), runs=runs, **extra)
    write_json_atomic(folder / MANIFEST_NAME, manifest)
    return manifest
