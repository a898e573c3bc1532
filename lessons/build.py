"""Build the course notebooks from their bilingual sources, and optionally execute them.

Each lesson is written once, in ``lessons/src/NN-topic.md`` (solutions in ``solutions/src/``), as a list of
cells separated by marker lines:

    %% md en          English prose (markdown)
    %% md bn          the same prose in Bengali
    %% code           a code cell, shared by both languages

This makes the rule "identical code in both languages" true by construction, and it keeps prose pairs next to
each other so that a translator sees both. The builder writes ``lessons/en/NN-topic.ipynb`` and
``lessons/bn/NN-topic.ipynb``, adds the Colab set-up cell (the repository URL comes from ``pyproject.toml``,
the one place it is defined), and with ``--execute`` runs each notebook in a normal (not quick) run and stores
the outputs without volatile metadata.

    python lessons/build.py                 # write every notebook; outputs are kept where the code is unchanged
    python lessons/build.py --execute 00    # write and execute the notebooks whose name starts with 00
    python lessons/build.py --check 02      # quick-mode run of both twins, nothing written: errors, output language
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
KINDS = ("lessons", "solutions")
LANGS = ("en", "bn")
MARKER = re.compile(r"^%% (md (en|bn)|code)\s*$")


def repository_url() -> str:
    """The course repository's URL, defined once in pyproject.toml ([project.urls] Repository)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'^Repository\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise RuntimeError("pyproject.toml has no [project.urls] Repository = \"...\" line")
    return match.group(1)


@dataclass
class Cell:
    kind: str  # "markdown" or "code"
    lang: str | None  # "en" / "bn" for markdown, None for shared code
    source: str


def parse(text: str, name: str = "<source>") -> list[Cell]:
    """Split a lesson source into cells; every English prose cell must be followed by its Bengali twin."""
    cells: list[Cell] = []
    current: Cell | None = None
    lines: list[str] = []

    def close():
        if current is not None:
            current.source = "\n".join(lines).strip("\n")
            cells.append(current)

    for number, line in enumerate(text.splitlines(), 1):
        match = MARKER.match(line)
        if match:
            close()
            lines = []
            current = Cell("code", None, "") if match.group(1) == "code" else Cell("markdown", match.group(2), "")
        elif current is None and line.strip():
            raise ValueError(f"{name}:{number}: text before the first '%% md en' / '%% code' marker")
        else:
            lines.append(line)
    close()
    for i, cell in enumerate(cells):
        if cell.kind == "markdown" and cell.lang == "en":
            if i + 1 >= len(cells) or cells[i + 1].lang != "bn":
                raise ValueError(f"{name}: English cell #{i} has no Bengali twin right after it")
        if cell.kind == "markdown" and cell.lang == "bn" and (i == 0 or cells[i - 1].lang != "en"):
            raise ValueError(f"{name}: Bengali cell #{i} has no English twin right before it")
        if not cell.source.strip():
            raise ValueError(f"{name}: cell #{i} is empty")
    return cells


COLAB_BADGE = {
    "en": "[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})",
    "bn": "[![Colab-এ খুলুন](https://colab.research.google.com/assets/colab-badge.svg)]({url})",
}
KAGGLE_BADGE = {  # Kaggle opens a notebook from its GitHub address (switch the notebook's Internet on there)
    "en": "[![Open in Kaggle](https://kaggle.com/static/images/open-in-kaggle.svg)]({url})",
    "bn": "[![Kaggle-এ খুলুন](https://kaggle.com/static/images/open-in-kaggle.svg)]({url})",
}

SETUP_CELL = """\
# Set-up: in Google Colab or Kaggle this installs the course (the mmcore package, its data and a Bengali font);
# on your own machine (`make lab`) it does nothing.
# সেট-আপ: Google Colab বা Kaggle-এ এটি কোর্সটি ইনস্টল করে (mmcore প্যাকেজ, তার ডেটা আর একটি বাংলা ফন্ট); নিজের যন্ত্রে কিছু করে না।
import os, sys
course = ("/content/course" if "google.colab" in sys.modules
          else "/kaggle/working/course" if "KAGGLE_KERNEL_RUN_TYPE" in os.environ else None)
if course:
    if not os.path.isdir(course):
        print({{"en": "Installing the course (about a minute) ...", "bn": "কোর্স ইনস্টল হচ্ছে (প্রায় এক মিনিট) ..."}}[LANG])
        !git clone -q --depth 1 {url} {{course}}
        !pip install -q -e {{course}}
        !apt-get -qq install -y fonts-noto-core > /dev/null
    sys.path.insert(0, course)"""


