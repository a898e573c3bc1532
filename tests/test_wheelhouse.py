"""A classroom without internet: a wheelhouse (a folder of wheels) is built on one machine and installed with
`--no-index`; `make lab` uses it when it is there. The real one holds PyTorch (about 1 GB with the CPU wheels); this
test builds a small one (the course's own wheel and a few pure-Python dependencies) and installs from it alone."""
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PIP = ["-m", "pip", "--disable-pip-version-check", "--quiet"]


def _run(*args, **kwargs):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs)


@pytest.mark.slow
def test_a_small_wheelhouse_installs_with_no_index(tmp_path):
    wheels = tmp_path / "wheelhouse"
    # the course's own wheel (built with this environment's setuptools: nothing fetched for the build)
    built = _run(sys.executable, *PIP, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels, ROOT)
    assert built.returncode == 0, built.stderr
    # a few pure-Python dependencies of the course, with their own dependencies (ftfy needs wcwidth)
    fetched = _run(sys.executable, *PIP, "download", "--dest", wheels, "--only-binary=:all:", "ftfy", "tqdm")
    if fetched.returncode != 0 and "No matching distribution" not in fetched.stderr:
        pytest.skip(f"no package index reachable to build the wheelhouse: {fetched.stderr.strip()[-300:]}")
    assert fetched.returncode == 0, fetched.stderr
    names = sorted(p.name.split("-")[0].lower() for p in wheels.glob("*.whl"))
    assert {"mmcore", "ftfy", "tqdm", "wcwidth"} <= set(names), names

    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", venv).returncode == 0
    python = venv / "bin" / "python"
    offline = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/nothing-here")
    # the course without its heavy dependencies (no torch in this small wheelhouse), and the pure-Python ones
    course = _run(python, *PIP, "install", "--no-index", "--find-links", wheels, "--no-deps", "mmcore", env=offline)
    assert course.returncode == 0, course.stderr
    deps = _run(python, *PIP, "install", "--no-index", "--find-links", wheels, "ftfy", "tqdm", env=offline)
    assert deps.returncode == 0, deps.stderr
    used = _run(python, "-c", "import ftfy, tqdm, mmcore, mmcore.lang; print(mmcore.__version__, "
                              "mmcore.lang.pick('bn', 'ok', 'ঠিক'), ftfy.fix_text('cafÃ©'))", env=offline)
    assert used.returncode == 0, used.stderr
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert used.stdout.split() == [pyproject["project"]["version"], "ঠিক", "café"]
    # and nothing comes from anywhere else: a package that is not in the wheelhouse cannot be installed
    missing = _run(python, *PIP, "install", "--no-index", "--find-links", wheels, "requests", env=offline)
    assert missing.returncode != 0 and "requests" in missing.stderr


def test_make_lab_installs_from_the_wheelhouse_when_there_is_one(tmp_path):
    wheels = tmp_path / "wheelhouse"
    wheels.mkdir()
    venv = tmp_path / "venv"  # a venv that does not exist yet: make prints the whole set-up
    plan = lambda: _run("make", "-n", "lab", f"WHEELHOUSE={wheels}", f"VENV={venv}", cwd=ROOT).stdout
    assert "--no-index" not in plan()  # no wheelhouse: from the package index, as before
    (wheels / "mmcore-0.1.0-py3-none-any.whl").write_bytes(b"")
    with_wheels = plan()
    assert f"--no-index --find-links {wheels} -e ." in with_wheels and "jupyter lab" in with_wheels


def test_make_wheelhouse_fetches_every_dependency_of_the_course():
    plan = _run("make", "-n", "wheelhouse", cwd=ROOT).stdout
    assert "pip wheel" in plan and "--no-deps" in plan and "pip download" in plan
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in plan
    assert 'tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]' in plan
    assert "ipykernel" in plan and "setuptools" in plan
    other = _run("make", "-n", "wheelhouse", "WHEEL_PLATFORM=win_amd64", "WHEEL_PYTHON=3.11", cwd=ROOT).stdout
    assert "--platform win_amd64" in other and "--python-version 3.11" in other and "--only-binary=:all:" in other
