"""The course's structure: bilingual twins with identical code, clean committed notebooks, one set of
dependencies for pip and conda, and the README's commands being the ones CI runs."""
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lessons"))
import build  # noqa: E402  (lessons/build.py)

KINDS = ("lessons", "solutions")
BENGALI = re.compile(r"[\u0980-\u09FF]")
LETTER = re.compile(r"[A-Za-z\u0980-\u09FF]")


def notebooks(kind: str, lang: str) -> dict[str, Path]:
    return {p.name: p for p in sorted((ROOT / kind / lang).glob("*.ipynb"))}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def cells(nb: dict, kind: str) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == kind]


ALL = [p for kind in KINDS for lang in build.LANGS for p in notebooks(kind, lang).values()]


@pytest.mark.parametrize("kind", KINDS)
def test_every_notebook_exists_in_both_languages(kind):
    en, bn = notebooks(kind, "en"), notebooks(kind, "bn")
    assert en, f"{kind}/en has no notebooks"
    assert set(en) == set(bn), f"only in one language: {sorted(set(en) ^ set(bn))}"


def test_every_lesson_has_solutions():
    lessons = {n[:2] for n in notebooks("lessons", "en")}
    solutions = {n[:2] for n in notebooks("solutions", "en")}
    assert lessons == solutions


def shared_code(nb: dict) -> list[str]:
    """The code cells except the ``parameters`` cell."""
    return ["".join(c["source"]) for c in nb["cells"]
            if c["cell_type"] == "code" and "parameters" not in c.get("metadata", {}).get("tags", [])]


