"""The notebooks' widgets draw and redraw in JupyterLab, driven in headless Chromium.

For every notebook whose code uses ``ipywidgets``, a JupyterLab server (on a temporary copy of the
notebooks, smoke profile, live widgets) opens it in Debian's Chromium through Playwright, runs all cells
from the Run menu, checks that every widget's output holds a picture, moves one control of each widget
and checks that the picture changes. Screenshots go to ``build/browser/``.

Needs ``/usr/bin/chromium`` (``apt-get install chromium chromium-driver``); ``make browser`` runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
SCREENSHOT_DIR = REPO_ROOT / "build" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
STATIC_WIDGETS_ENV = "FAME_STATIC_WIDGETS"
SERVER_START_SECONDS = 120
RUN_ALL_SECONDS = 1800
DRAW_SECONDS = 180
WIDGET_VIEW = ".jp-OutputArea-output > .jupyter-widgets:not(.jupyter-widgets *)"
"""The top-level widget views in cell outputs (not the widgets nested in them)."""
PICTURE = "img, canvas"
LAB_SETTINGS = {
    # every cell stays in the DOM, so off-screen widget outputs can be inspected
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    # no news or update checks: the test machine has no internet
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def widget_notebooks() -> list[Path]:
    """The workbook notebooks whose code cells use ipywidgets."""
    def uses_widgets(path: Path) -> bool:
        cells = json.loads(path.read_text())["cells"]
        return any("ipywidgets" in "".join(cell["source"]) or "_explorer(" in "".join(cell["source"])
                   for cell in cells if cell["cell_type"] == "code")

    return [path for path in sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")) if uses_widgets(path)]


def smoke_copy(source: Path, target: Path, output_dir: Path) -> None:
    """Copy a notebook, setting ``profile = "smoke"`` and a scratch ``output_dir`` at the end of its parameters cell."""
    notebook = json.loads(source.read_text())
    parameters = [cell for cell in notebook["cells"] if "parameters" in cell.get("metadata", {}).get("tags", [])]
    if len(parameters) != 1:
        raise AssertionError(f"{source.name}: expected one cell tagged 'parameters', found {len(parameters)}")
    lines = "".join(parameters[0]["source"]).rstrip("\n")
    parameters[0]["source"] = f'{lines}\nprofile = "smoke"\noutput_dir = {str(output_dir)!r}\n'
    target.write_text(json.dumps(notebook, indent=1))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_server(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"JupyterLab exited with status {process.returncode}; log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"JupyterLab did not answer {url} within {SERVER_START_SECONDS} s; log:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop the server's process group (server and its kernels): SIGTERM, then SIGKILL after 30 s."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A JupyterLab server on smoke copies of the notebooks; yields its base URL with the token as query."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
    root = tmp_path_factory.mktemp("lab")
    (root / "notebooks").mkdir()
    for path in widget_notebooks():
        smoke_copy(path, root / "notebooks" / path.name, root / "outputs")
    settings = root / "user-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    environment = {key: value for key, value in os.environ.items() if key != STATIC_WIDGETS_ENV}
    environment |= {"JUPYTER_CONFIG_DIR": str(root / "config"), "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
                    "IPYTHONDIR": str(root / "ipython"), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                    "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    port, token = free_port(), secrets.token_hex(16)
    command = [str(Path(sys.executable).parent / "jupyter"), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
               "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.extension_manager=readonly", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={root / 'workspaces'}", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    log = root / "jupyterlab.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(command, cwd=root, env=environment, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", process, log)
        yield f"http://127.0.0.1:{port}", token
    finally:
        stop(process)


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory: pytest.TempPathFactory, lab) -> Iterator:
    """Debian's Chromium through Playwright, with a fresh profile and no background network traffic."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
            headless=True, viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


def shut_down_kernels(url: str, token: str) -> None:
    """Shut down every kernel of the server, so the next notebook has the CPU to itself."""
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(urllib.request.Request(f"{url}/api/kernels", headers=headers), timeout=30) as response:
        kernels = json.load(response)
    for kernel in kernels:
        urllib.request.urlopen(urllib.request.Request(f"{url}/api/kernels/{kernel['id']}", headers=headers, method="DELETE"), timeout=60).close()


def prompts(page) -> list[str]:
    return page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()


