"""The committed figures/ say how they were made: one run, one profile and seed, an "ok" entry per file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fame_utils.workbook.run import REPO_ROOT

FIGURES = REPO_ROOT / "figures"
PUBLISHED = "notebooks"
SIZE_LIMIT = 25 * 2**20


def _committed(folder: Path) -> list[str]:
    listing = subprocess.run(["git", "ls-files", "--", folder.name], cwd=folder.parent, capture_output=True, text=True, check=True)
    return [line.removeprefix(f"{folder.name}/") for line in listing.stdout.splitlines()]


def provenance_problems(manifest: dict, committed: list[str]) -> list[str]:
    """What is wrong between a manifest and the figure/table files committed next to it (empty: nothing)."""
    entries = {file: (name, entry) for section in ("figures", "tables") for name, entry in manifest.get(section, {}).items()
               for file in entry.get("files", [])}
    run = manifest.get("run") or {}
    profiles = {run["profile"]} if run.get("profile") else {e.get("profile") for e in manifest.get("notebooks", {}).values()}
    seeds = {run["seed"]} if run.get("seed") is not None else {entry.get("seed") for _, entry in entries.values()}
    problems = [f"the run mixes profiles {sorted(map(str, profiles))} / seeds {sorted(map(str, seeds))}"
                for _ in [0] if len(profiles) > 1 or len(seeds) > 1]
    for file in sorted(f for f in committed if "/" not in f and f.rsplit(".", 1)[-1] in {"pdf", "png", "csv", "md"}):
        if file not in entries:
            problems.append(f"{file}: committed but not in the manifest's listing (a leftover of an older run?)")
            continue
        name, entry = entries[file]
        if entry.get("profile") not in profiles or entry.get("seed") not in seeds:
            problems.append(f"{file}: entry {name!r} names profile={entry.get('profile')} seed={entry.get('seed')}, "
                            f"the run has profile={'/'.join(map(str, profiles))} seed={'/'.join(map(str, seeds))}")
        if entry.get("status", "ok") != "ok":
            problems.append(f"{file}: entry {name!r} has status {entry.get('status')!r}")
    problems += [f"{file}: listed in the manifest but not committed" for file in entries if file not in committed]
    return problems


def test_every_committed_figure_and_table_has_an_entry_of_the_run() -> None:
    manifest = json.loads((FIGURES / "manifest.json").read_text())
    assert provenance_problems(manifest, _committed(FIGURES)) == []


def test_published_notebooks_stay_under_25_mb() -> None:
    published = [name for name in _committed(FIGURES) if name.startswith(f"{PUBLISHED}/")]
    total = sum((FIGURES / name).stat().st_size for name in published if (FIGURES / name).exists())
    assert total < SIZE_LIMIT, f"figures/{PUBLISHED}/ holds {total / 2**20:.1f} MB; lower the image dpi of the published copies"


ENTRY = {"profile": "default", "seed": 0, "files": ["fig_a.pdf", "fig_a.png"], "status": "ok"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["figures"]["fig_a"].update(seed=1), "names profile=default seed=1"),
        (lambda m: m["figures"]["fig_a"].update(profile="smoke"), "names profile=smoke"),
        (lambda m: m["figures"].pop("fig_a"), "fig_a.pdf: committed but not in the manifest's listing"),
        (lambda m: m["figures"]["fig_a"].update(status="writing"), "status 'writing'"),
        (lambda m: m["figures"]["fig_a"].update(files=["fig_a.pdf", "fig_a.png", "fig_a.svg"]), "fig_a.svg: listed in the manifest but not committed"),
    ],
)
def test_provenance_check_catches_each_mismatch(change, message: str) -> None:
    manifest = {"run": {"profile": "default", "seed": 0}, "figures": {"fig_a": dict(ENTRY)}}
    committed = ["fig_a.pdf", "fig_a.png", "manifest.json"]
    assert provenance_problems(manifest, committed) == []
    change(manifest)
    assert any(message in problem for problem in provenance_problems(manifest, committed))
