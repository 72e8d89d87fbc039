"""What a notebook run writes: figures (PDF + PNG), tables, recorded key numbers and the manifest.

A notebook starts a :class:`Session` right after its parameters cell; every figure and table goes
through it, so ``manifest.json`` always says how each file was made (git SHA, package versions, seed,
profile, parameters, device, seconds). Every file is written atomically (temporary name in the same
folder, fsync, rename) and its entry says ``"writing"`` until the file is complete, so an interrupted run
never leaves an ``"ok"`` entry for a half-written or foreign file. One run holds one lock per output
folder (:class:`RunLock`). Knows nothing of what the notebooks compute.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import torch

from fame_utils.runtime import package_versions as installed_versions
from fame_utils.runtime import process_alive, resolve_device, seed_everything

__all__ = [
    "PROFILES", "LAB_DIR", "OutputDirError", "OutputLockedError", "RunLock", "SavedFiles", "Session", "atomic_write", "choose",
    "git_sha", "package_versions", "update_manifest", "results_path", "resolve_output_dir",
]

PROFILES = ("smoke", "default", "paper")
MANIFEST = "manifest.json"
EXECUTED = "executed"
LOCK = ".run.lock"
REPO_ROOT = Path(__file__).resolve().parents[2]
LAB_DIR = REPO_ROOT / "build" / "lab"
"""Where a notebook run interactively (output_dir None) writes; only the runner writes ``figures/``."""
RUN_ID_ENV = "FAME_RUN_ID"
RUN_SHA_ENV = "FAME_RUN_SHA"
_VERSIONED = ("torch", "torchvision", "numpy", "grad-cam", "scikit-image", "onnx", "pandas", "matplotlib", "papermill", "fame-workbook")


class SavedFiles(list[Path]):
    """The files one save wrote (a list of paths); a notebook cell ending in a save shows them as one short line."""

    def __repr__(self) -> str:
        if not self:
            return "saved nothing"
        return f"saved {', '.join(path.name for path in self)} in {self[0].parent.name}/"


class OutputDirError(OSError):
    """The output folder cannot be written, or a name would leave it."""


class OutputLockedError(RuntimeError):
    """Another run is writing into the same output folder."""


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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync it and rename it onto ``path``.

    On any error the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


#: Largest committed PNG: sheets of many panels are rendered at a lower dpi until they fit (the PDF keeps the vectors).
PNG_LIMIT_BYTES = 1_500_000
PNG_DPI = 150
_PNG_MIN_DPI = 50


def png_bytes(fig: Any, limit: int = PNG_LIMIT_BYTES, dpi: int = PNG_DPI) -> bytes:
    """``fig`` as PNG bytes without metadata (byte-identical for an unchanged figure), at ``dpi`` or, when that file
    would exceed ``limit`` bytes, at the dpi that makes it fit (size scales about with dpi²; 5 % margin). Never below
    50 dpi: if nothing fits by then, the smallest file rendered is returned."""
    smallest = b""
    while True:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight", dpi=dpi, metadata={"Software": None})
        data = buffer.getvalue()
        smallest = data if not smallest or len(data) < len(smallest) else smallest
        if len(data) <= limit:
            return data
        if dpi <= _PNG_MIN_DPI:
            return smallest
        dpi = max(_PNG_MIN_DPI, int(dpi * 0.95 * (limit / len(data)) ** 0.5))


def _atomic_save(path: Path, writer: Callable[[IO[Any]], None], mode: str = "wb") -> None:
    with atomic_write(path, mode) as file:
        writer(file)


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


def _read_manifest(path: Path) -> dict[str, Any]:
    """Read the manifest; a corrupt one (e.g. git conflict markers) is moved aside with a warning."""
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("top level is not a JSON object")
        return manifest
    except (ValueError, UnicodeDecodeError) as error:
        aside = path.with_name(f"{path.name}.corrupt-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%f')}")
        os.replace(path, aside)
        warnings.warn(f"{path} is corrupt ({error}); moved it to {aside.name} and started a new manifest.", stacklevel=3)
        return {}


def edit_manifest(output_dir: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply ``change`` to ``output_dir/manifest.json`` under a lock and replace the file atomically."""
    path = Path(output_dir) / MANIFEST
    with _exclusive(path.with_name(path.name + ".lock")):
        manifest = _read_manifest(path)
        change(manifest)
        manifest["versions"] = package_versions()
        manifest["updated"] = _now()
        text = json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n"
        _atomic_save(path, lambda file: file.write(text), mode="w")
    return manifest


