"""Publish executed notebooks where GitHub renders them, and render the workbook to offline HTML.

:func:`publish_notebook` turns a runner's executed copy into ``DIR/notebooks/NN_name.ipynb``: no machine paths,
no papermill timings, no progress bars, execution counts in order, large images scaled down.
:func:`render_html` converts the published copies with nbconvert and writes an ``index.html`` in reading order.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import nbformat
from PIL import Image

from fame_utils.workbook.session import atomic_write

__all__ = ["PUBLISHED", "MAX_IMAGE_WIDTH", "publish_notebook", "notebook_summary", "render_html"]

PUBLISHED = "notebooks"
MAX_IMAGE_WIDTH = 1000
"""Pixels; wider inline images are scaled down so the published notebooks stay small."""
MAX_PNG_CHARS = 300_000
"""Base64 characters; a larger inline PNG (a photo sheet) is published as a JPEG (quality 85)."""
_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _shrink_image(data: dict) -> None:
    """Scale an inline PNG to at most :data:`MAX_IMAGE_WIDTH` px; a large one (photos) becomes a JPEG."""
    image = Image.open(io.BytesIO(base64.b64decode(data["image/png"])))
    if image.width <= MAX_IMAGE_WIDTH and len(data["image/png"]) <= MAX_PNG_CHARS:
        return
    if image.width > MAX_IMAGE_WIDTH:
        image = image.resize((MAX_IMAGE_WIDTH, round(image.height * MAX_IMAGE_WIDTH / image.width)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    if buffer.tell() * 4 / 3 > MAX_PNG_CHARS:
        background = Image.new("RGB", image.size, "white")
        background.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
        buffer = io.BytesIO()
        background.save(buffer, format="JPEG", quality=85, optimize=True)
        del data["image/png"]
        data["image/jpeg"] = base64.b64encode(buffer.getvalue()).decode("ascii")
        return
    data["image/png"] = base64.b64encode(buffer.getvalue()).decode("ascii")


def _clean_outputs(outputs: list, replace: dict[str, str]) -> list:
    kept = []
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            continue
        data = output.get("data", {})
        if _WIDGET_VIEW in data and "image/png" not in data:
            continue
        data.pop(_WIDGET_VIEW, None)
        if "image/png" in data:
            _shrink_image(data)
        kept.append(output)
    for output in kept:
        if "text" in output:
            output["text"] = _replace_all(output["text"], replace)
        for mime, value in output.get("data", {}).items():
            if mime.startswith("text/"):
                output["data"][mime] = _replace_all(value, replace)
    return kept


def _replace_all(text: str, replace: dict[str, str]) -> str:
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def publish_notebook(executed: Path, output_dir: Path, repo_root: Path) -> Path:
    """Write a sanitised copy of the executed notebook ``executed`` to ``output_dir/notebooks/``.

    Machine paths become relative (the output folder by its name, the repository as ``.``), papermill's timing
    metadata and stderr streams (progress bars, warnings) are dropped, execution counts run 1, 2, … in cell order.
    """
    nb = nbformat.read(executed, as_version=4)
    replace = {str(Path(output_dir).resolve()): Path(output_dir).name, str(Path(repo_root).resolve()): "."}
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    count = 0
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        cell.source = _replace_all(cell.source, replace)
        if cell.cell_type == "code":
            count += 1
            cell.execution_count = count
            cell.outputs = _clean_outputs(cell.outputs, replace)
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = count
    target = Path(output_dir) / PUBLISHED / executed.name
    target.parent.mkdir(exist_ok=True)
    with atomic_write(target) as file:
        file.write(nbformat.writes(nb))
    return target


def notebook_summary(path: Path, readme: Path | None = None) -> tuple[str, str]:
    """Title (the notebook's first heading) and one-line question: the first question of the notebook's row in the
    README's "Notebooks" table when there is one, else the first question of its opening cell."""
    first = nbformat.read(path, as_version=4).cells[0].source
    lines = first.strip().splitlines()
    title = lines[0].lstrip("# ").strip()
    rows = readme.read_text().splitlines() if readme and readme.exists() else []
    asked = [row.split("|")[2] for row in rows if row.startswith(f"| `{path.stem}`") and row.count("|") > 3]
    opening = " ".join(line.strip(" >") for line in lines[1:]).replace("*", "")
    candidates = [*re.findall(r"[A-Z][^.?!]*\?", " ".join(asked)), *re.findall(r"[A-Z][^.?!:]*\?", opening),
                  *(a.strip() for a in asked), title]
    return title, candidates[0].strip()


def render_html(published_dir: Path, html_dir: Path, readme: Path | None = None) -> Path:
    """Convert every published notebook to HTML in ``html_dir`` and write ``index.html`` in reading order."""
    from nbconvert import HTMLExporter

    html_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(mathjax_url="", require_js_url="", widget_renderer_url="")  # offline: no CDN scripts
    items = []
    for path in sorted(published_dir.glob("[0-9][0-9]_*.ipynb")):
        body, _ = exporter.from_filename(str(path))
        with atomic_write(html_dir / f"{path.stem}.html") as file:
            file.write(body)
        title, question = notebook_summary(path, readme)
        items.append(f'<li><a href="{path.stem}.html">{html.escape(title)}</a><br>{html.escape(question)}</li>')
    if not items:
        raise FileNotFoundError(f"no published notebooks in {published_dir}; run `make figures` first.")
    index = ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>fame-workbook</title></head><body>\n"
             "<h1>fame-workbook</h1>\n<ol>\n" + "\n".join(items) + "\n</ol>\n</body></html>\n")
    with atomic_write(html_dir / "index.html") as file:
        file.write(index)
    return html_dir / "index.html"


def main(argv: list[str] | None = None) -> int:
    """``python -m fame_utils.workbook.publish [PUBLISHED_DIR] [HTML_DIR]``: render the workbook to HTML."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    repo_root = Path(__file__).resolve().parents[2]
    published = Path(args[0]) if args else repo_root / "figures" / PUBLISHED
    target = Path(args[1]) if len(args) > 1 else repo_root / "build" / "html"
    print(f"wrote {render_html(published, target, repo_root / 'README.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
