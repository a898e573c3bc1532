"""The course website (`make site`, site/): every lesson and solution in both languages with its committed outputs and
a switch to its twin, Bengali-capable fonts, no execution, no broken internal link; and the link checker itself."""
import importlib.util
import json
import re
from html import unescape
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):
    """Import a file of site/ under its own name (tests/test_course.py imports lessons/build.py as `build`)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


site_build = _load("course_site_build", ROOT / "site" / "build_site.py")  # standard library only until it calls Sphinx
twins = _load("course_site_twins", ROOT / "site" / "twins.py")

NOTEBOOKS = sorted(p.relative_to(ROOT).as_posix() for pattern in ("lessons/en/*.ipynb", "lessons/bn/*.ipynb",
                                                                   "solutions/en/*.ipynb", "solutions/bn/*.ipynb")
                   for p in ROOT.glob(pattern))


def test_every_lesson_and_solution_has_its_twin_on_the_site():
    assert len(NOTEBOOKS) >= 32
    for path in NOTEBOOKS:
        page = path.removesuffix(".ipynb")
        twin = twins.twin_of(page)
        assert (ROOT / f"{twin}.ipynb").is_file(), (page, twin)
        assert twins.twin_of(twin) == page
        assert twins.page_language(page) == ("en" if "/en/" in path else "bn")
    assert twins.twin_of("lessons/start-bn") == "lessons/start-en"
    assert twins.twin_of("lessons/glossary") is None and twins.page_language("lessons/glossary") is None


def test_staging_copies_every_page_and_lists_it_in_the_table_of_contents(tmp_path):
    staged = site_build.stage(tmp_path / "src")
    assert set(NOTEBOOKS) <= set(staged)
    assert {"README.md", "README.bn.md", "lessons/glossary.md", "lessons/start-en.ipynb"} <= set(staged)
    home = (tmp_path / "src" / "index.md").read_text(encoding="utf-8")
    toc = set(re.findall(r"^(?:lessons|solutions)/\S+$", home, re.M))
    assert {p.removesuffix(".ipynb") for p in NOTEBOOKS} <= toc
    # the staged notebooks are the committed ones: same cells, same outputs (the site never re-executes them)
    for path in NOTEBOOKS:
        committed = json.loads((ROOT / path).read_text(encoding="utf-8"))
        shown = json.loads((tmp_path / "src" / path).read_text(encoding="utf-8"))
        assert shown["cells"] == committed["cells"]


def test_the_page_styles_name_a_bengali_font():
    css = (ROOT / "site" / "_static" / "course.css").read_text(encoding="utf-8")
    assert '"Noto Sans Bengali"' in css and "--pst-font-family-base" in css


def test_execution_is_off_and_the_repository_comes_from_pyproject():
    conf = (ROOT / "site" / "conf.py").read_text(encoding="utf-8")
    assert re.search(r'^nb_execution_mode = "off"', conf, re.M)
    assert 'tomllib.load(f)["project"]["urls"]["Repository"]' in conf


def test_readme_links_to_the_published_site():
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]["Repository"]
    owner, name = repository.removeprefix("https://github.com/").split("/")
    pages = f"https://{owner}.github.io/{name}/"  # GitHub Pages of the repository
    for readme in ("README.md", "README.bn.md"):
        assert pages in (ROOT / readme).read_text(encoding="utf-8"), readme


# ------------------------------------------------------------------------------------------------- link checker


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def test_link_checker_finds_missing_pages_anchors_and_images(tmp_path):
    _write(tmp_path / "index.html", '<a href="lessons/a.html#goals">a</a> <a href="https://example.org/x">ext</a>'
                                    '<a href="#top" id="top">top</a> <img src="_images/ok.png">'
                                    '<a href="lessons/">l</a>')
    _write(tmp_path / "lessons" / "a.html", '<h2 id="goals">Goals</h2><a href="../index.html">home</a>')
    _write(tmp_path / "lessons" / "index.html", "<p>lessons</p>")
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "ok.png").write_bytes(b"png")
    assert site_build.check_internal_links(tmp_path) == []

    _write(tmp_path / "lessons" / "b.html", '<a href="a.html#no-such-anchor">x</a><img src="../_images/gone.png">'
                                            '<a href="c.html">c</a><a href="../../outside.html">o</a>')
    broken = site_build.check_internal_links(tmp_path)
    assert broken == ["lessons/b.html: a.html#no-such-anchor (no anchor #no-such-anchor)",
                      "lessons/b.html: ../_images/gone.png (no such file)",
                      "lessons/b.html: c.html (no such file)",
                      "lessons/b.html: ../../outside.html (outside the site)"]


# ------------------------------------------------------------------------------------------------- the real build


@pytest.fixture(scope="module")
def built_site():
    """`make site` once (its own venv, .venv-site; about 20 s after the first set-up): the built folder."""
    done = subprocess.run(["make", "-s", "site"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "0 broken internal links" in done.stdout
    print(done.stdout.strip().splitlines()[-1])  # pages, size, build time
    return ROOT / "build" / "site"


@pytest.mark.slow
def test_make_site_builds_every_page_with_its_language_switch(built_site):
    assert (built_site / "index.html").is_file() and (built_site / "lessons" / "glossary.html").is_file()
    for path in NOTEBOOKS + ["lessons/start-en.ipynb", "lessons/start-bn.ipynb"]:
        page = path.removesuffix(".ipynb")
        html = (built_site / f"{page}.html").read_text(encoding="utf-8")
        lang = twins.page_language(page)
        assert f'<html lang="{lang}"' in html, page
        twin = Path(twins.twin_of(page)).name
        other = "bn" if lang == "en" else "en"
        assert re.search(rf'<nav class="mm-lang-switch"[^>]*>.*href="(?:\.\./{other}/)?{re.escape(twin)}\.html" '
                         rf'hreflang="{other}"', html), page
    assert "Noto Sans Bengali" in (built_site / "_static" / "course.css").read_text(encoding="utf-8")


@pytest.mark.slow
def test_every_figure_on_the_site_has_its_alt_text(built_site):
    """The notebooks' figures keep the alt text the lesson stored (in the page's language), not a file name."""
    for path in ("lessons/bn/08-teach-clip-bengali.html", "lessons/en/01-clip-zero-shot.html"):
        page = (built_site / path).read_text(encoding="utf-8")
        alts = [unescape(a) for a in re.findall(r'<img [^>]*?alt="([^"]*)"[^>]*src="\.\./\.\./_images/', page)]
        alts += [unescape(a) for a in re.findall(r'<img [^>]*?src="\.\./\.\./_images/[^"]*"[^>]*alt="([^"]*)"', page)]
        assert alts and not [a for a in alts if "_images/" in a], path
        opening = ("চিত্র", "নকশা") if "/bn/" in path else ("Figure", "Diagram")
        assert all(a.startswith(opening) for a in alts), (path, alts[:3])


@pytest.mark.slow
def test_the_site_shows_the_committed_outputs(built_site):
    for path in ("lessons/bn/01-clip-zero-shot.ipynb", "lessons/en/03-vqgan.ipynb"):
        notebook = json.loads((ROOT / path).read_text(encoding="utf-8"))
        html = (built_site / path.replace(".ipynb", ".html")).read_text(encoding="utf-8")
        images = sum(1 for cell in notebook["cells"] if cell["cell_type"] == "code" for output in cell["outputs"]
                     if any(k.startswith("image/") for k in output.get("data", {})))
        assert images > 0
        assert len(re.findall(r'<img [^>]*src="\.\./\.\./_images/', html)) >= images, path
        printed = [line.strip() for cell in notebook["cells"] if cell["cell_type"] == "code"
                   for output in cell["outputs"] if output.get("output_type") == "stream"
                   for line in "".join(output["text"]).splitlines() if len(line.strip()) > 20 and "<" not in line]
        text = unescape(html)
        assert printed and all(line in text for line in printed[:5]), path


def test_workshop_guide_is_in_both_languages_and_on_the_site():
    en = (ROOT / "instructors" / "README.md").read_text(encoding="utf-8")
    bn = (ROOT / "instructors" / "README.bn.md").read_text(encoding="utf-8")
    outline = lambda t: re.findall(r"^(#{1,6}) ", t, re.M)
    rows = lambda t: [line for line in t.splitlines() if line.startswith("|") and not line.startswith("| ---")]
    assert outline(en) == outline(bn) and len(rows(en)) == len(rows(bn))
    assert "README.bn.md" in en and "README.md" in bn
    for lesson in sorted(p.stem for p in (ROOT / "lessons" / "en").glob("*.ipynb")):  # every lesson has its row
        assert f"lessons/en/{lesson}.ipynb" in en and f"lessons/bn/{lesson}.ipynb" in bn, lesson
    assert twins.twin_of("instructors/README") == "instructors/README.bn"
