"""Which page of the website is which page's translation (standard library only: Sphinx's conf.py and the tests use it).

Page names are Sphinx's document names: paths in the repository without the suffix (``lessons/bn/01-clip-zero-shot``).
"""
from __future__ import annotations

# folder pairs whose files are twins one to one, and single pages that are twins
TWIN_FOLDERS = [("lessons/en/", "lessons/bn/"), ("solutions/en/", "solutions/bn/")]
TWIN_PAGES = [("lessons/start-en", "lessons/start-bn"), ("README", "README.bn"),
              ("instructors/README", "instructors/README.bn")]


def twin_of(pagename: str) -> str | None:
    """The other language's version of a page, or None for a page that has none (the bilingual glossary)."""
    for en, bn in TWIN_FOLDERS:
        if pagename.startswith(en):
            return bn + pagename[len(en):]
        if pagename.startswith(bn):
            return en + pagename[len(bn):]
    for en, bn in TWIN_PAGES:
        if pagename == en:
            return bn
        if pagename == bn:
            return en
    return None


def page_language(pagename: str) -> str | None:
    """"en" or "bn" for a page in one language; None for a bilingual page (the home page, the glossary)."""
    for en, bn in TWIN_FOLDERS:
        if pagename.startswith(en):
            return "en"
        if pagename.startswith(bn):
            return "bn"
    for en, bn in TWIN_PAGES:
        if pagename == en:
            return "en"
        if pagename == bn:
            return "bn"
    return None
