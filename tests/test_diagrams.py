"""Architecture diagrams (mmcore.diagrams): they render in both languages without missing glyphs, every label follows
the language, both languages draw the same structure, and no label spills out of its box or onto another label."""
import io
import re
import warnings
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.patches import FancyBboxPatch, Rectangle  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from mmcore import diagrams  # noqa: E402
from mmcore.lang import bengali_share  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DIAGRAMS = [getattr(diagrams, name) for name in diagrams.__all__]

# Names and symbols that stay as they are in the Bengali figure: models, token names, tensor-shape letters.
TECHNICAL = re.compile(r"DALL-E|unCLIP|CLIP|VQGAN|ViT|Adam|argmin|conv|px|\[(?:start|end|pad)\]|(?<![A-Za-z])[A-Za-z](?![A-Za-z])")


@pytest.fixture
def draw():
    """Call a diagram function; every figure it made is closed after the test."""
    yield lambda f, lang: f(lang)
    plt.close("all")


def texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


def structure(fig) -> Counter:
    """What a diagram draws, language aside: how many boxes, arrows, cells and texts."""
    return Counter(type(a).__name__ for a in fig.findobj(lambda a: isinstance(a, (matplotlib.patches.Patch, Text))))


@pytest.mark.parametrize("f", DIAGRAMS, ids=diagrams.__all__)
@pytest.mark.parametrize("lang", ["en", "bn"])
def test_renders_without_missing_glyphs(f, lang, draw):
    fig = draw(f, lang)
    assert isinstance(fig, matplotlib.figure.Figure)
    width, height = fig.get_size_inches()
    assert width <= 9 and height <= 3.5 and 72 <= fig.dpi <= 100
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" becomes an error
        fig.savefig(io.BytesIO(), format="png")


@pytest.mark.parametrize("f", DIAGRAMS, ids=diagrams.__all__)
def test_every_label_follows_the_language(f, draw):
    english = [t.get_text() for t in texts(draw(f, "en"))]
    assert english and all(bengali_share(t) == 0 for t in english), [t for t in english if bengali_share(t)]
    bengali = [t.get_text() for t in texts(draw(f, "bn"))]
    # Without its technical names, a text either has no letters left (e.g. "(N, 3, 32, 32)") or only Bengali ones.
    prose = {t: TECHNICAL.sub("", t) for t in bengali}
    prose = {t: p for t, p in prose.items() if re.search(r"[A-Za-z\u0980-\u09FF]", p)}
    assert len(prose) >= 5
    untranslated = [t for t, p in prose.items() if bengali_share(p) < 1.0]
    assert not untranslated, f"English words left in the Bengali figure: {untranslated}"


@pytest.mark.parametrize("f", DIAGRAMS, ids=diagrams.__all__)
def test_bengali_labels_use_the_glossary_terms(f, draw):
    rows = [line.split("|")[1:-1] for line in (ROOT / "lessons" / "glossary.md").read_text(encoding="utf-8").splitlines()
            if line.startswith("|") and not line.startswith(("| ---", "| English"))]
    avoid = {w.strip() for row in rows for w in row[2].split(",") if w.strip() not in ("", "-")}
    labels = " ".join(t.get_text() for t in texts(draw(f, "bn")))
    assert not [w for w in avoid if w in labels]


@pytest.mark.parametrize("f", DIAGRAMS, ids=diagrams.__all__)
def test_both_languages_draw_the_same_structure(f, draw):
    en, bn = structure(draw(f, "en")), structure(draw(f, "bn"))
    assert en == bn
    assert en["FancyBboxPatch"] >= 5 and en["FancyArrowPatch"] >= 4


@pytest.mark.parametrize("f", DIAGRAMS, ids=diagrams.__all__)
@pytest.mark.parametrize("lang", ["en", "bn"])
def test_labels_fit_their_boxes_and_do_not_overlap(f, lang, draw):
    fig = draw(f, lang)
    renderer = fig.canvas.get_renderer()
    fig_box = fig.bbox
    labels = [(t, t.get_window_extent(renderer)) for t in texts(fig)]
    boxes = [p.get_window_extent(renderer) for p in fig.findobj(FancyBboxPatch)]
    cells = [p.get_window_extent(renderer) for p in fig.findobj(Rectangle) if p.axes and p is not p.axes.patch]
    for t, ext in labels:
        assert fig_box.x0 <= ext.x0 and ext.x1 <= fig_box.x1 and fig_box.y0 <= ext.y0 and ext.y1 <= fig_box.y1, \
            f"{t.get_text()!r} leaves the figure"
        anchor = t.get_transform().transform(t.get_position())
        for box in boxes:
            if box.contains(*anchor):
                assert box.x0 + 2 <= ext.x0 and ext.x1 <= box.x1 - 2 and box.y0 <= ext.y0 and ext.y1 <= box.y1, \
                    f"{t.get_text()!r} spills out of its box"
        for cell in cells:  # a grid's caption stays off its cells
            assert cell.contains(*anchor) or not ext.overlaps(cell), f"{t.get_text()!r} is drawn over a grid"
    for i, (a, ea) in enumerate(labels):
        for b, eb in labels[i + 1:]:
            assert not ea.overlaps(eb), f"{a.get_text()!r} overlaps {b.get_text()!r}"


@pytest.mark.parametrize("f", DIAGRAMS, ids=diagrams.__all__)
def test_a_bad_language_is_refused(f):
    before = plt.get_fignums()
    with pytest.raises(ValueError, match="'en' or 'bn'"):
        f("de")
    assert plt.get_fignums() == before  # refused before a figure was made
