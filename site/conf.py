"""Sphinx configuration of the course website (`make site`; site/build_site.py stages the sources and calls Sphinx).

Why Sphinx + MyST-NB (the engine of Jupyter Book 1.x, used directly): MyST-NB renders the committed notebooks with
their stored outputs and never runs them here (``nb_execution_mode = "off"``); Sphinx resolves every internal link
and warns about the ones it cannot, so the build runs with warnings as errors (``-W``); sphinx-book-theme is Jupyter
Book's own theme. Using Sphinx directly, rather than the ``jupyter-book`` wrapper, keeps one configuration file and
lets this file add the language switch between each lesson's English and Bengali twins (below).
"""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the repository
sys.path.insert(0, str(Path(__file__).resolve().parent))
from twins import page_language, twin_of  # noqa: E402  (site/twins.py: which page is which page's translation)

with open(ROOT / "pyproject.toml", "rb") as f:
    REPOSITORY = tomllib.load(f)["project"]["urls"]["Repository"]  # defined once, in pyproject.toml

project = "Multimodal networks from scratch · মাল্টিমোডাল নেটওয়ার্ক, গোড়া থেকে"
author = "the mmcore course"
copyright = "code MIT, lesson text CC BY-SA 4.0"
language = "en"  # the interface language; each Bengali page sets <html lang="bn"> itself (page_context below)

extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
nitpicky = True  # every unresolved internal reference is a warning, and -W makes a warning an error

# --- notebooks: rendered with their committed outputs, never executed
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3  # "#learning-goals"-style anchors, as GitHub and JupyterLab make them
suppress_warnings = ["myst.header"]  # lessons put a level-3 heading under the title inside a cell: fine to read

# --- the page
html_title = "Multimodal networks from scratch"
html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_copy_source = False  # the notebooks are in the repository; the site does not need a second copy
html_show_sourcelink = False
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": "main",
    "use_repository_button": True,
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},  # "open in Colab" on every notebook
    "use_download_button": False,  # it would offer the sources, which the site does not copy (the repository has them)
    "show_toc_level": 2,
    "home_page_in_toc": True,
}


def page_context(app, pagename, templatename, context, doctree):
    """Put a language switch (English · বাংলা) on top of every page that has a twin, and mark each page's language
    (``<html lang="bn">``: browsers then pick a Bengali font and screen readers a Bengali voice)."""
    lang = page_language(pagename)
    if lang is not None:
        context["language"] = lang
    twin = twin_of(pagename)
    if twin is None or twin not in app.env.found_docs or "body" not in context:
        return
    other = "bn" if lang == "en" else "en"
    names = {"en": "English", "bn": "বাংলা"}
    here = f'<span class="mm-lang-current" lang="{lang}" aria-current="page">{names[lang]}</span>'
    href = context["pathto"](twin)
    there = f'<a class="mm-lang-other" href="{href}" hreflang="{other}" lang="{other}">{names[other]}</a>'
    pair = (here, there) if lang == "en" else (there, here)
    context["body"] = (f'<nav class="mm-lang-switch" aria-label="language · ভাষা">{pair[0]} · {pair[1]}</nav>\n'
                       + context["body"])


def setup(app):
    app.connect("html-page-context", page_context)
    fonts = Path(app.srcdir) / "_fonts"
    if (fonts / "fonts.css").is_file():  # site/build_site.py bundles Noto Sans Bengali when the build machine has it
        app.config.html_static_path.append(str(fonts))
        app.add_css_file("fonts.css")
    return {"parallel_read_safe": True}
