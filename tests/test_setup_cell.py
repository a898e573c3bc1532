"""Every lesson's set-up cell (its second code cell, written by lessons/build.py), run the way Colab runs it.

In Colab a lesson starts in a bare Python with IPython: the cell clones the course from GitHub, `pip install`s it
and installs a Bengali font, and the lesson then imports mmcore. Here the same cell runs in IPython, in a fresh
virtual environment, with `google.colab` in ``sys.modules`` (what the cell looks for), and three stand-ins:

- GitHub is this repository: the cell's repository URL becomes ``file://`` + this checkout, so the clone holds what is
  committed here (as Colab's holds what is pushed);
- ``/content/course`` becomes a folder under the test's temporary directory;
- ``apt-get`` is a script that records its arguments (installing packages needs root and the network).

PyTorch and torchvision come from the course's own environment (tests/core_install/share_wheels.py, as
`make test-core` does), so the test downloads no torch; pip fetches the other dependencies (from its cache when
`make test` has already installed them). A broken install step (the clone, `pip install`, the package data, the
import) fails the test. On any other machine the cell must do nothing: checked too.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lessons"))
import build  # noqa: E402  (lessons/build.py: the builder that writes the set-up cell)

LESSON = ROOT / "lessons" / "en" / "02-image-search.ipynb"
# Where the cell puts the course on each platform, and the environment variables by which it knows Kaggle
# (Kaggle's own kagglehub checks KAGGLE_KERNEL_RUN_TYPE).
COURSE_FOLDERS = {"colab": "/content/course", "kaggle": "/kaggle/working/course"}
PLATFORM_ENV = {"colab": {}, "kaggle": {"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "KAGGLE_URL_BASE": "https://www.kaggle.com"}}

# Run by the fresh environment's Python: the set-up cell in IPython as Colab would, then what a lesson does first.
RUNNER = textwrap.dedent('''
    import json, sys, types
    from IPython.core.interactiveshell import InteractiveShell

    cell = open(sys.argv[1], encoding="utf-8").read()
    if sys.argv[3] == "colab":  # Kaggle is known by its environment variables, set by the test
        sys.modules["google.colab"] = types.ModuleType("google.colab")
    shell = InteractiveShell.instance()
    shell.user_ns["LANG"] = "en"  # the parameters cell runs first
    shell.run_cell(cell).raise_error()
    shell.run_cell("""
    import importlib.util
    found = importlib.util.find_spec("mmcore")
    if found is not None:
        import mmcore
        from mmcore import clip, data, plot, widgets
        model, preprocess, tokenizer = clip.load("shapes-tiny")  # the shipped checkpoint, from the clone's data/
        image, caption = data.ShapesDataset("test", n=1, image_size=32, seed=0, lang="bn")[0]
        score = float(model(preprocess(image)[None], tokenizer([caption]))[0].item())
    """).raise_error()
    ns = shell.user_ns
    with open(sys.argv[2], "w", encoding="utf-8") as out:  # what the lesson saw
        json.dump({"mmcore": ns["mmcore"].__file__ if ns["found"] else None, "score": ns.get("score"),
                   "caption": ns.get("caption")}, out)
''')


def setup_cell(path: Path) -> str:
    """The set-up cell as the notebook holds it (the code cell right after the ``parameters`` cell)."""
    cells = [cell for cell in json.loads(path.read_text(encoding="utf-8"))["cells"] if cell["cell_type"] == "code"]
    cell = "".join(cells[1]["source"])
    assert cell.startswith("# Set-up: in Google Colab"), f"{path.name}: the second code cell is not the set-up cell"
    return cell


def fresh_environment(tmp: Path, platform: str) -> tuple[Path, dict]:
    """A new virtual environment holding only IPython (Colab's runtime has it) and the course's torch wheels; the
    environment variables that make its pip and a recording apt-get the ones the cell finds."""
    if not (ROOT / ".git").exists():
        pytest.skip("the set-up cell clones the course with git: this checkout is not a git repository")
    if shutil.which("git") is None:
        pytest.skip("the set-up cell clones the course with git: git is not installed")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([sys.executable, str(ROOT / "tests" / "core_install" / "share_wheels.py"), str(venv)], check=True,
                   capture_output=True)
    python = venv / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "ipython"], check=True)
    tools = tmp / "tools"
    tools.mkdir()
    apt = tools / "apt-get"
    apt.write_text(f'#!/bin/sh\necho "$@" >> "{tmp / "apt-get.log"}"\n', encoding="utf-8")
    apt.chmod(0o755)
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PIP_REQUIRE_VIRTUALENV")}
    env.update(PLATFORM_ENV[platform])
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{tools}{os.pathsep}{os.environ['PATH']}", VIRTUAL_ENV=str(venv),
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    return python, env


def run_setup_cell(tmp: Path, platform: str) -> tuple[dict, Path, str]:
    """Run a lesson's set-up cell in a fresh environment on ``platform``; returns what the lesson then saw."""
    course = tmp / "content" / "course"
    cell = setup_cell(LESSON)
    repository = build.repository_url()
    assert repository in cell and COURSE_FOLDERS["colab"] in cell
    for place in COURSE_FOLDERS.values():
        cell = cell.replace(place, str(course))
    cell = cell.replace(repository, ROOT.as_uri())
    (tmp / "cell.py").write_text(cell, encoding="utf-8")
    (tmp / "runner.py").write_text(RUNNER, encoding="utf-8")
    python, env = fresh_environment(tmp, platform)
    work = tmp / "work"  # a notebook's working directory: neither this checkout nor the clone
    work.mkdir()
    done = subprocess.run([python, tmp / "runner.py", tmp / "cell.py", tmp / "seen.json", platform], cwd=work,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"the set-up cell failed on {platform}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    seen = json.loads((tmp / "seen.json").read_text(encoding="utf-8"))
    apt_log = tmp / "apt-get.log"
    return seen, course, apt_log.read_text(encoding="utf-8") if apt_log.exists() else ""


@pytest.mark.slow
@pytest.mark.parametrize("platform", ["colab", "kaggle"])
def test_setup_cell_installs_the_course(tmp_path, platform):
    if platform == "kaggle" and "kaggle" not in setup_cell(LESSON).lower():
        pytest.xfail("README links to Kaggle, but the set-up cell installs the course only in Colab: "
                     "lessons/build.py's SETUP_CELL needs a Kaggle branch (KAGGLE_KERNEL_RUN_TYPE, /kaggle/working/course)")
    seen, course, apt = run_setup_cell(tmp_path, platform)
    assert (course / ".git").is_dir() and (course / "pyproject.toml").is_file(), "the course was not cloned"
    assert seen["mmcore"] == str(course / "mmcore" / "__init__.py"), f"imported mmcore from {seen['mmcore']}"
    assert seen["score"] is not None and seen["caption"], seen  # shapes-tiny loaded from the clone and ran
    assert "install" in apt.split() and "fonts-noto-core" in apt.split(), f"apt-get was asked for: {apt!r}"
    # pip installed the clone itself, editable (a lesson edited in the clone uses the edited package)
    python = tmp_path / "venv" / "bin" / "python"
    direct = subprocess.run([python, "-c", "import importlib.metadata as m; print(m.distribution('mmcore').read_text("
                             "'direct_url.json'))"], cwd=tmp_path / "work", capture_output=True, text=True,
                            check=True).stdout
    assert json.loads(direct)["url"] == course.as_uri() and json.loads(direct)["dir_info"].get("editable"), direct


def test_setup_cell_does_nothing_on_a_students_own_machine(tmp_path):
    """On a student's own machine (`make lab`) the cell neither runs a command, clones, nor prints anything."""
    cell = tmp_path / "cell.py"
    text = setup_cell(LESSON)
    for place in COURSE_FOLDERS.values():
        text = text.replace(place, str(tmp_path / "course"))
    cell.write_text(text, encoding="utf-8")
    record = ("import sys; from IPython.core.interactiveshell import InteractiveShell; shell = InteractiveShell.instance(); "
              "calls = []; shell.system = calls.append; shell.user_ns['LANG'] = 'en'; "  # every `!command` goes there
              "shell.run_cell(open(sys.argv[1], encoding='utf-8').read()).raise_error(); print('commands:', calls)")
    done = subprocess.run([sys.executable, "-c", record, cell], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "commands: []\n" and not (tmp_path / "course").exists(), done.stdout


def test_every_notebook_has_the_same_setup_cell():
    """The cell tested above is the one every lesson and solution holds."""
    notebooks = sorted(p for kind in ("lessons", "solutions") for p in (ROOT / kind).glob("*/*.ipynb"))
    assert len(notebooks) >= 28  # 8 lessons and their solutions, in two languages
    assert {setup_cell(path) for path in notebooks} == {setup_cell(LESSON)}