PARAMETERS_CELL = '# The language of everything this notebook prints or draws (papermill\'s "parameters" cell).\nLANG = "{lang}"'


def colab_url(repo: str, kind: str, lang: str, stem: str) -> str:
    path = repo.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/main/{kind}/{lang}/{stem}.ipynb"


def kaggle_url(repo: str, kind: str, lang: str, stem: str) -> str:
    return f"https://kaggle.com/kernels/welcome?src={repo}/blob/main/{kind}/{lang}/{stem}.ipynb"


# The kernel the course registers (`make lab`: ipykernel install --name python3 --display-name ...): a notebook that
# names it exactly is not marked as changed when JupyterLab starts its kernel.
KERNEL_NAME, KERNEL_DISPLAY_NAME = "python3", "Python 3 (mmcore)"


def kernel_language_info() -> dict:
    """The ``language_info`` the course kernel reports (its kernel_info_reply): JupyterLab writes it into a notebook's
    metadata when the kernel starts and marks the notebook modified unless it is already there, equal key for key,
    Python version included. ipykernel builds it from the interpreter it runs in: the course kernel is .venv's
    Python, the one build.py runs in. A student on another Python version still sees the notebook marked modified."""
    from ipykernel.ipkernel import IPythonKernel

    return dict(IPythonKernel.language_info)


def notebook_metadata() -> dict:
    return {"kernelspec": {"display_name": KERNEL_DISPLAY_NAME, "language": "python", "name": KERNEL_NAME},
            "language_info": kernel_language_info()}


def to_notebook(cells: list[Cell], lang: str, kind: str, stem: str, repo: str) -> nbformat.NotebookNode:
    """One language's notebook: its prose, the shared code, a Colab badge, the Colab set-up cell and the
    ``parameters`` cell (``LANG = "en"`` or ``"bn"``), the only code that differs between the twins."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = notebook_metadata()
    picked = [c for c in cells if c.kind == "code" or c.lang == lang]
    first_title = picked[0]
    if first_title.kind != "markdown":
        raise ValueError(f"{stem}: a notebook starts with its title (a markdown cell)")
    badge = (COLAB_BADGE[lang].format(url=colab_url(repo, kind, lang, stem)) + " "
             + KAGGLE_BADGE[lang].format(url=kaggle_url(repo, kind, lang, stem)))
    parameters = nbformat.v4.new_code_cell(PARAMETERS_CELL.format(lang=lang))
    parameters.metadata["tags"] = ["parameters"]  # the one code cell that differs between the twins
    out = [nbformat.v4.new_markdown_cell(first_title.source + "\n\n" + badge), parameters,
           nbformat.v4.new_code_cell(SETUP_CELL.format(url=repo))]
    for cell in picked[1:]:
        make = nbformat.v4.new_markdown_cell if cell.kind == "markdown" else nbformat.v4.new_code_cell
        out.append(make(cell.source))
    for i, cell in enumerate(out):
        cell.id = f"{stem[:2]}-{i:03d}"  # stable ids: small diffs when a lesson is rebuilt
    nb.cells = out
    return nb


def clean(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop volatile metadata (timings, widget state) so a rebuild changes only what changed; language_info is the
    course kernel's own, as JupyterLab would write it (see kernel_language_info)."""
    nb.metadata.pop("widgets", None)
    nb.metadata["language_info"] = kernel_language_info()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 1800, quick: bool = False) -> nbformat.NotebookNode:
    """Run a notebook top to bottom as a student would (a normal run: MMCORE_QUICK unset; ``quick``: set)."""
    from nbclient import NotebookClient

    if quick:
        os.environ["MMCORE_QUICK"] = "1"
    else:
        os.environ.pop("MMCORE_QUICK", None)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def is_parameters(cell: nbformat.NotebookNode) -> bool:
    """Whether ``cell`` is the ``parameters`` cell (``LANG = ...``) that the builder writes."""
    return "parameters" in cell.get("metadata", {}).get("tags", [])


