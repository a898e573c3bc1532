"""The pre-flight check: is this machine ready for the course? One call, well under a minute, in the student's language.

An instructor with 30 laptops asks every student to run ``make check`` (or ``python -m mmcore.preflight --lang bn``,
or :func:`run_checks` in a notebook) before the workshop. Seven things are checked, each on its own, so that one
missing piece never hides the others:

========== ==========================================================================================
python     the interpreter is at least :data:`MIN_PYTHON` (pyproject.toml's ``requires-python``)
torch      PyTorch imports and computes (a small matrix product); the device the lessons will use
font       matplotlib finds a Bengali font (:func:`mmcore.plot.bengali_font`), so Bengali labels are not boxes
kernel     Jupyter's ``python3`` kernel is the course's "Python 3 (mmcore)", and its Python imports this mmcore
checkpoints every shipped checkpoint (``data/checkpoints/*.safetensors`` with a ``.json`` card recording its
           SHA-256) is present and has exactly that SHA-256
cache      mmcore's cache folder (:func:`mmcore.weights.default_cache_dir`) can be created and written
jupyterlab JupyterLab :data:`MIN_JUPYTERLAB` or newer is installed
========== ==========================================================================================

Every check that fails says what it found and the fix, in English (``lang="en"``) or Bengali (``lang="bn"``)::

    >>> from mmcore.preflight import run_checks
    >>> report = run_checks(lang="bn")
    >>> print(report)          # one line per check; a fix under each one that failed
    >>> report.ok              # True when every check passed

This module imports PyTorch, matplotlib and Jupyter only inside the checks that need them: a machine without them
still gets a report (that says how to install them) instead of an ImportError.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from mmcore.lang import check_lang, pick, word

__all__ = ["MIN_PYTHON", "MIN_JUPYTERLAB", "KERNEL_NAME", "KERNEL_DISPLAY_NAME", "CHECKS", "Check", "Report",
           "run_checks", "main"]

MIN_PYTHON: tuple[int, int] = (3, 10)  # pyproject.toml: requires-python = ">=3.10"
MIN_JUPYTERLAB: tuple[int, int] = (4, 0)  # pyproject.toml: jupyterlab>=4
KERNEL_NAME = "python3"  # the kernel every notebook names (its metadata.kernelspec.name)
KERNEL_DISPLAY_NAME = "Python 3 (mmcore)"  # what `make lab` registers (ipykernel install --sys-prefix --name python3)
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"  # where the shipped ones live

CPU_WHEELS = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"


@dataclass
class Check:
    """The result of one check."""

    key: str  # which check: one of CHECKS ("python", "torch", ...)
    ok: bool  # True when nothing needs fixing
    found: str  # what was found, e.g. "3.11.7" or "shapes-tiny: SHA-256 differs from its card"
    fix: str = ""  # what to do, in the report's language ("" when ok)


@dataclass
class Report:
    """Every check's result, in one language; ``str(report)`` is the table ``make check`` prints."""

    lang: str  # "en" or "bn": the language of `fix` and of the printed table
    checks: list[Check] = field(default_factory=list)  # in the order of CHECKS
    seconds: float = 0.0  # how long the checks took

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """The checks that need a fix."""
        return [c for c in self.checks if not c.ok]

    def __getitem__(self, key: str) -> Check:
        for check in self.checks:
            if check.key == key:
                return check
        raise KeyError(f"no check {key!r}; the checks are {[c.key for c in self.checks]}")

    def __str__(self) -> str:
        lang = self.lang
        lines = [pick(lang, f"Pre-flight check of the course ({self.seconds:.1f} s)",
                      f"কোর্সের প্রস্তুতি যাচাই ({self.seconds:.1f} {word('seconds', lang)})")]
        width = max(len(_label(c.key, lang)) for c in self.checks) if self.checks else 0
        good, bad = word("ok", lang), word("wrong", lang).upper()
        for c in self.checks:
            mark = f"[{good if c.ok else bad}]"
            lines.append(f"  {mark:<{max(len(good), len(bad)) + 2}} {_label(c.key, lang):<{width}}  {c.found}")
            if not c.ok:
                fix_word = pick(lang, "fix", "সমাধান")
                for i, line in enumerate(c.fix.splitlines()):
                    lines.append(f"          {fix_word}: {line}" if i == 0 else f"          {' ' * len(fix_word)}  {line}")
        n, n_bad = len(self.checks), len(self.failed)
        if n_bad == 0:
            lines.append(pick(lang, f"All {n} checks passed: this machine is ready for the course.",
                              f"{n}টি যাচাইয়ের সবকটি ঠিক আছে: এই কম্পিউটার কোর্সের জন্য প্রস্তুত।"))
        else:
            lines.append(pick(lang, f"{n_bad} of {n} checks failed: apply the fixes above, then run `make check` again.",
                              f"{n}টি যাচাইয়ের {n_bad}টিতে সমস্যা: ওপরের সমাধানগুলো প্রয়োগ করুন, তারপর আবার "
                              "`make check` চালান।"))
        return "\n".join(lines)


