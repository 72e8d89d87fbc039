"""What a notebook run writes: figures (PDF + PNG), tables, recorded key numbers and the manifest.

A notebook starts a :class:`Session` right after its parameters cell; every figure and table goes
through it, so ``figures/manifest.json`` always says how each file was made (git SHA, package
versions, seed, profile, parameters, device, seconds). Knows nothing of what the notebooks compute.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import subprocess
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from fame_utils.runtime import package_versions as installed_versions
from fame_utils.runtime import resolve_device, seed_everything

__all__ = ["PROFILES", "Session", "choose", "git_sha", "package_versions", "update_manifest", "results_path"]

PROFILES = ("smoke", "default", "paper")
MANIFEST = "manifest.json"
EXECUTED = "executed"
_VERSIONED = ("torch", "torchvision", "numpy", "grad-cam", "scikit-image", "onnx", "pandas", "matplotlib", "papermill", "fame-workbook")


def choose(profile: str, **options: Any) -> Any:
    """Return the value given for ``profile`` (keywords ``smoke``, ``default``, ``paper``).

    Raises:
        ValueError: unknown profile or no value for it.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
    if profile not in options:
        raise ValueError(f"no setting given for profile {profile!r} (got {', '.join(options)}).")
    return options[profile]


#: What decides a run's numbers: a change here (not in the figures a run writes) marks its commit ``-dirty``.
RESULT_SOURCES = ("fame_utils", "notebooks", "pyproject.toml", "requirements-nodeps.txt", "environment.yml")


def git_sha(root: Path | None = None) -> str | None:
    """Return the current git commit, with ``-dirty`` when the code or notebooks (:data:`RESULT_SOURCES`) differ from
    it (changed outputs such as ``figures/`` do not count), or None outside git."""
    cwd = root or Path(__file__).resolve().parent
    sources = [f":(top){path}" for path in RESULT_SOURCES]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *sources], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}-dirty" if dirty else sha


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages whose behaviour shapes the figures."""
    return installed_versions(_VERSIONED)


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """Hold an exclusive lock on ``lock_path`` (POSIX ``flock``; a no-op where it does not exist)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_manifest(output_dir: Path, section: str, key: str, entry: dict[str, Any]) -> None:
    """Set ``manifest[section][key] = entry`` in ``output_dir/manifest.json`` (created if missing).

    Safe when several notebooks run at once into the same folder: the read-modify-write holds a lock and the
    new manifest replaces the old one atomically, so no reader sees a half-written file.
    """
    path = Path(output_dir) / MANIFEST
    with _exclusive(path.with_name(path.name + ".lock")):
        manifest = json.loads(path.read_text()) if path.exists() else {}
        manifest.setdefault(section, {})[key] = entry
        manifest["git_sha"] = git_sha()
        manifest["versions"] = package_versions()
        manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".manifest-", suffix=".json")
        with os.fdopen(handle, "w") as file:
            file.write(json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n")
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)


def results_path(output_dir: Path, notebook: str) -> Path:
    """Where a notebook's recorded key numbers are written (next to its executed copy)."""
    return Path(output_dir) / EXECUTED / f"{notebook}.json"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, torch.device):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


def _clean_number(value: Any) -> Any:
    """Convert numpy/torch scalars and arrays to plain JSON values; NaN/inf become None."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean_number(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_number(v) for v in value]
    return value


@dataclass
class Session:
    """One notebook run: seeds, device, and everything it writes.

    Use :meth:`start` in the notebook's first code cell after the parameters.
    """

    notebook: str
    profile: str
    seed: int
    output_dir: Path
    parameters: dict[str, Any]
    device: torch.device
    generator: torch.Generator
    started: float = field(default_factory=time.perf_counter)
    results: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls,
        notebook: str,
        *,
        profile: str,
        seed: int,
        output_dir: str | Path,
        parameters: dict[str, Any] | None = None,
        device: str = "auto",
    ) -> "Session":
        """Validate the profile, seed everything, pick the device and prepare ``output_dir``."""
        choose(profile, **{name: name for name in PROFILES})
        out = Path(output_dir)
        (out / EXECUTED).mkdir(parents=True, exist_ok=True)
        generator = seed_everything(seed)
        session = cls(notebook, profile, seed, out, dict(parameters or {}), resolve_device(device), generator)
        session.record(profile=profile, seed=seed)
        return session

    def _provenance(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "profile": self.profile,
            "seed": self.seed,
            "device": str(self.device),
            "parameters": self.parameters,
            "seconds": round(time.perf_counter() - self.started, 2),
            "git_sha": git_sha(),
        }

    def save_figure(self, fig: Any, name: str, caption: str = "") -> list[Path]:
        """Save ``fig`` as ``<output_dir>/<name>.pdf`` and ``.png`` and register it in the manifest."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"figure name {name!r} must be a plain file stem such as 'fig1_cells'.")
        paths = [self.output_dir / f"{name}.pdf", self.output_dir / f"{name}.png"]
        fig.savefig(paths[0], bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None})
        fig.savefig(paths[1], bbox_inches="tight", dpi=150, metadata={"Software": None})
        self.figures.append(name)
        update_manifest(self.output_dir, "figures", name, {**self._provenance(), "caption": caption, "files": [p.name for p in paths]})
        return paths

    def save_table(self, table: Any, name: str, caption: str = "") -> list[Path]:
        """Save a pandas DataFrame as ``<name>.csv`` and ``<name>.md`` and register it in the manifest."""
        paths = [self.output_dir / f"{name}.csv", self.output_dir / f"{name}.md"]
        table.to_csv(paths[0], index=False)
        header = f"{caption}\n\n" if caption else ""
        paths[1].write_text(header + table.to_markdown(index=False) + "\n")
        update_manifest(self.output_dir, "tables", name, {**self._provenance(), "caption": caption, "files": [p.name for p in paths]})
        return paths

    def record(self, **numbers: Any) -> None:
        """Record key numbers; they are written to ``executed/<notebook>.json`` at once."""
        self.results.update({k: _clean_number(v) for k, v in numbers.items()})
        path = results_path(self.output_dir, self.notebook)
        path.write_text(json.dumps(self.results, indent=2, sort_keys=True) + "\n")

    def elapsed(self) -> float:
        """Seconds since the session started."""
        return time.perf_counter() - self.started

