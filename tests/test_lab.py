"""`make lab` opens JupyterLab: check that a server starts on 127.0.0.1, answers its API and lists the lessons;
that `make lab` itself serves the repository root and opens the start page; and that the notebooks name the kernel
the course registers."""
import json
import os
import re
import signal
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


def _get(url: str, token: str):
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


@pytest.mark.slow
def test_jupyter_lab_starts_and_lists_the_lessons(tmp_path):
    port, token = free_port(), "mmcore-test-token"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}"]
        + (["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status = _get(f"{base}/api/status", token)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"JupyterLab did not answer on {base}: {server.stderr.read()[-2000:]}")
                time.sleep(0.5)
        assert "started" in status
        listing = _get(f"{base}/api/contents/lessons/en", token)
        names = {item["name"] for item in listing["content"]}
        assert "00-getting-started.ipynb" in names
        lab_page = urllib.request.urlopen(urllib.request.Request(f"{base}/lab", headers={"Authorization": f"token {token}"}), timeout=10)
        assert lab_page.status == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_for(base: str, token: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            _get(f"{base}/api/status", token)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer on {base}: {process.stderr.read()[-2000:]}")
            time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("lang", ["bn"])
def test_make_lab_serves_the_repository_and_opens_the_start_page(tmp_path, lang):
    """What a student gets from `make lab COURSE_LANG=bn`: the repository root, the start page, and from there the
    solutions and the glossary (through the server's contents API; no browser)."""
    if not (ROOT / ".venv" / ".mmcore-installed").exists():
        pytest.skip("make lab needs the course's .venv (`make test` creates it)")
    port, token = free_port(), "mmcore-make-lab-token"
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    options = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    lab = subprocess.Popen(["make", "-s", "lab", f"COURSE_LANG={lang}", f"LAB_OPTS={options}"], cwd=ROOT, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(base, token, lab)
        root = {item["name"] for item in _get(f"{base}/api/contents/", token)["content"]}
        assert {"lessons", "solutions", "README.md", "README.bn.md"} <= root  # the repository root, not lessons/bn
        start = _get(f"{base}/api/contents/lessons/start-{lang}.ipynb", token)
        page = "".join(cell["source"] for cell in start["content"]["cells"])
        for link in re.findall(r"\]\(([^)]+)\)", page):  # every link of the start page reaches a file on the server
            path = os.path.normpath(os.path.join("lessons", link))
            _get(f"{base}/api/contents/{path}?content=0", token)
        assert f"../solutions/{lang}/01-clip-zero-shot.ipynb" in page and "glossary.md" in page
        request = urllib.request.Request(f"{base}/", headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:  # "/" redirects to the start page
            assert response.url.endswith(f"/lab/tree/lessons/start-{lang}.ipynb"), response.url
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)


def test_notebooks_name_the_kernel_the_course_registers():
    """An untouched lesson stays unmodified when JupyterLab starts its kernel: its metadata names that kernel."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    name, display = re.search(r'ipykernel install --sys-prefix --name (\S+) --display-name "([^"]+)"', makefile).groups()
    notebooks = [p for p in sorted(ROOT.glob("lessons/**/*.ipynb")) + sorted(ROOT.glob("solutions/*/*.ipynb"))
                 if ".ipynb_checkpoints" not in p.parts]
    sources = len(list(ROOT.glob("lessons/src/*.md"))) + len(list(ROOT.glob("solutions/src/*.md")))
    assert len(notebooks) == 2 * sources + 2  # every lesson and solution in 2 languages, and the 2 start pages
    for path in notebooks:
        spec = json.loads(path.read_text(encoding="utf-8"))["metadata"]["kernelspec"]
        assert (spec["name"], spec["display_name"]) == (name, display), path.name


def test_notebooks_carry_the_language_info_the_course_kernel_reports():
    """JupyterLab writes the kernel's language_info into a notebook when the kernel starts and marks the notebook
    modified unless it is already there, key for key (tests/test_browser.py checks the mark itself). Every notebook
    carries what the course kernel reports, built by one Python; a student on another Python version still sees
    one line change (the version), which nothing on the notebook's side can prevent."""
    sys.path.insert(0, str(ROOT / "lessons"))
    import build

    expected = build.kernel_language_info()
    versions = set()
    for path in sorted(ROOT.glob("lessons/**/*.ipynb")) + sorted(ROOT.glob("solutions/*/*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        info = json.loads(path.read_text(encoding="utf-8"))["metadata"]["language_info"]
        assert {k: v for k, v in info.items() if k != "version"} == \
            {k: v for k, v in expected.items() if k != "version"}, path.name
        versions.add(info["version"])
    assert len(versions) == 1, f"notebooks built with several Python versions: {sorted(versions)}; rebuild them"