_LABELS = {
    "python": ("Python", "পাইথন"),
    "torch": ("PyTorch", "PyTorch"),
    "font": ("Bengali font", "বাংলা ফন্ট"),
    "kernel": ("Jupyter kernel", "জুপিটার কার্নেল"),
    "checkpoints": ("checkpoints", "চেকপয়েন্ট"),
    "cache": ("cache folder", "ক্যাশ ফোল্ডার"),
    "jupyterlab": ("JupyterLab", "JupyterLab"),
}


def _label(key: str, lang: str) -> str:
    en, bn = _LABELS[key]
    return pick(lang, en, bn)


def _version_tuple(text: str) -> tuple[int, ...]:
    """``"4.6.6"`` -> ``(4, 6, 6)``; ``"4.0.0rc1"`` -> ``(4, 0, 0)`` (the leading numbers only)."""
    match = re.match(r"\d+(?:\.\d+)*", text)
    return tuple(int(n) for n in match.group(0).split(".")) if match else ()


def _dist_version(dist: str) -> str:
    """The installed version of a distribution (raises importlib.metadata.PackageNotFoundError when missing)."""
    return importlib.metadata.version(dist)


def _install_course(lang: str) -> str:
    return pick(lang, "set up the course with `make lab` (it installs everything into .venv), or `pip install -e .`",
                "`make lab` দিয়ে কোর্স সেট আপ করুন (এটি .venv-এ সব ইনস্টল করে), অথবা `pip install -e .` চালান")


# --------------------------------------------------------------------------------------------------------- the checks


def check_python(lang: str = "en") -> Check:
    """The interpreter is at least MIN_PYTHON."""
    have = sys.version_info[:3]
    found = ".".join(map(str, have))
    if have[:2] >= MIN_PYTHON:
        return Check("python", True, found)
    need = ".".join(map(str, MIN_PYTHON))
    fix = pick(lang,
               f"the course needs Python {need} or newer. Install one (python.org, your package manager, or "
               f"`conda create -n mmcore python=3.11`),\nthen set the course up with it: `make lab PYTHON=python3.11`",
               f"কোর্সের জন্য Python {need} বা তার নতুন সংস্করণ লাগবে। একটি ইনস্টল করুন (python.org, আপনার "
               "প্যাকেজ ম্যানেজার, অথবা `conda create -n mmcore python=3.11`),\nতারপর সেটি দিয়ে কোর্স সেট আপ করুন: "
               "`make lab PYTHON=python3.11`")
    return Check("python", False, found, fix)


def check_torch(lang: str = "en") -> Check:
    """PyTorch imports, multiplies two small matrices correctly, and names the device the lessons will use."""
    fix_install = pick(lang,
                       f"{_install_course(lang)}.\nOn a laptop without an NVIDIA GPU the CPU-only wheels are much "
                       f"smaller: `{CPU_WHEELS}`",
                       f"{_install_course(lang)}।\nNVIDIA GPU ছাড়া ল্যাপটপে শুধু-CPU হুইল অনেক ছোট: `{CPU_WHEELS}`")
    try:
        import torch
    except ImportError as error:
        return Check("torch", False, pick(lang, f"not installed ({error})", f"ইনস্টল করা নেই ({error})"), fix_install)
    except Exception as error:  # a broken install (missing shared library, ABI mismatch) raises other errors too
        return Check("torch", False, pick(lang, f"does not import: {error!r}", f"ইমপোর্ট হয় না: {error!r}"),
                     pick(lang, "reinstall it: ", "আবার ইনস্টল করুন: ") + fix_install)
    try:
        a = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        product = (a @ a.T).tolist()  # (2, 2)
        works = product == [[5.0, 14.0], [14.0, 50.0]]
    except Exception as error:
        works, product = False, repr(error)
    if not works:
        return Check("torch", False, pick(lang, f"{torch.__version__} computes wrongly: {product}",
                                          f"{torch.__version__} ভুল হিসাব করে: {product}"),
                     pick(lang, "reinstall it: ", "আবার ইনস্টল করুন: ") + fix_install)
    from mmcore import get_device

    return Check("torch", True, f"{torch.__version__} ({get_device().type})")