@pytest.mark.parametrize("kind", KINDS)
def test_code_cells_are_identical_in_both_languages_but_the_parameters_cell(kind):
    for name, en in notebooks(kind, "en").items():
        bn = notebooks(kind, "bn")[name]
        assert shared_code(load(en)) == shared_code(load(bn)), f"{kind}/{name}: code differs between en and bn"
        for lang, path in (("en", en), ("bn", bn)):
            params = [c for c in load(path)["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
            assert len(params) == 1, f"{kind}/{lang}/{name}: expected one parameters cell, found {len(params)}"
            first_code = [c for c in load(path)["cells"] if c["cell_type"] == "code"][:2]
            assert first_code[0] is not None and "parameters" in first_code[0].get("metadata", {}).get("tags", []) \
                and "[LANG]" in "".join(first_code[1]["source"]), f"{kind}/{lang}/{name}: LANG first, then the set-up"
            assert re.search(rf'^LANG = "{lang}"$', "".join(params[0]["source"]), re.M), f"{kind}/{lang}/{name}"


BN_DIGITS = str.maketrans("০১২৩৪৫৬৭৮৯", "0123456789")


def heading_outline(nb: dict) -> list[tuple[int, str | None]]:
    """(level, section number or None) of every markdown heading: "## 3. Zero-shot" and "## ৩. জিরো-শট" -> (2, "3")."""
    outline = []
    for source in cells(nb, "markdown"):
        for level, text in re.findall(r"^(#{1,6}) (.*)$", source, re.M):
            number = re.match(r"([0-9০-৯]+(?:\.[0-9০-৯]+)*)\.? ", text)
            outline.append((len(level), number.group(1).translate(BN_DIGITS) if number else None))
    return outline


@pytest.mark.parametrize("kind", KINDS)
def test_bengali_twins_have_every_heading_of_the_english_ones(kind):
    """Same section headings, same levels, same numbers (Bengali numerals count), in the same order."""
    for name, en in notebooks(kind, "en").items():
        bn = notebooks(kind, "bn")[name]
        assert heading_outline(load(bn)) == heading_outline(load(en)), f"{kind}/{name}: headings differ"
    assert heading_outline({"cells": [{"cell_type": "markdown", "source": "## ৩. জিরো-শট\n### ছোট"}]}) == [(2, "3"), (3, None)]


@pytest.mark.parametrize("kind", KINDS)
def test_printed_output_follows_the_notebook_language(kind):
    """A Bengali notebook prints Bengali (>= 50 % of the letters; numbers, model names and tensor reprs may stay);
    an English one prints English."""
    from mmcore.lang import bengali_share

    for name, path in notebooks(kind, "bn").items():
        text = build.printed_text(build.nbformat.read(path, as_version=4))
        assert bengali_share(text) >= 0.5, f"{kind}/bn/{name}: {bengali_share(text):.0%} of printed letters are Bengali"
    for name, path in notebooks(kind, "en").items():
        text = build.printed_text(build.nbformat.read(path, as_version=4))
        assert bengali_share(text) < 0.5, f"{kind}/en/{name}: {bengali_share(text):.0%} of printed letters are Bengali"


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_notebook_is_clean_small_and_ran_without_errors(path):
    nb = load(path)
    assert path.stat().st_size < 1_000_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB; keep figures small"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in code), "commit notebooks with the outputs of a full run"
    for c in code:
        assert not any(o.get("output_type") == "error" for o in c["outputs"]), f"stored error in {path.name}"
        assert "execution" not in c["metadata"], "volatile timing metadata: rebuild with lessons/build.py"
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}/{p.name}")
def test_every_figure_has_alt_text_in_the_notebook_language(path):
    """Each figure output carries an ``alt`` description (mmcore.plot.setup_notebook installs it) in the notebook's
    language: what a screen reader reads, and what the course website puts into the image's alt attribute."""
    lang = path.parent.name
    for cell in load(path)["cells"]:
        for out in cell.get("outputs", []):
            for mime in (m for m in out.get("data", {}) if m.startswith("image/")):
                alt = out.get("metadata", {}).get(mime, {}).get("alt", "")
                assert alt, f"{path.name}: a figure without alt text (cell {cell.get('id')})"
                opening = alt.split(":")[0]
                assert opening in (("Figure", "Diagram") if lang == "en" else ("চিত্র", "নকশা")), (path.name, alt[:80])


@pytest.mark.parametrize("kind", KINDS)
def test_bengali_prose_is_really_bengali(kind):
    for name, path in notebooks(kind, "bn").items():
        for text in cells(load(path), "markdown"):
            letters = LETTER.findall(re.sub(r"\(http[^)]*\)|`[^`]*`|\$[^$]*\$", "", text))
            if len(letters) >= 20:
                share = len(BENGALI.findall("".join(letters))) / len(letters)
                assert share > 0.6, f"bn/{name}: a prose cell is mostly not Bengali: {text[:80]!r}"


@pytest.mark.parametrize("kind", KINDS)
def test_notebooks_are_what_the_sources_build(kind):
    """Committed notebooks must match lessons/src (same prose, same code): edit the source, then rebuild."""
    repo = build.repository_url()
    for source in sorted((ROOT / kind / "src").glob("*.md")):
        parsed = build.parse(source.read_text(encoding="utf-8"), source.name)
        for lang in build.LANGS:
            expected = build.to_notebook(parsed, lang, kind, source.stem, repo)
            committed = load(ROOT / kind / lang / f"{source.stem}.ipynb")
            got = [(c["cell_type"], "".join(c["source"])) for c in committed["cells"]]
            assert got == [(c.cell_type, c.source) for c in expected.cells], \
                f"{kind}/{lang}/{source.stem}.ipynb is stale: run `python lessons/build.py --execute {source.stem[:2]}`"


def test_start_pages_are_what_the_sources_build():
    """`make lab` opens lessons/start-<lang>.ipynb: the course map, rebuilt by build.py from the lesson titles."""
    for lang in build.LANGS:
        committed = load(ROOT / "lessons" / f"start-{lang}.ipynb")
        expected = build.start_page(lang)
        assert ["".join(c["source"]) for c in committed["cells"]] == [c.source for c in expected.cells], \
            f"lessons/start-{lang}.ipynb is stale: run `python lessons/build.py`"
        assert committed["metadata"]["kernelspec"]["display_name"] == build.KERNEL_DISPLAY_NAME


def test_lessons_start_with_goals_and_end_with_exercises():
    for name, path in notebooks("lessons", "en").items():
        prose = cells(load(path), "markdown")
        assert "Learning goals" in prose[0] or "Learning goals" in prose[1], name
        assert any("Exercises" in t for t in prose[-3:]), name
    for name, path in notebooks("lessons", "bn").items():
        prose = cells(load(path), "markdown")
        assert "শেখার লক্ষ্য" in prose[0] or "শেখার লক্ষ্য" in prose[1], name
        assert any("অনুশীলনী" in t for t in prose[-3:]), name


def mmcore_names(code: str) -> list[tuple[str, str]]:
    """Every (module, name) a piece of code takes from mmcore: ``from mmcore.m import n`` and ``alias.n`` where
    ``alias`` is an imported mmcore module (``from mmcore import dalle`` or ``import mmcore.dalle as alias``)."""
    import ast

    tree = ast.parse(code)
    aliases, used = {"mmcore": "mmcore"}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mmcore":
            for a in node.names:
                if node.module == "mmcore":
                    aliases[a.asname or a.name] = f"mmcore.{a.name}"  # a submodule (or a top-level function)
                used.append((node.module, a.name))
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "mmcore" and a.asname:
                    aliases[a.asname] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [node.attr], node.value
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                used.append((aliases[base.id], chain[-1]))  # the name read from the module itself
    return used


@pytest.mark.parametrize("kind", KINDS)
def test_lessons_use_only_the_public_api(kind):
    """No private mmcore name (a leading underscore), and from a training module only its training function
    (``train_*``) and config (``*Config``): the helpers a lesson needs live in the module they belong to."""
    problems = []
    for source in sorted((ROOT / kind / "src").glob("*.md")):
        code = "\n".join(c.source for c in build.parse(source.read_text(encoding="utf-8"), source.name)
                         if c.kind == "code")
        code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
        for module, name in mmcore_names(code):
            if name.startswith("_") and not name.startswith("__"):
                problems.append(f"{source.name}: private name {module}.{name}")
            if module.split(".")[-1].startswith("train") and not (name.startswith("train") or name.endswith("Config")):
                problems.append(f"{source.name}: {module}.{name} (a training module's helper)")
    assert not problems, "\n".join(problems)


def test_parser_rejects_a_missing_translation():
    with pytest.raises(ValueError, match="no Bengali twin"):
        build.parse("%% md en\n# Title\n%% code\nprint(1)\n")
    with pytest.raises(ValueError, match="no English twin"):
        build.parse("%% md en\n# A\n%% md bn\n# আ\n%% md bn\n# ই\n")


def test_glossary_terms_are_used_consistently():
    """Bengali notebooks use the glossary's term, never the variants it lists under 'avoid'."""
    rows = [line.split("|")[1:-1] for line in (ROOT / "lessons" / "glossary.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("|") and not line.startswith("| ---") and not line.startswith("| English")]
    assert len(rows) >= 20
    avoid = {w.strip(): row[1].strip() for row in rows for w in row[2].split(",") if w.strip() and w.strip() != "-"}
    for kind in KINDS:
        for name, path in notebooks(kind, "bn").items():
            prose = " ".join(cells(load(path), "markdown"))
            for word, preferred in avoid.items():
                assert word not in prose, f"bn/{name} says {word!r}; the glossary's term is {preferred!r}"


def dependency_names(text: str) -> set[str]:
    text = re.sub(r"#.*", "", text)  # comments
    return {re.split(r"[<>=\[ ;]", d.strip().strip('"'), maxsplit=1)[0].lower() for d in text.split(",") if d.strip()}


CONDA_NAMES = {"pytorch": "torch", "matplotlib-base": "matplotlib", "open-clip-torch": "open_clip_torch"}


def test_environment_yml_has_the_same_packages_as_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    core = dependency_names(re.search(r"^dependencies = \[(.*?)\]", pyproject, re.S | re.M).group(1))
    extras = re.search(r"^\[project\.optional-dependencies\](.*?)^\[", pyproject, re.S | re.M).group(1)
    extras = re.sub(r'"mmcore\[[^\]]*\]"', "", extras)  # test = [..., "mmcore[faiss,parity]"]: extras by reference
    test = set().union(*(dependency_names(m) for m in re.findall(r"^\w+ = \[(.*?)\]", extras, re.S | re.M)))
    env = (ROOT / "environment.yml").read_text(encoding="utf-8").split("dependencies:", 1)[1]
    listed = set()
    for line in env.splitlines():
        m = re.match(r"\s+- ([A-Za-z0-9_.-]+)", line)
        if m and m.group(1) not in {"python", "pip", "pip:", "-e", "font-ttf-noto"}:
            name = m.group(1).lower()
            listed.add(CONDA_NAMES.get(name, name))
    assert core | test == listed


def markdown_outline(text: str) -> list[int]:
    """Heading levels of a markdown file, in order (code blocks skipped)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return [len(m) for m in re.findall(r"^(#{1,6}) ", text, re.M)]


def test_bengali_readme_keeps_step_with_the_english_one():
    """README.bn.md is the whole README in Bengali: same sections, same table rows, and every number of the English
    results is in the Bengali one (Bengali numerals count), so a changed result cannot be updated in one file only."""
    en = (ROOT / "README.md").read_text(encoding="utf-8")
    bn = (ROOT / "README.bn.md").read_text(encoding="utf-8")
    assert "README.bn.md" in en and "README.md" in bn
    assert markdown_outline(bn) == markdown_outline(en)
    table_rows = lambda t: [line for line in t.splitlines() if line.startswith("|") and not line.startswith("| ---")]
    assert len(table_rows(bn)) == len(table_rows(en))
    numbers = lambda t: set(re.findall(r"\d+(?:[.,]\d+)*\s?%|\d+\.\d+", t.translate(BN_DIGITS)))
    results = lambda t: t.split("\n## ", 4)[4]  # the results section
    assert not numbers(results(en)) - numbers(results(bn)), numbers(results(en)) - numbers(results(bn))
    assert bengali_share_of(bn) > 0.6


def bengali_share_of(text: str) -> float:
    from mmcore.lang import bengali_share

    return bengali_share(re.sub(r"```.*?```|`[^`]*`|\(http[^)]*\)|\([^)]*\.(?:md|ipynb)\)", "", text, flags=re.S))


def test_readme_gives_the_commands_ci_runs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make test" in readme and "make lab" in readme
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M), ".ci/run must run the README's test command"
    assert re.search(r"^make test-core$", ci, re.M), ".ci/run must check the core-only (Colab) install too"
    assert "make test-core" in readme
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "MMCORE_QUICK=1 $(PY) -m pytest" in makefile


def test_repository_url_is_defined_once():
    """README's Colab links point at the repository named in pyproject.toml."""
    repo = build.repository_url()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"https://colab\.research\.google\.com/github/([^/]+/[^/]+)/", readme)
    assert links and set(links) == {repo.removeprefix("https://github.com/")}
    for path in ALL:
        setup = cells(load(path), "code")[1]  # after the parameters cell
        assert repo in setup


def test_make_checkpoints_runs_the_commands_recorded_in_the_cards():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8").replace("\\\n\t\t", "")
    recipe = makefile.split("checkpoints: $(STAMP)\n", 1)[1].split("\n\n", 1)[0]
    commands = [line.strip().replace("$(PY)", "python") for line in recipe.splitlines()]
    for card in sorted((ROOT / "data" / "checkpoints").glob("*.json")):
        command = json.loads(card.read_text(encoding="utf-8")).get("command")
        if command:
            assert command in commands, f"{card.name}: `make checkpoints` does not run {command!r}"
