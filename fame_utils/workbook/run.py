"""Execute the workbook's notebooks with papermill (it knows nothing of what they compute).

Usage::

    python -m fame_utils.workbook.run --profile smoke|default|paper [--notebooks 02 04] [--output DIR] [--seed N]

Each notebook is executed in order with ``profile``, ``output_dir`` (and ``seed`` when given) injected
as papermill parameters. Executed copies and their recorded numbers go to ``DIR/executed/``; figures,
tables and ``manifest.json`` go to ``DIR``. The exit status is non-zero if any notebook fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

from fame_utils.workbook.session import EXECUTED, PROFILES, update_manifest
from fame_utils.workbook.widgets import STATIC_WIDGETS_ENV

__all__ = ["NOTEBOOK_DIR", "notebook_paths", "run_notebooks", "main"]

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


def run_notebooks(
    profile: str,
    output_dir: Path,
    selection: list[str] | None = None,
    seed: int | None = None,
    notebook_dir: Path = NOTEBOOK_DIR,
) -> dict[str, str]:
    """Execute the selected notebooks; return ``{notebook: "ok" | "failed: <error>"}``."""
    import papermill

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
    output_dir = Path(output_dir).resolve()
    (output_dir / EXECUTED).mkdir(parents=True, exist_ok=True)
    _prepare_environment()
    statuses: dict[str, str] = {}
    for path in notebook_paths(selection, notebook_dir):
        parameters: dict[str, object] = {"profile": profile, "output_dir": str(output_dir)}
        if seed is not None:
            parameters["seed"] = seed
        started = time.perf_counter()
        print(f"[fame_utils.workbook.run] {path.stem} (profile={profile})", flush=True)
        try:
            papermill.execute_notebook(
                str(path),
                str(output_dir / EXECUTED / path.name),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(path.parent),
                progress_bar=False,
                log_output=False,
                execution_timeout=CELL_TIMEOUT[profile],
            )
            status = "ok"
        except Exception as error:  # papermill raises PapermillExecutionError with the cell traceback
            status = f"failed: {type(error).__name__}: {error}"
            traceback.print_exc()
        seconds = round(time.perf_counter() - started, 1)
        statuses[path.stem] = status
        update_manifest(output_dir, "notebooks", path.stem, {"profile": profile, "parameters": parameters | {"output_dir": output_dir.name}, "seconds": seconds, "status": status.split("\n")[0][:500]})
        print(f"[fame_utils.workbook.run] {path.stem}: {status.splitlines()[0][:200]} ({seconds} s)", flush=True)
    return statuses


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m fame_utils.workbook.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=PROFILES, default="default")
    parser.add_argument("--notebooks", nargs="*", help="name prefixes of the notebooks to run (default: all)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "figures", help="where figures, tables and manifest.json go")
    parser.add_argument("--seed", type=int, default=None, help="override every notebook's seed")
    args = parser.parse_args(argv)
    statuses = run_notebooks(args.profile, args.output, args.notebooks, args.seed)
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
