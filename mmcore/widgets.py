"""Interactive demos for the lessons (ipywidgets). A leaf module: notebooks import it, models never do.

Each widget keeps its logic in a plain callback (for search: :func:`mmcore.search.search_results`), so that
tests can drive it without a browser: ``box = search_box(index); box.run("a red star")`` does what typing the
query and pressing Enter does.
"""
from __future__ import annotations

import html
import io
from typing import Any

import ipywidgets as widgets
from PIL import Image

from .search import query_is_cut, search_results

LABELS = {
    "en": {"placeholder": "type a query, e.g. a red star", "button": "Search", "empty": "Type a query and press Enter.",
           "none": "No results.", "cut": "(the query was cut to the length the model reads)"},
    "bn": {"placeholder": "কিছু লিখুন, যেমন একটি লাল তারা", "button": "খুঁজুন", "empty": "কিছু লিখে Enter চাপুন।",
           "none": "কিছু পাওয়া যায়নি।", "cut": "(মডেল যতটা পড়ে, কোয়েরিটি ততটুকু কেটে নেওয়া হয়েছে)"},
}
# Lessons share their code between the English and the Bengali notebook, so they use both languages at once.
LABELS["both"] = {key: f"{LABELS['en'][key]} · {LABELS['bn'][key]}" for key in LABELS["en"]}


def _png(image: Image.Image, size: int) -> bytes:
    thumb = image.convert("RGB").resize((size, size), Image.NEAREST if image.width <= size else Image.BICUBIC)
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG")
    return buffer.getvalue()


def result_card(image: Image.Image, caption: str, score: float, size: int = 96) -> widgets.VBox:
    """One search hit: a thumbnail, its caption and its cosine similarity."""
    picture = widgets.Image(value=_png(image, size), format="png", width=size, height=size)
    text = widgets.HTML(f"<div style='width:{size}px;font-size:11px;line-height:1.2'>{html.escape(caption)}"
                        f"<br><b>{score:.3f}</b></div>")
    return widgets.VBox([picture, text], layout=widgets.Layout(margin="2px"))


class SearchBox(widgets.VBox):
    """A text box, a button and a row of result cards; Enter or the button runs the search."""

    def __init__(self, index: Any, k: int = 8, lang: str = "both", thumb: int = 96):
        if lang not in LABELS:
            raise ValueError(f"lang must be one of {sorted(LABELS)}; got {lang!r}")
        self.index, self.k, self.thumb, self.labels = index, k, thumb, LABELS[lang]
        self.query = widgets.Text(placeholder=self.labels["placeholder"], continuous_update=False,
                                  layout=widgets.Layout(width="420px"))
        self.button = widgets.Button(description=self.labels["button"], button_style="primary")
        self.status = widgets.HTML(self.labels["empty"])
        self.results = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.last: list[tuple[Image.Image, str, float]] = []  # the hits on show
        self.query.observe(lambda change: self._search(change["new"]), names="value")
        self.button.on_click(lambda _: self._search(self.query.value))
        super().__init__([widgets.HBox([self.query, self.button]), self.status, self.results])

    def run(self, text: str) -> list[tuple[Image.Image, str, float]]:
        """Type ``text`` into the box and search, as a user would; returns the hits (image, caption, score)."""
        if self.query.value != text:
            self.query.value = text  # the observer runs the search
        else:
            self._search(text)
        return self.last

    def _search(self, text: str) -> None:
        hits = search_results(self.index, text, k=self.k)
        self.results.children = [result_card(image, caption, score, self.thumb) for image, caption, score in hits]
        self.status.value = (html.escape(f"“{text.strip()}”: {len(hits)}") if hits
                             else self.labels["empty" if not text.strip() else "none"])
        if hits and query_is_cut(self.index, text):
            self.status.value += " " + html.escape(self.labels["cut"])
        self.last = hits


def search_box(index: Any, k: int = 8, lang: str = "both") -> SearchBox:
    """An image search box over ``index`` (an :class:`mmcore.search.ImageIndex`).

    ``lang``: the language of its labels, "en", "bn", or "both" (the default, for the bilingual lessons).
    """
    return SearchBox(index, k=k, lang=lang)
