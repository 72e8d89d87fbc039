"""Shared pytest helpers. The tiny test networks live in ``tiny_models`` (one module, imported by every test file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def private_map_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test starts with an empty map cache of its own, so no test is served a map stored by another or by a run."""
    monkeypatch.setenv("FAME_CACHE_DIR", str(tmp_path_factory.mktemp("map_cache")))


def smoke_results(stem: str) -> dict:
    """Recorded numbers of notebook ``stem`` from the smoke run in ``$FAME_SMOKE_DIR`` (skip if absent)."""
    smoke_dir = os.environ.get("FAME_SMOKE_DIR")
    if not smoke_dir:
        pytest.skip("FAME_SMOKE_DIR is not set: run `make notebooks` (smoke profile) to check notebook results")
    path = Path(smoke_dir) / "executed" / f"{stem}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: notebook {stem} did not record its numbers in the smoke run")
    return json.loads(path.read_text())


def package_modules() -> dict[str, Path]:
    """Every module of ``fame_utils`` by dotted name (a package by its ``__init__.py``)."""
    modules = {}
    for path in sorted((REPO_ROOT / "fame_utils").rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules
