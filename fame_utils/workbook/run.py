"""Execute the workbook's notebooks with papermill (it knows nothing of what they compute).

Usage::

    python -m fame_utils.workbook.run --profile smoke|default|paper [--notebooks 02 04] [--output DIR] [--seed N]
    python -m fame_utils.workbook.run --check figures

Each notebook is executed in order with ``profile``, ``output_dir`` (and ``seed`` when given) injected
as papermill parameters. Executed copies and their recorded numbers go to ``DIR/executed/``; figures,
tables and ``manifest.json`` go to ``DIR``; each notebook that ran through is also published, sanitised, as
``DIR/notebooks/NN_name.ipynb`` (see :mod:`fame_utils.workbook.publish`). The exit status is non-zero if any notebook fails.
The run holds one lock on ``DIR`` and takes the git SHA once, at its start; every notebook's entry goes
from ``"running"`` to ``"ok"``, ``"failed"`` or ``"interrupted"``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from fame_utils.workbook.session import (
    MANIFEST, EXECUTED, PROFILES, RESULT_SOURCES, RUN_ID_ENV, RUN_SHA_ENV, OutputDirError, OutputLockedError, RunLock,
    atomic_write, edit_manifest, git_sha, resolve_output_dir, update_manifest,
)
from fame_utils.workbook.publish import publish_notebook
from fame_utils.workbook.widgets import STATIC_WIDGETS_ENV

__all__ = ["NOTEBOOK_DIR", "check", "notebook_paths", "run_notebooks", "main"]

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
CELL_TIMEOUT = {"smoke": 1800, "default": None, "paper": None}
"""Seconds one cell may run before the run fails (smoke only: a hung kernel must not stall CI)."""


def notebook_paths(selection: list[str] | None = None, notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """Return the workbook notebooks in execution order, optionally filtered by name prefix.

    Args:
        selection: prefixes such as ``["02", "04_image"]``; ``None`` means every notebook.

    Raises:
        ValueError: if a prefix matches no notebook.
    """
    paths = sorted(p for p in notebook_dir.glob("[0-9][0-9]_*.ipynb"))
    if not selection:
        return paths
    chosen = []
    for prefix in selection:
        matches = [p for p in paths if p.stem.startswith(prefix)]
        if not matches:
            raise ValueError(f"no notebook in {notebook_dir.name}/ starts with {prefix!r}; available: {', '.join(p.stem for p in paths)}")
        chosen.extend(m for m in matches if m not in chosen)
    return sorted(chosen)


def _prepare_environment() -> None:
    """Put this interpreter's bin/ first on PATH so the 'python3' kernel is this environment's Python,
    and ask the notebooks for static widget previews (see :func:`fame_utils.workbook.widgets.widgets_live`)."""
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ[STATIC_WIDGETS_ENV] = "1"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        os.environ.setdefault("TQDM_DISABLE", "1")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _warn_if_dirty(sha: str | None) -> None:
    if sha and sha.endswith("-dirty"):
        print("=" * 78 + "\n[fame_utils.workbook.run] WARNING: the code or notebooks have uncommitted changes; every file\n"
              f"this run writes is marked {sha}. Commit first for results that name their code.\n" + "=" * 78,
              file=sys.stderr, flush=True)


def _execute(path: Path, output_dir: Path, parameters: dict[str, object], profile: str) -> None:
    """Execute one notebook; its executed copy replaces the previous one when papermill finished or failed in a
    cell, and not when the run was interrupted (the previous copy then stays)."""
    import papermill

    target = output_dir / EXECUTED / path.name
    partial = target.with_name(f".{path.stem}.partial.ipynb")
    try:
        papermill.execute_notebook(
            str(path),
            str(partial),
            parameters=parameters,
            kernel_name="python3",
            cwd=str(path.parent),
            progress_bar=False,
            log_output=False,
            execution_timeout=CELL_TIMEOUT[profile],
        )
    except Exception:
        _keep(partial, target)
        raise
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _keep(partial, target)


def _keep(partial: Path, target: Path) -> None:
    if partial.exists():
        with atomic_write(target) as file:
            file.write(partial.read_text())
        partial.unlink()


def run_notebooks(
    profile: str,
    output_dir: Path,
    selection: list[str] | None = None,
    seed: int | None = None,
    notebook_dir: Path = NOTEBOOK_DIR,
) -> dict[str, str]:
    """Execute the selected notebooks under one lock on ``output_dir`` and one git SHA taken now.

    Returns:
        ``{notebook: "ok" | "failed: <error>"}``.

    Raises:
        OutputDirError: ``output_dir`` is not writable.
        OutputLockedError: another run writes into ``output_dir``.
        KeyboardInterrupt: on Ctrl-C or SIGTERM, after marking the current notebook "interrupted".
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
    paths = notebook_paths(selection, notebook_dir)
    output_dir = resolve_output_dir(output_dir)
    lock = RunLock.acquire(output_dir)
    main_thread = threading.current_thread() is threading.main_thread()
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        sha = git_sha(REPO_ROOT)
        _warn_if_dirty(sha)
        _prepare_environment()
        os.environ[RUN_ID_ENV], os.environ[RUN_SHA_ENV] = lock.run_id, sha or ""
        run = {**lock.record, "git_sha": sha, "profile": profile, "seed": seed, "notebooks": [p.stem for p in paths]}
        edit_manifest(output_dir, lambda manifest: _start_run(manifest, run))
        return {path.stem: _run_one(path, output_dir, profile, seed, lock.run_id) for path in paths}
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous_handler)
        for name in (RUN_ID_ENV, RUN_SHA_ENV):
            os.environ.pop(name, None)
        lock.release()


