"""The other ways into the course keep step with `make lab`: the dev container (GitHub Codespaces, VS Code) and the
one-line PowerShell set-up that README gives Windows users without WSL or make."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dry_run(target: str) -> str:
    """What `make <target>` would run on a fresh machine (every step, nothing executed)."""
    return subprocess.run(["make", "--no-print-directory", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_setup_is_the_set_up_of_make_lab():
    setup, lab = dry_run("setup"), dry_run("lab")
    assert "pip install" in setup and "ipykernel install" in setup
    assert lab.startswith(setup), "make lab does more (or other) set-up than make setup"
    assert re.fullmatch(r"\S*jupyter lab .*", lab[len(setup):].replace("\\\n", " "), re.S), lab[len(setup):]


def test_devcontainer_runs_the_set_up_of_make_lab_then_make_lab():
    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text(encoding="utf-8"))
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    font = re.search(r"apt-get install -y -q (fonts-\S+)", ci).group(1)
    assert f"apt-get install" in config["onCreateCommand"] and font in config["onCreateCommand"].split()
    assert config["postCreateCommand"] == "make setup"
    start = shlex.split(config["postAttachCommand"])
    assert start[:2] == ["make", "lab"], start
    port = int(re.search(r"--port[= ](\d+)", config["postAttachCommand"]).group(1))
    assert port in config["forwardPorts"] and str(port) in config["portsAttributes"]
    # the image's Python is one the course supports
    image_python = tuple(int(x) for x in re.search(r"python:(\d+)\.(\d+)", config["image"]).groups())
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    required = tuple(int(x) for x in re.search(r'requires-python = ">=(\d+)\.(\d+)"', pyproject).groups())
    assert image_python >= required


def windows_line(readme: str) -> list[str]:
    block = re.search(r"```powershell\n(.+?)\n```", readme, re.S)
    assert block, "README gives no PowerShell line for Windows without make"
    assert "\n" not in block.group(1), "the Windows set-up is one line"
    return [step.strip() for step in block.group(1).split(";")]


def test_readme_windows_line_does_what_make_lab_does():
    """Each step of the PowerShell line is the Makefile's step (the venv, the install, the course's kernel, JupyterLab
    at the start page), with Windows' paths."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n\t\t", "")
    en = windows_line((ROOT / "README.md").read_text(encoding="utf-8"))
    assert windows_line((ROOT / "README.bn.md").read_text(encoding="utf-8")) == en
    venv, install, kernel, lab = en
    assert venv == "py -m venv .venv"
    assert install == r".venv\Scripts\python -m pip install -e ."
    registered = re.search(r"\$\(PY\) -m (ipykernel install .*?) >/dev/null", makefile).group(1)
    assert kernel == rf".venv\Scripts\python -m {registered}"
    recipe = re.search(r"^lab: .*\n\t(.*)", makefile, re.M).group(1)
    options = [o for o in shlex.split(recipe.replace("$(CURDIR)", ".").replace("$(COURSE_LANG)", "en"))
               if o.startswith("--") and "$(" not in o]
    assert lab == r".venv\Scripts\jupyter lab " + " ".join(options), (lab, options)