def check_font(lang: str = "en") -> Check:
    """matplotlib finds one of mmcore.plot.BENGALI_FONTS."""
    fix = pick(lang,
               "install a Bengali font, then restart the kernel:\n"
               "Debian / Ubuntu: `sudo apt-get install fonts-noto-core`; conda: `conda install -c conda-forge "
               "font-ttf-noto`;\nor copy `NotoSansBengali-Regular.ttf` into `~/.fonts`; macOS and Windows already have "
               "Kohinoor Bangla / Nirmala UI",
               "একটি বাংলা ফন্ট ইনস্টল করুন, তারপর কার্নেল রিস্টার্ট করুন:\n"
               "Debian / Ubuntu: `sudo apt-get install fonts-noto-core`; conda: `conda install -c conda-forge "
               "font-ttf-noto`;\nঅথবা `NotoSansBengali-Regular.ttf` ফাইলটি `~/.fonts`-এ কপি করুন; macOS আর Windows-এ "
               "Kohinoor Bangla / Nirmala UI আগে থেকেই থাকে")
    try:
        from mmcore import plot
    except ImportError as error:
        return Check("font", False, pick(lang, f"matplotlib is missing ({error})", f"matplotlib নেই ({error})"),
                     _install_course(lang))
    name = plot.bengali_font()
    if name is None:
        found = pick(lang, "no Bengali font found: Bengali labels in plots would be empty boxes",
                     "কোনো বাংলা ফন্ট পাওয়া যায়নি: প্লটের বাংলা লেবেল ফাঁকা বাক্স হয়ে দেখাবে")
        return Check("font", False, found, fix)
    return Check("font", True, name)


def _kernel_specs() -> dict[str, dict]:
    """Jupyter's installed kernels, ``{name: {"resource_dir": ..., "spec": {...}}}`` (what ``jupyter kernelspec
    list --json`` prints), as this Python's Jupyter sees them."""
    from jupyter_client.kernelspec import KernelSpecManager

    return KernelSpecManager().get_all_specs()


