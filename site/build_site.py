"""Build the course website: ``python site/build_site.py [--out build/site]`` (what ``make site`` runs, in .venv-site).

1. Stage the sources in ``build/site-src``: the committed notebooks (lessons and solutions, both languages, the two
   start pages), the glossary, both READMEs and the instructors' guide, at the same paths as in the repository, so that every
   relative link between them works on the website as it does on GitHub and in JupyterLab; and the home page
   (``site/index.md`` with the table of contents generated from the lessons present).
2. Run Sphinx (configuration: ``site/conf.py``) with warnings as errors: an internal reference Sphinx cannot resolve
   fails the build. Notebooks are never executed.
3. Check every relative link and image of the built HTML (:func:`check_internal_links`): the target file exists and,
   for ``page.html#anchor``, the anchor does too. External links are not checked (no internet where CI runs).
4. Give every figure of a notebook its alt text (:func:`add_alt_text`): the ``alt`` the lesson stored with the figure,
   in the page's language, where the HTML would otherwise carry the image's file name.
5. Print the site's size and how long the build took.

Standard library only until Sphinx is called, so that the tests can import the staging and link-checking functions
from the course's own environment.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import html
import html.parser
import json
import re
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"

# What the website shows, as (glob, relative to the repository) -> staged at the same path.
SOURCES = ["README.md", "README.bn.md", "lessons/start-en.ipynb", "lessons/start-bn.ipynb", "lessons/glossary.md",
           "lessons/en/*.ipynb", "lessons/bn/*.ipynb", "solutions/en/*.ipynb", "solutions/bn/*.ipynb",
           "instructors/*.md"]
# Fonts bundled with the site when the build machine has them (Noto: SIL Open Font License); the CSS falls back to
# the reader's own Bengali fonts otherwise.
BENGALI_FONT_FILES = {
    "NotoSansBengali-Regular.ttf": 400,
    "NotoSansBengali-Bold.ttf": 700,
}
FONT_DIRS = ["/usr/share/fonts", "/usr/local/share/fonts", "~/.fonts", "~/.local/share/fonts", "/Library/Fonts",
             "~/Library/Fonts"]


def stage(src: Path) -> list[str]:
    """Copy the website's sources into ``src`` (emptied first) and write its home page; returns the staged paths."""
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    staged = []
    for pattern in SOURCES:
        for path in sorted(ROOT.glob(pattern)):
            rel = path.relative_to(ROOT)
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".ipynb":
                (src / rel).write_text(for_the_site(path.read_text(encoding="utf-8")), encoding="utf-8")
            else:
                shutil.copy2(path, src / rel)
            staged.append(rel.as_posix())
    (src / "index.md").write_text(home_page(staged), encoding="utf-8")
    bundle_fonts(src / "_fonts")
    return staged


def for_the_site(notebook_json: str) -> str:
    """A committed notebook as the site shows it: the same cells and outputs; only its code is highlighted as IPython
    (the Colab set-up cell's ``!pip install`` lines are IPython, not Python, and would fail Pygments' Python lexer)."""
    notebook = json.loads(notebook_json)
    notebook.setdefault("metadata", {}).setdefault("language_info", {})["pygments_lexer"] = "ipython3"
    return json.dumps(notebook, ensure_ascii=False, indent=1)


def _lesson_pages(staged: list[str], folder: str) -> list[str]:
    return [p.removesuffix(".ipynb") for p in staged if p.startswith(folder) and p.endswith(".ipynb")]


def home_page(staged: list[str]) -> str:
    """site/index.md followed by the site's table of contents (hidden: the theme shows it in the sidebar)."""
    sections = [
        ("English: lessons", ["lessons/start-en"] + _lesson_pages(staged, "lessons/en/")),
        ("English: solutions", _lesson_pages(staged, "solutions/en/")),
        ("বাংলা: পাঠ", ["lessons/start-bn"] + _lesson_pages(staged, "lessons/bn/")),
        ("বাংলা: সমাধান", _lesson_pages(staged, "solutions/bn/")),
        ("Reference · সহায়িকা", ["lessons/glossary", "README", "README.bn"]),
        ("For instructors · প্রশিক্ষকদের জন্য",
         [p.removesuffix(".md") for p in staged if p.startswith("instructors/")]),
    ]
    text = (SITE / "index.md").read_text(encoding="utf-8").rstrip() + "\n"
    for caption, pages in sections:
        if pages:
            text += f"\n```{{toctree}}\n:caption: {caption}\n:hidden:\n\n" + "\n".join(pages) + "\n```\n"
    return text


def find_font(name: str) -> Path | None:
    """The first file called ``name`` in the usual font folders, or None."""
    for folder in FONT_DIRS:
        folder = Path(folder).expanduser()
        if folder.is_dir():
            for path in folder.rglob(name):
                return path
    return None


def bundle_fonts(out: Path) -> list[str]:
    """Copy the Bengali font files found on this machine into ``out`` with a ``fonts.css`` declaring them as
    "Course Bengali" (readers' own fonts come first: ``local()``); returns the files bundled (none: no fonts.css)."""
    faces, bundled = [], []
    for name, weight in BENGALI_FONT_FILES.items():
        path = find_font(name)
        if path is None:
            continue
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out / name)
        bundled.append(name)
        family = "Noto Sans Bengali" + (" Bold" if weight == 700 else "")
        faces.append(f'@font-face {{\n  font-family: "Course Bengali";\n  font-weight: {weight};\n'
                     f'  src: local("{family}"), url("{name}") format("truetype");\n'
                     "  unicode-range: U+0980-09FF, U+200C-200D, U+25CC;  /* fetched only for Bengali text */\n}\n")
    if faces:
        (out / "fonts.css").write_text("/* Generated by site/build_site.py. */\n" + "".join(faces), encoding="utf-8")
    return bundled


