"""The pre-flight check (mmcore.preflight, `make check`): all good on this machine, in under a minute; every failure,
simulated, is reported with its fix in English and in Bengali."""
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmcore import preflight
from mmcore.lang import bengali_share

ROOT = Path(__file__).resolve().parent.parent


def test_everything_is_ready_here_and_the_report_says_so_in_both_languages():
    for lang in ("en", "bn"):
        report = preflight.run_checks(lang)
        assert [c.key for c in report.checks] == list(preflight.CHECKS)
        assert report.ok, str(report)
        assert report.seconds < 60
        text = str(report)
        assert len(text.splitlines()) == len(preflight.CHECKS) + 2  # title, one line per check, verdict
        assert ("ready for the course" in text) == (lang == "en")
        assert ("প্রস্তুত" in text) == (lang == "bn")


def test_the_checkpoint_check_covers_every_card_in_the_folder():
    cards = sorted(p.stem for p in (ROOT / "data" / "checkpoints").glob("*.json")
                   if "sha256" in json.loads(p.read_text(encoding="utf-8")))
    assert "shapes-tiny" in cards
    found = preflight.check_checkpoints("en").found
    assert all(name in found for name in cards) and f"{len(cards)} SHA-256 ok" in found


def test_make_check_runs_in_under_a_minute_and_exits_0():
    start = time.perf_counter()
    done = subprocess.run(["make", "-s", "check", "COURSE_LANG=bn", f"PY={sys.executable}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    assert "কোর্সের প্রস্তুতি যাচাই" in done.stdout and seconds < 60


def test_the_command_exits_1_when_something_is_wrong(monkeypatch, capsys):
    monkeypatch.setattr(preflight, "MIN_PYTHON", (99, 0))
    assert preflight.main(["--only", "python", "jupyterlab"]) == 1
    out = capsys.readouterr().out
    assert "1 of 2 checks failed" in out and "99.0" in out


def test_the_pyproject_minimums_are_the_ones_checked():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'requires-python = ">={".".join(map(str, preflight.MIN_PYTHON))}"' in pyproject
    assert f'"jupyterlab>={preflight.MIN_JUPYTERLAB[0]}"' in pyproject


def test_kernel_name_is_what_the_notebooks_and_the_makefile_use():
    notebook = json.loads((ROOT / "lessons" / "bn" / "00-getting-started.ipynb").read_text(encoding="utf-8"))
    assert notebook["metadata"]["kernelspec"]["name"] == preflight.KERNEL_NAME
    assert notebook["metadata"]["kernelspec"]["display_name"] == preflight.KERNEL_DISPLAY_NAME
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f'--name {preflight.KERNEL_NAME} --display-name "{preflight.KERNEL_DISPLAY_NAME}"' in makefile


# ------------------------------------------------------------------------------------------- simulated failures
# Each one breaks a single thing, then checks that only that check fails, and that its fix is given in both languages
# (the English fix in English, the Bengali one mostly in Bengali) with the command that repairs it.


def _fail_python(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight, "MIN_PYTHON", (sys.version_info[0], sys.version_info[1] + 1))


def _fail_torch(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError


def _fail_font(monkeypatch, tmp_path):
    import mmcore.plot

    monkeypatch.setattr(mmcore.plot, "bengali_font", lambda: None)


def _no_kernel(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight, "_kernel_specs", lambda: {"ir": {"spec": {"display_name": "R", "argv": ["R"]}}})


def _foreign_kernel(monkeypatch, tmp_path):
    spec = {"display_name": "Python 3", "argv": [sys.executable, "-m", "ipykernel_launcher"]}
    monkeypatch.setattr(preflight, "_kernel_specs", lambda: {"python3": {"spec": spec}})


def _kernel_without_mmcore(monkeypatch, tmp_path):
    # the right name, but the interpreter behind it is a different Python: one that has no mmcore at all
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'mmcore'\" >&2\nexit 1\n")
    python.chmod(0o755)
    spec = {"display_name": preflight.KERNEL_DISPLAY_NAME, "argv": [str(python), "-m", "ipykernel_launcher"]}
    monkeypatch.setattr(preflight, "_kernel_specs", lambda: {"python3": {"spec": spec}})


def _corrupt_checkpoint(monkeypatch, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for name in ("shapes-judge.safetensors", "shapes-judge.json"):
        shutil.copy(ROOT / "data" / "checkpoints" / name, folder / name)
    data = bytearray((folder / "shapes-judge.safetensors").read_bytes())
    data[-1] ^= 0xFF  # one flipped byte
    (folder / "shapes-judge.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(preflight, "CHECKPOINT_DIR", folder)


def _missing_checkpoint(monkeypatch, tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    shutil.copy(ROOT / "data" / "checkpoints" / "shapes-judge.json", folder / "shapes-judge.json")
    monkeypatch.setattr(preflight, "CHECKPOINT_DIR", folder)


def _unwritable_cache(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MMCORE_CACHE", str(blocker / "cache"))  # a folder cannot be made inside a file (even as root)


def _no_jupyterlab(monkeypatch, tmp_path):
    def version(dist):
        raise preflight.importlib.metadata.PackageNotFoundError(dist)

    monkeypatch.setattr(preflight, "_dist_version", version)


def _old_jupyterlab(monkeypatch, tmp_path):
    monkeypatch.setattr(preflight, "_dist_version", lambda dist: "3.6.7")


FAILURES = {  # simulation -> (the check that must fail, what its found text names, a command its fix gives)
    _fail_python: ("python", ".", "make lab PYTHON="),
    _fail_torch: ("torch", "torch", "--index-url https://download.pytorch.org/whl/cpu"),
    _fail_font: ("font", "", "fonts-noto-core"),
    _no_kernel: ("kernel", "'ir'", "ipykernel install --sys-prefix --name python3"),
    _foreign_kernel: ("kernel", "'Python 3'", "Change Kernel > Python 3 (mmcore)"),
    _kernel_without_mmcore: ("kernel", "No module named 'mmcore'", "make lab"),
    _corrupt_checkpoint: ("checkpoints", "shapes-judge.safetensors", "git checkout data/checkpoints"),
    _missing_checkpoint: ("checkpoints", "shapes-judge.safetensors", "git checkout data/checkpoints"),
    _unwritable_cache: ("cache", "a-file", "MMCORE_CACHE="),
    _no_jupyterlab: ("jupyterlab", "", "jupyterlab>=4.0"),
    _old_jupyterlab: ("jupyterlab", "3.6.7", "pip install -U"),
}


@pytest.mark.parametrize("simulate", list(FAILURES), ids=[f.__name__.lstrip("_") for f in FAILURES])
def test_each_failure_gives_its_fix_in_both_languages(simulate, monkeypatch, tmp_path):
    key, named, command = FAILURES[simulate]
    simulate(monkeypatch, tmp_path)
    fixes = {}
    for lang in ("en", "bn"):
        report = preflight.run_checks(lang, only=[key])
        check = report[key]
        assert not check.ok and not report.ok
        assert named in check.found, check.found
        assert command in check.fix, check.fix
        fixes[lang] = check.fix
        text = str(report)
        assert check.fix.splitlines()[0] in text
    assert fixes["en"] != fixes["bn"]
    prose = {lang: re.sub(r"`[^`]*`", "", fix) for lang, fix in fixes.items()}  # commands are the same in both
    assert bengali_share(prose["en"]) == 0
    assert bengali_share(prose["bn"]) > 0.5, fixes["bn"]


def test_one_failure_does_not_hide_the_others(monkeypatch, tmp_path):
    _fail_font(monkeypatch, tmp_path)
    _old_jupyterlab(monkeypatch, tmp_path)
    report = preflight.run_checks("bn")
    assert [c.key for c in report.failed] == ["font", "jupyterlab"]
    assert "7টি যাচাইয়ের 2টিতে সমস্যা" in str(report)


def test_a_check_that_cannot_run_is_a_failure_with_the_install_fix(monkeypatch):
    def needs_a_missing_package(lang):
        import a_package_that_is_not_installed  # noqa: F401

    monkeypatch.setitem(preflight.CHECKS, "cache", needs_a_missing_package)
    check = preflight.run_checks("en", only=["cache"])["cache"]
    assert not check.ok and "a_package_that_is_not_installed" in check.found and "make lab" in check.fix


def test_unknown_language_or_check_is_a_clear_error():
    with pytest.raises(ValueError, match="'en' or 'bn'"):
        preflight.run_checks("fr")
    with pytest.raises(ValueError, match="unknown checks"):
        preflight.run_checks("en", only=["wifi"])