def _kernel_imports_this_mmcore(python: str) -> tuple[bool, str]:
    """Run the kernel's interpreter: does it import mmcore from this checkout? ``(yes, what it said)``."""
    here = str(Path(__file__).resolve().parent)
    try:
        code = "import mmcore, os; print(os.path.dirname(os.path.realpath(mmcore.__file__)))"
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return False, repr(error)
    if done.returncode != 0:
        return False, (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    said = done.stdout.strip()
    return Path(said).resolve() == Path(here), said


def check_kernel(lang: str = "en") -> Check:
    """The notebooks' kernel (``python3``) is the course's: display name "Python 3 (mmcore)", and its Python imports
    this checkout's mmcore. In Colab the notebook runs in Colab's own kernel, which needs no registration."""
    register = (f"`python -m ipykernel install --sys-prefix --name {KERNEL_NAME} "
                f"--display-name \"{KERNEL_DISPLAY_NAME}\"`")
    fix = pick(lang,
               f"`make lab` registers it; by hand, with the course's Python:\n{register}\n"
               f"In JupyterLab choose Kernel > Change Kernel > {KERNEL_DISPLAY_NAME}",
               f"`make lab` এটি নিবন্ধন করে; নিজে করতে চাইলে কোর্সের Python দিয়ে চালান:\n{register}\n"
               f"JupyterLab-এ Kernel > Change Kernel > {KERNEL_DISPLAY_NAME} বাছুন")
    if "google.colab" in sys.modules:
        return Check("kernel", True, "Colab")
    try:
        specs = _kernel_specs()
    except ImportError as error:
        return Check("kernel", False, pick(lang, f"Jupyter is missing ({error})", f"Jupyter নেই ({error})"),
                     _install_course(lang))
    if KERNEL_NAME not in specs:
        return Check("kernel", False, pick(lang, f"no kernel named {KERNEL_NAME!r} (found: {sorted(specs) or 'none'})",
                                           f"{KERNEL_NAME!r} নামে কোনো কার্নেল নেই (পাওয়া গেছে: "
                                           f"{sorted(specs) or 'কিছুই না'})"), fix)
    spec = specs[KERNEL_NAME]["spec"]
    display, argv = spec.get("display_name", ""), spec.get("argv") or [""]
    if display != KERNEL_DISPLAY_NAME:
        return Check("kernel", False, pick(lang, f"the {KERNEL_NAME!r} kernel is {display!r}, not the course's",
                                           f"{KERNEL_NAME!r} কার্নেলটি {display!r}, কোর্সেরটি নয়"), fix)
    imports, said = _kernel_imports_this_mmcore(argv[0])
    if not imports:
        return Check("kernel", False, pick(lang, f"its Python ({argv[0]}) does not import this course's mmcore: {said}",
                                           f"এর Python ({argv[0]}) এই কোর্সের mmcore ইমপোর্ট করে না: {said}"), fix)
    return Check("kernel", True, f"{display}: {argv[0]}")


def _checkpoint_cards(directory: Path) -> list[Path]:
    """The cards (``*.json``) in ``directory`` that record a checkpoint's SHA-256, sorted by name."""
    cards = []
    for path in sorted(directory.glob("*.json")):
        try:
            if "sha256" in json.loads(path.read_text(encoding="utf-8")):
                cards.append(path)
        except (OSError, ValueError):
            cards.append(path)  # an unreadable card is reported by check_checkpoints
    return cards


def check_checkpoints(lang: str = "en", directory: str | os.PathLike | None = None) -> Check:
    """Every checkpoint whose card records a SHA-256 is there and has that SHA-256 (the list is read from the folder:
    a checkpoint added later is checked too)."""
    from mmcore.weights import sha256_file

    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    cards = _checkpoint_cards(directory) if directory.is_dir() else []
    if not cards:
        return Check("checkpoints", False, pick(lang, f"no checkpoint cards in {directory}",
                                                f"{directory}-এ কোনো চেকপয়েন্ট কার্ড নেই"),
                     pick(lang, "get the whole course folder again (`git clone` or the course's zip file): "
                                "data/checkpoints is part of it",
                          "পুরো কোর্স ফোল্ডারটি আবার নামান (`git clone` বা কোর্সের zip ফাইল): data/checkpoints এর অংশ"))
    missing, corrupt, good = [], [], []
    for card in cards:
        tensors = card.with_suffix(".safetensors")
        try:
            expected = json.loads(card.read_text(encoding="utf-8"))["sha256"]
        except (OSError, ValueError, KeyError):
            corrupt.append(card.name)
            continue
        if not tensors.is_file():
            missing.append(tensors.name)
        elif sha256_file(tensors) != expected:
            corrupt.append(tensors.name)
        else:
            good.append(tensors.stem)
    if not missing and not corrupt:
        return Check("checkpoints", True, pick(lang, f"{len(good)} SHA-256 ok: {', '.join(good)}",
                                               f"{len(good)}টির SHA-256 ঠিক: {', '.join(good)}"))
    found = []
    if missing:
        found.append(pick(lang, f"missing: {', '.join(missing)}", f"নেই: {', '.join(missing)}"))
    if corrupt:
        found.append(pick(lang, f"SHA-256 differs from the card (corrupt or replaced): {', '.join(corrupt)}",
                          f"SHA-256 কার্ডের সঙ্গে মেলে না (নষ্ট বা বদলে যাওয়া): {', '.join(corrupt)}"))
    fix = pick(lang, "restore the shipped files: `git checkout data/checkpoints` (in a git clone), or get the course "
                     "folder again;\nretraining them yourself: `make checkpoints` (about four hours on 2 cores; shapes-dalle needs a GPU)",
               "কোর্সের সঙ্গে দেওয়া ফাইলগুলো ফিরিয়ে আনুন: `git checkout data/checkpoints` (git clone-এ), অথবা "
               "কোর্স ফোল্ডারটি আবার নামান;\nনিজে আবার প্রশিক্ষণ দিতে চাইলে: `make checkpoints` (২ কোরে প্রায় চার ঘণ্টা; shapes-dalle-এর জন্য GPU লাগে)")
    return Check("checkpoints", False, "; ".join(found), fix)


def check_cache(lang: str = "en") -> Check:
    """mmcore's cache folder can be created, and a file written into it and removed again."""
    from mmcore.weights import default_cache_dir

    folder = default_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".preflight-", delete=True) as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        return Check("cache", False, pick(lang, f"{folder} is not writable ({reason})",
                                          f"{folder}-এ লেখা যায় না ({reason})"),
                     pick(lang, "point MMCORE_CACHE at a folder you can write to, e.g. "
                                "`export MMCORE_CACHE=$HOME/mmcore-cache`\n(Windows: `set MMCORE_CACHE=%USERPROFILE%"
                                "\\mmcore-cache`), or make the folder writable",
                          "MMCORE_CACHE-কে এমন একটি ফোল্ডারে দিন যেখানে আপনি লিখতে পারেন, যেমন "
                          "`export MMCORE_CACHE=$HOME/mmcore-cache`\n(Windows: `set MMCORE_CACHE=%USERPROFILE%"
                          "\\mmcore-cache`), অথবা ফোল্ডারটিতে লেখার অনুমতি দিন"))
    return Check("cache", True, str(folder))