def _start_run(manifest: dict, run: dict) -> None:
    """Name this run in ``manifest``; drop the top-level ``git_sha`` older versions wrote (``run.git_sha`` names the code)."""
    manifest.pop("git_sha", None)
    manifest["run"] = run


def _run_one(path: Path, output_dir: Path, profile: str, seed: int | None, run_id: str) -> str:
    parameters: dict[str, object] = {"profile": profile, "output_dir": str(output_dir)}
    if seed is not None:
        parameters["seed"] = seed
    entry = {"profile": profile, "parameters": parameters | {"output_dir": output_dir.name}, "run_id": run_id}
    update_manifest(output_dir, "notebooks", path.stem, {**entry, "status": "running"})
    started = time.perf_counter()
    print(f"[fame_utils.workbook.run] {path.stem} (profile={profile})", flush=True)
    try:
        _execute(path, output_dir, parameters, profile)
        publish_notebook(output_dir / EXECUTED / path.name, output_dir, REPO_ROOT)
        status = "ok"
    except KeyboardInterrupt:
        update_manifest(output_dir, "notebooks", path.stem, {**entry, "status": "interrupted"})
        raise
    except Exception as error:  # papermill raises PapermillExecutionError with the cell traceback
        status = f"failed: {type(error).__name__}: {error}"
        traceback.print_exc()
    seconds = round(time.perf_counter() - started, 1)
    update_manifest(output_dir, "notebooks", path.stem, {**entry, "seconds": seconds, "status": status.split("\n")[0][:500]})
    print(f"[fame_utils.workbook.run] {path.stem}: {status.splitlines()[0][:200]} ({seconds} s)", flush=True)
    return status


def check(output_dir: Path) -> str:
    """Say which commit ``output_dir`` was made from and whether code or notebooks changed since."""
    manifest = json.loads((Path(output_dir) / MANIFEST).read_text())
    made = (manifest.get("run") or {}).get("git_sha") or manifest.get("git_sha") or "unknown"
    latest = subprocess.run(["git", "log", "-1", "--format=%H", "--", *RESULT_SOURCES], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout.strip()
    statuses = {name: entry.get("status") for name, entry in manifest.get("notebooks", {}).items()}
    unfinished = sorted(name for name, status in statuses.items() if status != "ok")
    older = sorted({entry.get("notebook", name) for section in ("figures", "tables") for name, entry in manifest.get(section, {}).items()
                    if str(entry.get("git_sha", made)).split("-")[0] != latest})
    if made.endswith("-dirty"):
        verdict = "NOT reproducible: made from uncommitted code"
    elif made.split("-")[0] == latest and older:
        verdict = "PARTLY STALE: the last run is current, but older code made the outputs of " + ", ".join(older)
    elif made.split("-")[0] == latest:
        verdict = "current"
    else:
        verdict = "STALE: code or notebooks changed since (git log " + made[:12] + ".." + latest[:12] + ")"
    lines = [f"{output_dir}: made from {made}", f"last commit touching code/notebooks: {latest}", f"verdict: {verdict}"]
    if unfinished:
        lines.append(f"notebooks not ok: {', '.join(f'{n} ({statuses[n]})' for n in unfinished)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m fame_utils.workbook.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="default")
    parser.add_argument("--notebooks", nargs="+", help="name prefixes of the notebooks to run (default: all)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "figures", help="where figures, tables and manifest.json go")
    parser.add_argument("--seed", type=int, default=None, help="override every notebook's seed")
    parser.add_argument("--check", type=Path, metavar="DIR", help="only say whether DIR (e.g. figures) is current")
    args = parser.parse_args(argv)
    if args.check:
        print(check(args.check))
        return 0
    try:
        statuses = run_notebooks(args.profile, args.output, args.notebooks, args.seed)
    except (OutputDirError, OutputLockedError) as error:
        print(f"[fame_utils.workbook.run] {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("[fame_utils.workbook.run] interrupted; the current notebook is marked 'interrupted'", file=sys.stderr)
        return 130
    failed = [name for name, status in statuses.items() if status != "ok"]
    if failed:
        print(f"[fame_utils.workbook.run] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    if not statuses:
        print("[fame_utils.workbook.run] no notebooks found", file=sys.stderr)
        return 1
    print(f"[fame_utils.workbook.run] all {len(statuses)} notebooks ran with profile={args.profile}; output in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