def is_setup(cell: nbformat.NotebookNode) -> bool:
    """Whether ``cell`` is the set-up cell that the builder writes (it does nothing outside Colab and Kaggle)."""
    return cell.cell_type == "code" and cell.source.startswith("# Set-up: in Google Colab")


def keep_outputs(nb: nbformat.NotebookNode, old_path: Path) -> bool:
    """Copy the outputs of the committed notebook when its code cells are exactly the new ones (a prose-only
    change, e.g. a translation fix, needs no re-run; the builder's own parameters and set-up cells may change, they
    print nothing outside Colab). Returns whether it did."""
    if not old_path.exists():
        return False
    old = nbformat.read(old_path, as_version=4)
    builder_cells = lambda cells: [c for c in cells if c.cell_type == "code" and (is_parameters(c) or is_setup(c))]
    lesson_code = lambda cells: [c for c in cells if c.cell_type == "code" and not (is_parameters(c) or is_setup(c))]
    new_code, old_code = lesson_code(nb.cells), lesson_code(old.cells)
    if [c.source for c in new_code] != [c.source for c in old_code] or not all(c.get("execution_count") for c in old_code):
        return False
    for new, previous in zip(new_code, old_code):
        new.outputs, new.execution_count = previous.outputs, previous.execution_count
    for count, cell in enumerate(builder_cells(nb.cells), 1):  # the parameters and set-up cells print nothing here
        cell.outputs, cell.execution_count = [], count
    return True