# ------------------------------------------------------------------------------------------------- link check


class _Links(html.parser.HTMLParser):
    """Collects the ids of a page and the URLs it links to (href and src)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id", "name"):
                self.ids.add(value)
            elif (name == "href" and tag in ("a", "link", "area")) or (name == "src" and tag in ("img", "script",
                                                                                                  "source", "iframe")):
                self.urls.append(value)


def _is_external(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return bool(parts.scheme or parts.netloc) or url.startswith("//")


def check_internal_links(out: Path) -> list[str]:
    """Every broken relative link or image in the HTML under ``out``: ``"page.html: target (why)"``; [] when all good.

    A relative URL must name a file under ``out`` (a folder counts when it holds index.html); ``#anchor`` must be an
    id (or name) on the target page. Absolute URLs (http, https, mailto, data, javascript) are not checked."""
    pages: dict[Path, _Links] = {}
    for page in sorted(out.rglob("*.html")):
        if page.relative_to(out).parts[0] == "_static":
            continue  # the theme's Jinja templates (webpack-macros.html) land there; they are not pages
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8", errors="replace"))
        pages[page.resolve()] = parser
    broken = []
    for page, links in pages.items():
        for url in links.urls:
            if _is_external(url) or not url.strip():
                continue
            parts = urllib.parse.urlsplit(url)
            target = page if not parts.path else (page.parent / urllib.parse.unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / "index.html"
            where = f"{page.relative_to(out.resolve())}: {url}"
            if not target.is_relative_to(out.resolve()):
                broken.append(f"{where} (outside the site)")
            elif not target.is_file():
                broken.append(f"{where} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if urllib.parse.unquote(parts.fragment) not in ids:
                    broken.append(f"{where} (no anchor #{parts.fragment})")
    return broken


def figure_alt_texts(src: Path) -> dict[str, str]:
    """SHA-256 of each figure's bytes (the name Sphinx's notebook builder gives its image file) -> the ``alt`` text the
    notebook stored with it (:func:`mmcore.plot.setup_notebook`), over every staged notebook."""
    found: dict[str, str] = {}
    for notebook in src.rglob("*.ipynb"):
        for cell in json.loads(notebook.read_text(encoding="utf-8")).get("cells", []):
            for output in cell.get("outputs", []):
                for mime, data in output.get("data", {}).items():
                    alt = output.get("metadata", {}).get(mime, {}).get("alt")
                    if mime.startswith("image/") and alt and mime != "image/svg+xml":
                        raw = base64.b64decode(data if isinstance(data, str) else "".join(data))
                        found[hashlib.sha256(raw).hexdigest()] = alt
    return found


_IMG_ALT = re.compile(r'(<img\b[^>]*?\balt=")[^"]*?_images/([0-9a-f]{64})\.\w+(")')


def add_alt_text(out: Path, alts: dict[str, str]) -> int:
    """Put each figure's alt text where the built HTML has its file name; returns how many images got one."""
    count = 0

    def replace(match: re.Match) -> str:
        nonlocal count
        alt = alts.get(match.group(2))
        if alt is None:
            return match.group(0)
        count += 1
        return f"{match.group(1)}{html.escape(alt, quote=True)}{match.group(3)}"

    for page in out.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        new = _IMG_ALT.sub(replace, text)
        if new != text:
            page.write_text(new, encoding="utf-8")
    return count


def folder_size(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build(out: Path, src: Path, jobs: str = "1") -> dict:
    """Stage, run Sphinx (warnings are errors), check the links; returns {"seconds", "bytes", "pages", "broken"}."""
    start = time.perf_counter()
    stage(src)
    if out.exists():
        shutil.rmtree(out)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-j", jobs, "-c", str(SITE),
               "-d", str(src.parent / (src.name + "-doctrees")), str(src), str(out)]
    subprocess.run(command, check=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    add_alt_text(out, figure_alt_texts(src))
    broken = check_internal_links(out)
    return {"seconds": time.perf_counter() - start, "bytes": folder_size(out),
            "pages": len(list(out.rglob("*.html"))), "broken": broken}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="the built site (default build/site)")
    parser.add_argument("--src", type=Path, default=ROOT / "build" / "site-src", help="the staged sources")
    parser.add_argument("--jobs", default="1", help="Sphinx's parallel jobs (default 1; 'auto' for every core)")
    args = parser.parse_args(argv)
    try:
        result = build(args.out, args.src, args.jobs)
    except subprocess.CalledProcessError as error:
        print(f"site: Sphinx failed (exit {error.returncode}); the warnings above say where", file=sys.stderr)
        return 1
    for line in result["broken"]:
        print(f"broken link: {line}", file=sys.stderr)
    fonts = "bundled Noto Sans Bengali" if (args.out / "_static" / "fonts.css").is_file() else \
        "no Bengali font bundled (none found on this machine; readers' own fonts are used)"
    print(f"site: {result['pages']} pages, {result['bytes'] / 1e6:.1f} MB, built in {result['seconds']:.0f} s, "
          f"{len(result['broken'])} broken internal links; {fonts} -> {args.out}/index.html")
    return 1 if result["broken"] else 0


if __name__ == "__main__":
    sys.exit(main())
