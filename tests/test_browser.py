"""The course as students meet it: JupyterLab in a real browser (Debian's Chromium, driven by Playwright for Python).

- every lesson and the start page, in both languages, opens in JupyterLab with the course's kernel; its title and
  every section heading render, Bengali ones in a Bengali-capable font with the conjuncts shaped; no cell shows an
  error; the browser console stays free of errors;
- lesson 02's search widget works in the real front end: run the cells above it from the Run menu, run it, type a
  Bengali and an English query, and result pictures appear with captions in the query's language.

Screenshots land in runs/browser/ (ignored by git) for a person to look at. The server is JupyterLab as `make lab`
starts it, on 127.0.0.1 with a throwaway token, a free port, and its settings, workspace and runtime files in a
temporary folder (nothing of the user's own JupyterLab set-up is read or changed).

Needs `playwright` (the test extra) and a Chromium (Debian: `apt-get install chromium`; `.ci/run` installs it).
Playwright's own browser download is not used: the test launches the system's Chromium, or the one named by
$MMCORE_CHROMIUM.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "runs" / "browser"
CHROMIUM = os.environ.get("MMCORE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright import sync_api
except ImportError:
    sync_api = None
MISSING = ("Playwright for Python is not installed: `pip install playwright` (in the test extra)" if sync_api is None
           else "no Chromium to drive: install it (Debian/Ubuntu: `apt-get install chromium`; .ci/run does) or point "
                "$MMCORE_CHROMIUM at one" if CHROMIUM is None else None)
# .ci/run sets MMCORE_REQUIRE_BROWSER=1: there a missing browser fails the test instead of skipping it.
REQUIRED = os.environ.get("MMCORE_REQUIRE_BROWSER") == "1"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(MISSING is not None and not REQUIRED, reason=str(MISSING))]

BENGALI = re.compile(r"[\u0980-\u09FF]")
LANGS = ["en", "bn"]
# JupyterLab settings for a test run: render every cell at once (JupyterLab 4 otherwise renders only the cells in
# view), and no news or update checks (they would reach the internet).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
# A stand-in for what the page loads from the internet (the Colab and Kaggle badges): the test machine is offline.
BLANK_SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>'
# The one console error let through: JupyterLab's debugger asks a new kernel for its state, and a tab closed before the
# answer (the test closes each lesson within a second or two; a student does not) cancels the request.
TEST_SPEED_RACE = "Could not restore the debugger state: Canceled future for debug_request message"
BADGE_HOSTS = {"colab.research.google.com", "kaggle.com", "www.kaggle.com"}


class Lab:
    """A JupyterLab server on 127.0.0.1 (what `make lab` runs, without opening a browser)."""

    def __init__(self, tmp: Path):
        self.port, self.token = free_port(), "mmcore-browser-test-token"
        self.base = f"http://127.0.0.1:{self.port}"
        settings = tmp / "settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values), encoding="utf-8")
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), JUPYTER_CONFIG_DIR=str(tmp / "config"),
                   MMCORE_QUICK="1", OMP_NUM_THREADS="1")
        self.log = (tmp / "lab.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={ROOT}",
             f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
             # the checkpoint JupyterLab saves of every notebook it opens: not into the repository's folders
             f"--FileCheckpoints.checkpoint_dir={tmp / 'checkpoints'}",
             # window.jupyterapp: the app's commands, as JupyterLab's own UI tests (Galata) use them
             "--LabApp.expose_app_in_browser=True"]
            + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.log_path = tmp / "lab.log"
        deadline = time.monotonic() + 90
        while True:
            try:
                self.api("status")
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"JupyterLab did not answer on {self.base}:\n{self.log_path.read_text()[-3000:]}")
                time.sleep(0.5)

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.base}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self) -> None:
        for session in self.api("sessions"):
            self.api(f"sessions/{session['id']}", method="DELETE")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def _checkpoint_folders() -> set[Path]:
    return {path for kind in ("lessons", "solutions") for path in (ROOT / kind).rglob(".ipynb_checkpoints")}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    before = _checkpoint_folders()
    server = Lab(tmp_path_factory.mktemp("lab"))
    yield server
    server.stop()
    assert _checkpoint_folders() == before, "JupyterLab wrote checkpoints into the repository"


@pytest.fixture(scope="module")
def browser():
    if MISSING:
        pytest.fail(f"{MISSING} (MMCORE_REQUIRE_BROWSER=1: the browser test must run here)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


class Page:
    """A browser tab on the lab, which records the console's errors and what it tried to fetch from elsewhere."""

    def __init__(self, browser, lab: Lab):
        self.lab = lab
        self.page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="bn-BD")
        self.page.set_default_timeout(30_000)
        self.errors: list[str] = []
        self.external: set[str] = set()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.route(lambda url: not url.startswith(lab.base), self._offline)
        self.cdp = self.page.context.new_cdp_session(self.page)

    def _console(self, message) -> None:
        if message.type == "error" and not message.text.startswith(TEST_SPEED_RACE):
            self.errors.append(f"console: {message.text} {message.location}")

    def _offline(self, route) -> None:
        self.external.add(route.request.url)
        route.fulfill(status=200, content_type="image/svg+xml", body=BLANK_SVG)

    def open_lab(self, path: str) -> None:
        """The lab with ``path`` open, as `make lab` opens its start page."""
        self.page.goto(f"{self.lab.base}/lab/tree/{path}?token={self.lab.token}&reset")  # reset: a fresh workspace
        self.page.wait_for_function("() => window.jupyterapp !== undefined", timeout=60_000)
        self.page.evaluate("() => window.jupyterapp.started")
        self.notebook().locator(".jp-MarkdownOutput h1").first.wait_for(timeout=60_000)

    def open(self, path: str) -> None:
        """Open a notebook as the file browser does (its `docmanager:open` command) and wait for its title."""
        self.page.evaluate("path => window.jupyterapp.commands.execute('docmanager:open', {path})", path)
        self.notebook().locator(".jp-MarkdownOutput h1").first.wait_for()

    def close_notebook(self) -> None:
        """Close the notebook on show as a student would, not saving if JupyterLab asks (it asks only when the
        notebook changed: check_notebook has made sure opening it did not)."""
        panels = self.page.locator(".jp-NotebookPanel")
        before = panels.count()
        self.page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon").click()
        discard = self.page.locator(".jp-Dialog").get_by_role("button", name=re.compile("Discard|Don't Save"))
        deadline = time.monotonic() + 30
        while panels.count() == before:
            if discard.count():
                discard.click()
            assert time.monotonic() < deadline, "the notebook did not close"
            self.page.wait_for_timeout(100)

    def notebook(self):
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def fonts(self, selector: str) -> list[list[dict]]:
        """The fonts Chromium drew the text of each element matching ``selector`` with (family and glyph count per
        font; the element's own text, not its children's)."""
        self.cdp.send("DOM.enable")
        self.cdp.send("CSS.enable")
        root = self.cdp.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        nodes = self.cdp.send("DOM.querySelectorAll", {"nodeId": root, "selector": selector})["nodeIds"]
        return [self.cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"] for node in nodes]

    def screenshot(self, name: str, element=None) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        (element or self.page).screenshot(path=str(SHOTS / f"{name}.png"))

    def close(self) -> None:
        self.page.close()
        self.lab.shut_down_kernels()


@pytest.fixture
def tab(browser, lab):
    page = Page(browser, lab)
    yield page
    page.close()


def headings(path: Path) -> list[str]:
    """The markdown headings (levels 1 to 3) of a notebook file, in order."""
    found = []
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            text = re.sub(r"```.*?```", "", "".join(cell["source"]), flags=re.S)
            found += [title.strip() for title in re.findall(r"^#{1,3} (.+)$", text, re.M)]
    return found


def bengali_fonts() -> set[str] | None:
    """Families fontconfig says cover Bengali (None where there is no fontconfig, e.g. macOS)."""
    if shutil.which("fc-list") is None:
        return None
    listing = subprocess.run(["fc-list", ":lang=bn", "family"], capture_output=True, text=True, check=True).stdout
    return {family.strip() for line in listing.splitlines() for family in line.split(",")}


def check_bengali_is_shaped(tab: Page, selector: str, texts: list[str]) -> None:
    """Every element's Bengali is drawn in a font that covers Bengali, and shaped: conjuncts such as ক্স and
    য় are single glyphs, so a shaped text has fewer glyphs than code points (unshaped, it has as many)."""
    covering = bengali_fonts()
    drawn = tab.fonts(selector)
    assert len(drawn) == len(texts)
    glyphs = letters = 0
    for text, fonts in zip(texts, drawn):
        if not BENGALI.search(text):
            continue
        families = {font["familyName"] for font in fonts}
        bengali = [font for font in fonts if (font["familyName"] in covering if covering is not None
                                              else "bengali" in font["familyName"].lower())]
        assert bengali, f"{text!r} is drawn in {families}, none of which covers Bengali (install fonts-noto-core)"
        glyphs += sum(font["glyphCount"] for font in bengali)
        letters += len(BENGALI.findall(text))
    assert 0 < glyphs < letters, f"Bengali not shaped: {glyphs} glyphs for {letters} Bengali code points"


def check_notebook(tab: Page, path: str) -> None:
    file = ROOT / path
    notebook = tab.notebook()
    shown = [h.replace("¶", "").strip() for h in notebook.locator(
        ".jp-MarkdownOutput :is(h1, h2, h3)").all_inner_texts()]
    assert shown == headings(file), f"{path}: the rendered headings differ from the notebook's"
    if "/bn/" in path or path.endswith("-bn.ipynb"):
        check_bengali_is_shaped(tab, ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-MarkdownOutput :is(h1, h2, h3)",
                                shown)
    errors = notebook.locator("[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, f"{path} shows an error or warning: {errors.first.inner_text()[:500]}"
    assert notebook.get_by_text(re.compile("Error displaying widget|Javascript Error")).count() == 0, path
    # the kernel the notebook names is the one the course registers, and it starts (no kernel picker dialog)
    kernel = json.loads(file.read_text(encoding="utf-8"))["metadata"]["kernelspec"]["display_name"]
    sync_api.expect(notebook.locator(".jp-KernelName"), path).to_have_text(kernel, timeout=60_000)
    sync_api.expect(tab.page.locator("#jp-main-statusbar"), path).to_contain_text(f"{kernel} | Idle", timeout=60_000)
    assert tab.page.locator(".jp-Dialog").count() == 0, f"{path}: a dialog opened: {tab.page.locator('.jp-Dialog').inner_text()}"
    # untouched, it stays unmodified: JupyterLab writes the kernel's language_info and kernelspec into the notebook's
    # metadata once the kernel is up, and marks it modified (closing asks to save, autosave rewrites it) unless the
    # committed metadata already says exactly that
    shown = tab.page.evaluate("""async () => {
        const panel = window.jupyterapp.shell.currentWidget;
        const kernel = panel.context.sessionContext.session.kernel;
        await kernel.info;
        await kernel.spec;
        await new Promise(resolve => setTimeout(resolve, 500));
        return {dirty: panel.context.model.dirty, metadata: panel.context.model.toJSON().metadata};
    }""")
    committed = json.loads(file.read_text(encoding="utf-8"))["metadata"]
    kernel_python = shown["metadata"].get("language_info", {}).get("version")
    if kernel_python == committed["language_info"].get("version"):  # another Python version always differs: the
        # notebooks were built with one (lessons/build.py: kernel_language_info), and JupyterLab compares it exactly
        assert not shown["dirty"], f"{path}: opening it marks it modified: committed {committed}, kernel's {shown['metadata']}"
        sync_api.expect(tab.page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current"), path).not_to_have_class(
            re.compile(r"\bjp-mod-dirty\b"))


@pytest.mark.parametrize("lang", LANGS)
def test_every_lesson_renders_in_jupyterlab(tab, lang):
    start = f"lessons/start-{lang}.ipynb"
    tab.open_lab(start)
    check_notebook(tab, start)
    tab.screenshot(f"start-{lang}")
    for file in sorted((ROOT / "lessons" / lang).glob("*.ipynb")):
        path = file.relative_to(ROOT).as_posix()
        tab.open(path)
        check_notebook(tab, path)
        tab.screenshot(f"{lang}-{file.stem}")  # the lesson as a student first sees it (before closing it)
        tab.close_notebook()
    assert not tab.errors, "\n".join(tab.errors)
    assert {urllib.parse.urlsplit(url).hostname for url in tab.external} <= BADGE_HOSTS, tab.external


WIDGET = ".jp-CodeCell:has(.widget-text)"  # the one code cell with a text box: lesson 02's search widget
CARDS = f"{WIDGET} .widget-vbox:has(> .widget-image)"  # a result: its picture, then its caption and score


def search(tab: Page, query: str) -> list[str]:
    """Type ``query`` into the search box, press Enter, and return the captions of the results once they show."""
    widget = tab.page.locator(WIDGET)
    box = widget.locator(".widget-text input")
    box.fill(query)
    box.press("Enter")
    sync_api.expect(widget.locator(".widget-html").first).to_have_text(f"“{query}”: 8", timeout=60_000)
    cards = tab.page.locator(CARDS)
    sync_api.expect(cards).to_have_count(8)
    for picture in cards.locator("img.widget-image").all():  # each picture loaded, at the card's size
        assert picture.evaluate("img => img.complete && img.naturalWidth > 0 && img.width === 96"), query
    # a card's text: the caption, a line break, the cosine similarity
    texts = [card.split("\n") for card in tab.page.locator(f"{CARDS} > .widget-html").all_inner_texts()]
    assert all(len(text) == 2 and 0 < float(text[1]) <= 1 for text in texts), texts
    return [caption for caption, _ in texts]


def test_search_widget_in_lesson_02_answers_in_the_querys_language(tab):
    """The Bengali lesson 02 as a student uses it: the Run menu runs the cells above the search box, then the box's
    own cell; a Bengali query then an English one each bring up eight pictures captioned in the query's language."""
    path = "lessons/bn/02-image-search.ipynb"
    tab.open_lab(path)
    tab.screenshot("bn-02-lesson")
    notebook = tab.notebook()
    cell = notebook.locator(".jp-CodeCell").filter(has_text="widgets.search_box(index")
    cell.locator(".jp-InputPrompt").click()  # select the cell (command mode)
    for item in ["Run All Above Selected Cell", "Run Selected Cell"]:
        tab.page.locator(".lm-MenuBar-item", has_text=re.compile("^Run$")).click()
        tab.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()
    tab.page.locator(WIDGET).locator(".widget-text input").wait_for(timeout=300_000)
    errors = notebook.locator("[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.first.inner_text()[:1000]

    captions = search(tab, "লাল বৃত্ত")
    assert all(BENGALI.search(c) and not re.search("[A-Za-z]", c) for c in captions), captions
    assert "লাল" in captions[0] and "বৃত্ত" in captions[0], captions  # the best hit is a red circle
    check_bengali_is_shaped(tab, f"{CARDS} > .widget-html .widget-html-content > div", captions)
    tab.page.locator(WIDGET).scroll_into_view_if_needed()
    tab.screenshot("bn-02-search-bengali")
    tab.screenshot("bn-02-search-bengali-widget", tab.page.locator(WIDGET).locator(".jp-OutputArea"))

    captions = search(tab, "a red circle")
    assert not any(BENGALI.search(c) for c in captions), captions
    assert "red" in captions[0] and "circle" in captions[0], captions
    tab.screenshot("bn-02-search-english-widget", tab.page.locator(WIDGET).locator(".jp-OutputArea"))
    assert not tab.errors, "\n".join(tab.errors)
