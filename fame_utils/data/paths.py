"""Where the shipped data live: ``data/`` next to the package, and files inside installed packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["DATA_DIR", "REPO_ROOT", "installed_file"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"


def installed_file(module: str, relative_path: str) -> Path:
    """Path of ``relative_path`` inside the installed package ``module`` (without importing it).

    Raises:
        FileNotFoundError: the package is not installed or does not ship the file.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {module!r} is not installed; run `make setup`.")
    path = Path(next(iter(spec.submodule_search_locations))) / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed package {module!r}; reinstall it.")
    return path