def printed_text(nb: nbformat.NotebookNode) -> str:
    """What a notebook printed (streams and plain-text results; no figures, no widgets)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out["text"])
            elif "text/plain" in out.get("data", {}) and not any(
                    k.startswith(("image/", "application/vnd.jupyter.widget")) for k in out["data"]):
                parts.append(out["data"]["text/plain"])
    return "\n".join(parts)


def check(kind: str, stem: str) -> bool:
    """Execute both twins in quick mode without writing them; report errors and the language of the printed output
    (a Bengali notebook must print >= 50 % Bengali letters, tests/test_course.py)."""
    from nbclient.exceptions import CellExecutionError

    sys.path.insert(0, str(ROOT))
    from mmcore.lang import bengali_share

    source = ROOT / kind / "src" / f"{stem}.md"
    cells = parse(source.read_text(encoding="utf-8"), str(source))
    ok = True
    for lang in LANGS:
        nb = to_notebook(cells, lang, kind, stem, repository_url())
        try:
            execute(nb, ROOT / kind / lang, quick=True)
        except CellExecutionError as error:
            print(f"FAILED {kind}/{lang}/{stem}:\n{str(error)[-2500:]}")
            ok = False
            continue
        share = bengali_share(printed_text(nb))
        good = share >= 0.5 if lang == "bn" else share < 0.5
        ok &= good
        print(f"{'ok  ' if good else 'LANG'} {kind}/{lang}/{stem}: ran in quick mode; {share:.0%} of the printed letters "
              f"are Bengali")
    return ok


START_TEXT = {
    "en": {
        "title": "# Multimodal networks from scratch: start here",
        "intro": ("Welcome. This page is the course map: every lesson, its worked solutions and the glossary are one "
                  "click away. **What to do first:** open lesson 00 and run its cells from the top with Shift+Enter; "
                  "the kernel is *Python 3 (mmcore)*. Each lesson says at the top what it needs and how long it takes; "
                  "try the exercises at its end before opening the solutions."),
        "header": "| # | lesson | solutions |",
        "solutions": "solutions",
        "more": ("**Also:** the [glossary](glossary.md) (every technical term in both languages) · the "
                 "[README](../README.md) (set-up, results) · **বাংলা:** [এই পাতাটি বাংলায়](start-bn.ipynb) "
                 "(the same lessons in Bengali)."),
    },
    "bn": {
        "title": "# মাল্টিমোডাল নেটওয়ার্ক, গোড়া থেকে: এখান থেকে শুরু করুন",
        "intro": ("স্বাগতম। এই পাতাটি কোর্সের মানচিত্র: প্রতিটি পাঠ, তার সমাধান আর পরিভাষা এখান থেকে এক ক্লিকে খোলা যায়। "
                  "**প্রথমে কী করবেন:** পাঠ ০০ খুলুন আর ওপর থেকে Shift+Enter চেপে সেলগুলো চালান; কার্নেল হলো "
                  "*Python 3 (mmcore)*। প্রতিটি পাঠের শুরুতে লেখা আছে কী জানা দরকার আর কত সময় লাগে; সমাধান খোলার আগে "
                  "পাঠের শেষের অনুশীলনীগুলো নিজে চেষ্টা করুন।"),
        "header": "| # | পাঠ | সমাধান |",
        "solutions": "সমাধান",
        "more": ("**আরও:** [পরিভাষা](glossary.md) (প্রতিটি কারিগরি শব্দ দুই ভাষায়) · [README](../README.bn.md) "
                 "(প্রস্তুতি, ফলাফল) · **English:** [this page in English](start-en.ipynb) (একই পাঠ ইংরেজিতে)।"),
    },
}


def lesson_title(cells: list[Cell], lang: str) -> str:
    """The first heading of a lesson in ``lang``, without its '#' and its number: "CLIP and zero-shot ..."."""
    first = next(c for c in cells if c.kind == "markdown" and c.lang == lang)
    heading = re.search(r"^# (.*)$", first.source, re.M).group(1)
    return re.sub(r"^[0-9০-৯]+ · ", "", heading)


def start_page(lang: str) -> nbformat.NotebookNode:
    """``lessons/start-<lang>.ipynb``: what `make lab` opens: the course map with a link to every lesson, its
    solutions and the glossary, and the switch to the other language."""
    text = START_TEXT[lang]
    rows = [text["header"], "| --- | --- | --- |"]
    for source in sorted((ROOT / "lessons" / "src").glob("*.md")):
        cells = parse(source.read_text(encoding="utf-8"), str(source))
        number = source.stem[:2]
        rows.append(f"| {number} | [{lesson_title(cells, lang)}]({lang}/{source.stem}.ipynb) | "
                    f"[{text['solutions']}](../solutions/{lang}/{source.stem}.ipynb) |")
    nb = nbformat.v4.new_notebook()
    nb.metadata = notebook_metadata()
    nb.cells = [nbformat.v4.new_markdown_cell("\n\n".join([text["title"], text["intro"], "\n".join(rows), text["more"]]))]
    nb.cells[0].id = f"start-{lang}"
    return nb


def build(kind: str, stem: str, run: bool) -> list[Path]:
    source = ROOT / kind / "src" / f"{stem}.md"
    cells = parse(source.read_text(encoding="utf-8"), str(source))
    repo = repository_url()
    written = []
    for lang in LANGS:
        target = ROOT / kind / lang / f"{stem}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nb = to_notebook(cells, lang, kind, stem, repo)
        if run:
            print(f"executing {target.relative_to(ROOT)} ...", flush=True)
            start = time.perf_counter()
            execute(nb, target.parent)
            print(f"executed {target.relative_to(ROOT)} in {time.perf_counter() - start:.0f} s", flush=True)
        elif not keep_outputs(nb, target):
            print(f"{target.relative_to(ROOT)}: code changed, outputs dropped: run with --execute", flush=True)
        nbformat.write(clean(nb), target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("prefixes", nargs="*", help="build only sources whose name starts with one of these")
    parser.add_argument("--execute", action="store_true", help="run each notebook and store its outputs")
    parser.add_argument("--kind", choices=KINDS, help="build only lessons or only solutions")
    parser.add_argument("--check", action="store_true",
                        help="only execute both twins in quick mode (nothing is written): errors and output language")
    args = parser.parse_args(argv)
    failed = False
    if not args.check:
        for lang in LANGS:  # the start pages list every lesson: rewrite them whatever else is built
            target = ROOT / "lessons" / f"start-{lang}.ipynb"
            nbformat.write(start_page(lang), target)
            print(f"wrote {target.relative_to(ROOT)}")
    for kind in [args.kind] if args.kind else KINDS:
        for source in sorted((ROOT / kind / "src").glob("*.md")):
            if args.prefixes and not any(source.stem.startswith(p) for p in args.prefixes):
                continue
            if args.check:
                failed |= not check(kind, source.stem)
                continue
            for path in build(kind, source.stem, args.execute):
                print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