def run_all_cells(page, notebook: str) -> None:
    """Run → Run All Cells, then wait until every code cell has an execution count (fail on an error)."""
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator('.lm-Menu-item:has(.lm-Menu-itemLabel:text-is("Run All Cells"))').click()
    started = time.monotonic() + SERVER_START_SECONDS
    while not any("*" in text or any(ch.isdigit() for ch in text) for text in prompts(page)):
        if time.monotonic() > started:
            raise AssertionError(f"{notebook}: no cell started within {SERVER_START_SECONDS} s of Run All Cells")
        time.sleep(0.5)
    deadline = time.monotonic() + RUN_ALL_SECONDS
    settled = 0
    while time.monotonic() < deadline:
        texts = [text.strip() for text in prompts(page)]
        busy = any("*" in text for text in texts)
        settled = 0 if busy else settled + 1
        if settled >= 3:  # three quiet polls in a row: the queue is done
            break
        time.sleep(2)
    else:
        raise AssertionError(f"{notebook}: Run All Cells did not finish within {RUN_ALL_SECONDS} s")
    unexecuted = [index for index, text in enumerate(texts) if not any(ch.isdigit() for ch in text)]
    if unexecuted:
        errors = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]').all_inner_texts()
        raise AssertionError(f"{notebook}: code cells {unexecuted} did not run (an earlier cell failed?). "
                             f"Error output:\n{errors[-1][-3000:] if errors else '(none)'}")


def picture_digest(widget) -> str | None:
    """SHA-256 of the widget's pictures (img sources, canvas pixels), or None when it holds none."""
    contents = widget.locator(PICTURE).evaluate_all("nodes => nodes.map(n => n.tagName === 'CANVAS' ? n.toDataURL() : n.src)")
    if not contents:
        return None
    return hashlib.sha256("\n".join(contents).encode()).hexdigest()


def wait_for_picture(widget, previous: str | None, seconds: float) -> str | None:
    """Poll until the widget holds a picture different from ``previous``; return its digest (None on timeout)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        digest = picture_digest(widget)
        if digest is not None and digest != previous:
            return digest
        time.sleep(1)
    return None


def move_a_control(widget) -> str:
    """Press ArrowRight on the widget's last slider, or else choose the next option of its first dropdown that has several."""
    handles = widget.locator(".noUi-handle")
    if handles.count():
        handle = handles.last
        handle.focus()
        handle.press("ArrowRight")
        return "slider → ArrowRight"
    for dropdown in widget.locator("select").all():
        options = dropdown.locator("option").all_inner_texts()
        if len(options) > 1:
            choice = (dropdown.evaluate("node => node.selectedIndex") + 1) % len(options)
            dropdown.select_option(index=choice)
            return f"dropdown → {options[choice]}"
    raise AssertionError("widget has neither a slider nor a dropdown with two options to move")


@pytest.mark.parametrize("notebook", [path.name for path in widget_notebooks()])
def test_widgets_draw_and_redraw_in_jupyterlab(notebook: str, lab, browser_context) -> None:
    url, token = lab
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    stem = Path(notebook).stem
    page = browser_context.new_page()
    try:
        page.goto(f"{url}/lab/workspaces/{stem}/tree/notebooks/{notebook}?reset&token={token}")
        page.locator(".jp-Notebook .jp-CodeCell").first.wait_for(timeout=120_000)
        kernel_idle = re.compile(r"^(?!No Kernel).* \| Idle$")
        page.locator(".jp-StatusBar-TextItem", has_text=kernel_idle).wait_for(timeout=SERVER_START_SECONDS * 1000)
        run_all_cells(page, notebook)
        widgets = page.locator(WIDGET_VIEW)
        assert widgets.count() >= 1, f"{notebook}: no widget was displayed after Run All Cells"
        for index in range(widgets.count()):
            widget = widgets.nth(index)
            widget.scroll_into_view_if_needed()
            before = wait_for_picture(widget, None, DRAW_SECONDS)
            page.screenshot(path=str(SCREENSHOT_DIR / f"{stem}_widget{index}_before.png"))
            assert before is not None, f"{notebook}: widget {index} shows no picture (<img> or <canvas>) after Run All Cells"
            moved = move_a_control(widget)
            after = wait_for_picture(widget, before, DRAW_SECONDS)
            page.screenshot(path=str(SCREENSHOT_DIR / f"{stem}_widget{index}_after.png"))
            assert after is not None, f"{notebook}: widget {index} did not redraw within {DRAW_SECONDS} s after {moved}"
    finally:
        page.close()
        shut_down_kernels(url, token)


def test_the_notebooks_with_widgets_are_found() -> None:
    assert {"01", "02", "05"} <= {path.stem[:2] for path in widget_notebooks()}
