"""The package's shape: no import cycle, imports only go down the layers, the method core stays free of pandas and
matplotlib, every module says what it is for, and every document reference resolves inside the repository."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO_ROOT, package_modules

PACKAGE = REPO_ROOT / "fame_utils"

#: Layer of each top-level part of the package, lowest first: a module may import only from its own layer or lower ones.
LAYERS = {
    "fame_utils": 0, "fame_utils._checks": 0, "fame_utils.runtime": 0, "fame_utils.layers": 0, "fame_utils.cache": 0,
    "fame_utils.models": 1, "fame_utils.data": 1,
    "fame_utils.fame": 2,
    "fame_utils.metrics": 3,
    "fame_utils.locality": 4,
    "fame_utils.baselines": 5,
    "fame_utils.evaluation": 6,
    "fame_utils.viz": 7,
    "fame_utils.workbook": 8, "fame_utils.protocols": 8,
}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every fame_utils module ``name`` imports (anywhere in the file), with the packages that importing it runs."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            for end in range(1, len(parts) + 1):
                candidate = ".".join(parts[:end])
                if candidate in known and not name.startswith(candidate + ".") and candidate != name:
                    found.add(candidate)
    return found


def _graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _layer(module: str) -> int:
    matches = [prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} belongs to no layer; add its package to LAYERS (and to README's layer diagram)"
    return LAYERS[max(matches, key=len)]


def test_the_import_walk_sees_relative_and_nested_imports() -> None:
    graph = _graph()
    assert "fame_utils.runtime" in graph["fame_utils.models"]  # `from ..runtime import resolve_device`
    assert "fame_utils.fame.explain" in graph["fame_utils.locality.cells"]
    assert "fame_utils.fame" in graph["fame_utils.locality.cells"]  # importing a submodule runs its package first


def test_no_import_cycle_anywhere_in_the_package() -> None:
    graph = _graph()
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target] if target in path else [module, target]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_imports_only_go_down_the_layers() -> None:
    upward = [f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})"
              for module, targets in _graph().items() for target in targets if _layer(target) > _layer(module)]
    assert not upward, "\n".join(upward)


def test_nothing_outside_the_workbook_imports_it() -> None:
    offenders = [f"{module} imports {target}" for module, targets in _graph().items() if not module.startswith("fame_utils.workbook")
                 for target in targets if target.startswith("fame_utils.workbook")]
    assert not offenders, "\n".join(offenders)


def test_the_method_core_loads_without_pandas_or_matplotlib() -> None:
    code = "import sys, fame_utils.fame; print(sorted({m.split('.')[0] for m in sys.modules} & {'pandas', 'matplotlib', 'seaborn'}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]", f"importing fame_utils.fame loads {loaded}"
    direct = [f"{path.name}: {node.names[0].name if isinstance(node, ast.Import) else node.module}"
              for path in (PACKAGE / "fame").glob("*.py") for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, (ast.Import, ast.ImportFrom))
              and re.match(r"(pandas|matplotlib|seaborn)\b", node.names[0].name if isinstance(node, ast.Import) else node.module or "")]
    assert not direct


@pytest.mark.parametrize("name", sorted(package_modules()))
def test_every_module_says_what_it_is_for(name: str) -> None:
    docstring = ast.get_docstring(ast.parse(package_modules()[name].read_text()))
    assert docstring and len(docstring.split()) >= 6, f"{name} needs a module docstring saying what it is for"


def _texts() -> dict[Path, str]:
    files = [*PACKAGE.rglob("*.py"), *(REPO_ROOT / "notebooks").glob("*.ipynb"), *(REPO_ROOT / "tests").glob("*.py"),
             *(REPO_ROOT / "docs").glob("*.md"), REPO_ROOT / "README.md", REPO_ROOT / "Makefile"]
    return {path: path.read_text() for path in files if path.resolve() != Path(__file__).resolve()}


def _line(text: str, offset: int) -> int:
    return text[:offset].count(chr(10)) + 1


def test_no_reference_points_outside_the_repository() -> None:
    # A reader has only the repository: every Markdown file the package, notebooks and docs name must be one of ours
    # (tests may name files they write), and numbered sections or decisions of documents we do not ship cannot be
    # looked up.
    ours = {path.name for path in REPO_ROOT.rglob("*.md") if ".venv" not in path.parts and "build" not in path.parts}
    numbered = re.compile(r"(?i)§|\bdecision\s+#?\d")
    found = []
    for path, text in _texts().items():
        where = path.relative_to(REPO_ROOT)
        found += [f"{where}:{_line(text, m.start())}: {m.group()} (not in the repository)"
                  for m in re.finditer(r"[\w.-]+\.md\b", text) if where.parts[0] != "tests" and m.group() not in ours]
        found += [f"{where}:{_line(text, m.start())}: {m.group()}" for m in numbered.finditer(text)]
    assert not found, "\n".join(found)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def test_every_docs_reference_names_an_existing_page_and_section() -> None:
    references = {(page, anchor) for text in _texts().values() for page, anchor in re.findall(r"docs/([\w-]+\.md)(?:#([\w-]+))?", text)}
    assert references, "no docs/ reference found at all"
    missing = []
    for page, anchor in sorted(references):
        path = REPO_ROOT / "docs" / page
        if not path.exists():
            missing.append(f"docs/{page} does not exist")
        elif anchor and anchor not in {_anchor(line.lstrip("#")) for line in path.read_text().splitlines() if line.startswith("#")}:
            missing.append(f"docs/{page}#{anchor}: no such section")
    assert not missing, "\n".join(missing)