def check_jupyterlab(lang: str = "en") -> Check:
    """JupyterLab MIN_JUPYTERLAB or newer is installed."""
    need = ".".join(map(str, MIN_JUPYTERLAB))
    try:
        version = _dist_version("jupyterlab")
    except importlib.metadata.PackageNotFoundError:
        return Check("jupyterlab", False, pick(lang, "not installed", "ইনস্টল করা নেই"),
                     pick(lang, f"{_install_course(lang)} (or `pip install \"jupyterlab>={need}\"`)",
                          f"{_install_course(lang)} (অথবা `pip install \"jupyterlab>={need}\"`)"))
    if _version_tuple(version)[:2] < MIN_JUPYTERLAB:
        return Check("jupyterlab", False, pick(lang, f"{version} is too old (the course needs {need} or newer)",
                                               f"{version} পুরোনো (কোর্সের জন্য {need} বা নতুন লাগবে)"),
                     pick(lang, f"upgrade it: `pip install -U \"jupyterlab>={need}\"` (or `make lab`)",
                          f"হালনাগাদ করুন: `pip install -U \"jupyterlab>={need}\"` (অথবা `make lab`)"))
    return Check("jupyterlab", True, version)


#: Every check, in the order the report lists them: key -> function(lang) -> Check.
CHECKS: dict[str, Callable[[str], Check]] = {
    "python": check_python,
    "torch": check_torch,
    "font": check_font,
    "kernel": check_kernel,
    "checkpoints": check_checkpoints,
    "cache": check_cache,
    "jupyterlab": check_jupyterlab,
}


def run_checks(lang: str = "en", only: Sequence[str] | None = None) -> Report:
    """Run every check (or the ``only`` ones) and return the :class:`Report` in ``lang`` ("en" or "bn").

    A check that cannot even run (a package it needs is missing) is reported as failed with the install fix; it never
    stops the other checks."""
    check_lang(lang)
    keys = list(CHECKS) if only is None else list(only)
    unknown = [k for k in keys if k not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; the checks are {list(CHECKS)}")
    start = time.perf_counter()
    report = Report(lang)
    for key in keys:
        try:
            report.checks.append(CHECKS[key](lang))
        except ImportError as error:  # e.g. the checkpoint check needs PyTorch (mmcore.weights)
            report.checks.append(Check(key, False, pick(lang, f"could not run: {error}", f"চালানো গেল না: {error}"),
                                       _install_course(lang)))
    report.seconds = time.perf_counter() - start
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mmcore.preflight [--lang bn]``: print the report; exit status 0 when all is well, else 1."""
    parser = argparse.ArgumentParser(prog="python -m mmcore.preflight", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lang", default=os.environ.get("COURSE_LANG", "en"), choices=["en", "bn"],
                        help="the report's language (default: $COURSE_LANG, else en)")
    parser.add_argument("--only", nargs="+", choices=list(CHECKS), help="run only these checks")
    args = parser.parse_args(argv)
    report = run_checks(args.lang, only=args.only)
    print(report, flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