def update_manifest(output_dir: Path, section: str, key: str, entry: dict[str, Any]) -> None:
    """Set ``manifest[section][key] = entry`` in ``output_dir/manifest.json`` (created if missing).

    Safe when several notebooks run at once into the same folder: the read-modify-write holds a lock and the
    new manifest replaces the old one atomically, so no reader sees a half-written file.
    """
    edit_manifest(output_dir, lambda manifest: manifest.setdefault(section, {}).__setitem__(key, entry))


def results_path(output_dir: Path, notebook: str) -> Path:
    """Where a notebook's recorded key numbers are written (next to its executed copy)."""
    return Path(output_dir) / EXECUTED / f"{notebook}.json"


def resolve_output_dir(output_dir: str | Path | None) -> Path:
    """``None`` (a notebook opened in JupyterLab) means the scratch folder :data:`LAB_DIR`; create and check it.

    Raises:
        OutputDirError: the folder cannot be created or written.
    """
    out = LAB_DIR if output_dir is None else Path(output_dir)
    try:
        (out / EXECUTED).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise OutputDirError(f"output folder {out} is not writable ({error.strerror or error}); "
                             "fix its permissions or pass another output_dir / --output.") from error
    return out.resolve()


@dataclass
class RunLock:
    """The one lock a run holds on its output folder (``DIR/.run.lock``: run id, pid, host, start, command).

    A second run is refused with :class:`OutputLockedError` naming the first; the lock of a dead process on this
    host is taken over with a warning, and what that run left ``"running"`` or ``"writing"`` is marked
    ``"interrupted"``.
    """

    output_dir: Path
    run_id: str
    record: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def acquire(cls, output_dir: Path, run_id: str | None = None) -> "RunLock":
        """Take the lock for a new run (a fresh run id unless given)."""
        lock = cls(Path(output_dir), run_id or uuid.uuid4().hex)
        lock.record = {"run_id": lock.run_id, "pid": os.getpid(), "host": socket.gethostname(), "started": _now(),
                       "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}
        path = lock.path
        for _ in range(3):
            try:
                handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                cls._take_over_if_stale(path)
                continue
            with os.fdopen(handle, "w") as file:
                file.write(json.dumps(lock.record) + "\n")
            return lock
        raise OutputLockedError(f"could not take the lock {path}; another run keeps taking it.")

    @property
    def path(self) -> Path:
        return self.output_dir / LOCK

    @staticmethod
    def holder(output_dir: Path) -> dict[str, Any] | None:
        """The lock record of the run writing into ``output_dir``, or None."""
        try:
            return json.loads((Path(output_dir) / LOCK).read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {}

    @classmethod
    def _take_over_if_stale(cls, path: Path) -> None:
        held = cls.holder(path.parent)
        if held is None:
            return
        same_host = held.get("host") == socket.gethostname()
        if held and not (same_host and not process_alive(int(held.get("pid", -1)))):
            raise OutputLockedError(
                f"{path.parent} is in use by another run (pid {held.get('pid')} on {held.get('host')}, started "
                f"{held.get('started')}, command: {held.get('command')}); wait for it, or choose another output folder.")
        warnings.warn(f"taking over the stale lock {path} of a run that died (pid {held.get('pid')}, started "
                      f"{held.get('started')}); its unfinished notebooks and files are marked 'interrupted'.", stacklevel=3)
        mark_interrupted(path.parent, held.get("run_id"))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if (self.holder(self.output_dir) or {}).get("run_id") == self.run_id:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def mark_interrupted(output_dir: Path, run_id: str | None) -> None:
    """Mark the notebooks left ``"running"`` and files left ``"writing"`` (by ``run_id``, or any) as interrupted."""

    def change(manifest: dict[str, Any]) -> None:
        for section in ("notebooks", "figures", "tables"):
            for entry in manifest.get(section, {}).values():
                if entry.get("status") in {"running", "writing"} and run_id in (None, entry.get("run_id")):
                    entry["status"] = "interrupted"

    if (Path(output_dir) / MANIFEST).exists():
        edit_manifest(output_dir, change)
    for leftover in Path(output_dir).glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


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


def _own_run(output_dir: Path) -> tuple[str, RunLock | None]:
    """The run this session belongs to: the runner's (its id in the environment), this process's, or a new one
    holding the folder's lock (the scratch folder ``build/lab/`` is not locked: several lab kernels share it)."""
    run_id = os.environ.get(RUN_ID_ENV)
    held = RunLock.holder(output_dir) or {}
    if run_id and held.get("run_id") == run_id:
        return run_id, None
    if held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
        return held["run_id"], None
    if output_dir == LAB_DIR.resolve():
        return uuid.uuid4().hex, None
    lock = RunLock.acquire(output_dir)
    atexit.register(lock.release)
    return lock.run_id, lock


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
    run_id: str = ""
    sha: str | None = None
    started: float = field(default_factory=time.perf_counter)
    results: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    lock: RunLock | None = None

    @classmethod
    def start(
        cls,
        notebook: str,
        *,
        profile: str,
        seed: int,
        output_dir: str | Path | None,
        parameters: dict[str, Any] | None = None,
        device: str = "auto",
    ) -> "Session":
        """Validate the profile, check ``output_dir`` (None: the scratch folder ``build/lab/``), join the runner's
        run or lock the folder for this one, seed everything and pick the device.

        Raises:
            OutputDirError: the output folder is not writable.
            OutputLockedError: another run writes into the same folder.
        """
        choose(profile, **{name: name for name in PROFILES})
        out = resolve_output_dir(output_dir)
        run_id, lock = _own_run(out)
        sha = os.environ.get(RUN_SHA_ENV) if run_id == os.environ.get(RUN_ID_ENV) else git_sha()
        generator = seed_everything(seed)
        session = cls(notebook, profile, seed, out, dict(parameters or {}), resolve_device(device), generator,
                      run_id=run_id, sha=sha, lock=lock)
        if run_id != os.environ.get(RUN_ID_ENV):
            edit_manifest(out, lambda manifest: manifest.__setitem__("run", session._run_record()))
        session.record(profile=profile, seed=seed)
        return session

    def _run_record(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "git_sha": self.sha, "profile": self.profile, "seed": self.seed,
                "started": _now(), "notebooks": [self.notebook]}

    def _provenance(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "profile": self.profile,
            "seed": self.seed,
            "device": str(self.device),
            "parameters": self.parameters,
            "seconds": round(time.perf_counter() - self.started, 2),
            "git_sha": self.sha,
            "run_id": self.run_id,
        }

    def _output(self, name: str, suffixes: tuple[str, ...]) -> list[Path]:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise OutputDirError(f"output name {name!r} must be a plain file stem such as 'fig1_cells' "
                                 f"(it would leave {self.output_dir}).")
        paths = [self.output_dir / f"{name}{suffix}" for suffix in suffixes]
        if any(path.resolve().parent != self.output_dir for path in paths):
            raise OutputDirError(f"output name {name!r} leaves {self.output_dir}; use a plain file stem.")
        return paths

    def _save(self, section: str, name: str, caption: str, writers: list[tuple[Path, Callable[[IO[Any]], None], str]]) -> SavedFiles:
        """Mark the entry "writing", write every file atomically, then mark it "ok" with this run's provenance."""
        files = [path.name for path, _, _ in writers]
        update_manifest(self.output_dir, section, name, {**self._provenance(), "caption": caption, "files": files, "status": "writing"})
        for path, writer, mode in writers:
            _atomic_save(path, writer, mode)
        update_manifest(self.output_dir, section, name, {**self._provenance(), "caption": caption, "files": files, "status": "ok"})
        return SavedFiles(path for path, _, _ in writers)

    def save_figure(self, fig: Any, name: str, caption: str = "") -> SavedFiles:
        """Save ``fig`` as ``<output_dir>/<name>.pdf`` and ``.png`` and register it in the manifest.

        Raises:
            OutputDirError: ``name`` is not a plain file stem inside the output folder.
        """
        pdf, png = self._output(name, (".pdf", ".png"))
        self.figures.append(name)
        return self._save("figures", name, caption, [
            (pdf, lambda f: fig.savefig(f, format="pdf", bbox_inches="tight", metadata={"CreationDate": None, "ModDate": None}), "wb"),
            (png, lambda f: f.write(png_bytes(fig)), "wb"),
        ])

    def save_table(self, table: Any, name: str, caption: str = "") -> SavedFiles:
        """Save a pandas DataFrame as ``<name>.csv`` and ``<name>.md`` and register it in the manifest.

        Raises:
            OutputDirError: ``name`` is not a plain file stem inside the output folder.
        """
        csv, markdown = self._output(name, (".csv", ".md"))
        header = f"{caption}\n\n" if caption else ""
        return self._save("tables", name, caption, [
            (csv, lambda f: f.write(table.to_csv(index=False)), "w"),
            (markdown, lambda f: f.write(header + table.to_markdown(index=False) + "\n"), "w"),
        ])

    def record(self, **numbers: Any) -> None:
        """Record key numbers; they are written to ``executed/<notebook>.json`` at once."""
        self.results.update({k: _clean_number(v) for k, v in numbers.items()})
        text = json.dumps(self.results, indent=2, sort_keys=True) + "\n"
        _atomic_save(results_path(self.output_dir, self.notebook), lambda f: f.write(text), mode="w")

    def elapsed(self) -> float:
        """Seconds since the session started."""
        return time.perf_counter() - self.started
