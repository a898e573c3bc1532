"""What contrastive image-text models get wrong, measured (lesson 07).

A CLIP scores a picture against a caption. The tests here each give the model one picture and *two* captions that
differ in one detail, one true and one false, and count how often the true one scores higher (chance: 50 %):

* **attribute binding**: "a red circle to the left of a blue square" against "a blue circle to the left of a red
  square" (the same words, bound the other way round: :func:`mmcore.data.swap_colors`);
* **spatial relations**: "... to the left of ..." against "... to the right of ..." (:func:`mmcore.data.flip_relation`);
* **word order**: the caption against its own words shuffled (:func:`shuffle_words`): a model that reads captions
  as bags of words cannot tell them apart (Yuksekgonul et al., ICLR 2023);
* **negation**: a red circle against "a circle that is not red" and "a circle that is not <another colour>";
* **counting**: two equal objects against "two red circles" and "one red circle";
* **typographic attack**: a picture with a colour word written on it (:func:`write_word`): does the written word beat
  the colour that is drawn?

:func:`pairwise_test` runs one such test on pictures and caption pairs and returns the rate with its 95 % Wilson
interval (:func:`wilson_interval`). :func:`binding_pairs` and friends build the pictures and caption pairs of each test
in either language, from the Shapes world's own caption grammar, so Bengali case endings stay right.
"""
from __future__ import annotations

import math
import random
from typing import Any, NamedTuple, Sequence

import torch
from matplotlib import font_manager
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .clip import normalize_pixels
from .data import (COLOR_RGB, COLORS, LANGS, RELATION_TEMPLATES, SHAPES, ShapesDataset, caption, flip_relation, render,
                   sample_attributes, swap_colors)
from .images import to_tensor

__all__ = [
    "PairwiseResult",
    "wilson_interval",
    "pairwise_scores",
    "pairwise_test",
    "shuffle_words",
    "binding_pairs",
    "relation_pairs",
    "pair_attributes",
    "word_order_pairs",
    "negation_pairs",
    "counting_pairs",
    "write_word",
    "typographic_pairs",
    "NEGATION_TEMPLATES",
    "COUNT_TEMPLATES",
]

#: "A {shape} that is not {color}", in both languages.
NEGATION_TEMPLATES: dict[str, str] = {"en": "a {shape} that is not {color}", "bn": "একটি {shape}, যা {color} নয়"}
#: One object / two equal objects, in both languages (English plurals: :func:`_plural`).
COUNT_TEMPLATES: dict[str, dict[int, str]] = {
    "en": {1: "one {color} {shape}", 2: "two {color} {shapes}"},
    "bn": {1: "একটি {color} {shape}", 2: "দুটি {color} {shape}"},
}


class PairwiseResult(NamedTuple):
    rate: float  # share of pictures whose true caption scored higher than the false one
    low: float  # 95 % Wilson interval of the rate
    high: float
    n: int  # pictures
    margin: float  # mean (true - false) cosine similarity: how sure the model is, on average


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial rate (``z`` = 1.96: 95 %); exact at the ends, unlike p +- z*se."""
    if n <= 0:
        raise ValueError(f"n must be positive; got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}; got {successes}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@torch.no_grad()
def pairwise_scores(model: Any, tokenizer: Any, images: Sequence[Image.Image] | Tensor, captions_a: Sequence[str],
                    captions_b: Sequence[str], batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """CLIP's cosine similarity of each picture with its two captions -> ``(score_a (N,), score_b (N,))``.

    ``images``: N PIL pictures or a float batch (N, 3, S, S) in [0, 1]; ``captions_a[i]`` and ``captions_b[i]`` belong
    to picture i."""
    n = len(images)
    if not (len(captions_a) == len(captions_b) == n) or n == 0:
        raise ValueError(f"need one caption pair per picture; got {n} pictures, {len(captions_a)} and "
                         f"{len(captions_b)} captions")
    device, size = next(model.parameters()).device, model.cfg.image_size
    pixels = images if isinstance(images, Tensor) else to_tensor(list(images), size)  # (N, 3, S, S)
    a, b = [], []
    for i in range(0, n, batch_size):
        x = normalize_pixels(pixels[i : i + batch_size].to(device).float(), size)
        image_emb = model.encode_image(x, normalize=True)  # (b, E)
        text_a = model.encode_text(tokenizer(list(captions_a[i : i + batch_size])).to(device), normalize=True)
        text_b = model.encode_text(tokenizer(list(captions_b[i : i + batch_size])).to(device), normalize=True)
        a.append((image_emb * text_a).sum(-1).cpu())  # (b,)
        b.append((image_emb * text_b).sum(-1).cpu())
    return torch.cat(a), torch.cat(b)


def pairwise_test(model: Any, tokenizer: Any, images: Sequence[Image.Image] | Tensor, true_captions: Sequence[str],
                  false_captions: Sequence[str]) -> PairwiseResult:
    """How often the true caption of each picture beats the false one (ties count as failures)."""
    true, false = pairwise_scores(model, tokenizer, images, true_captions, false_captions)
    wins = int((true > false).sum())
    return PairwiseResult(wins / len(true), *wilson_interval(wins, len(true)), len(true), float((true - false).mean()))


# ---------------------------------------------------------------------------------------- the tests' material


def _check_lang(lang: str) -> None:
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}; got {lang!r}")


def _two_object_pictures(n: int, split: str, seed: int) -> tuple[list[Image.Image], list[dict[str, str]]]:
    """``n`` two-object Shapes pictures whose objects differ in colour (a colour swap must change the caption)."""
    data = ShapesDataset(split, n=4 * n, image_size=32, seed=seed, relation=True)
    keep = _two_colour(data.attributes, n)
    return [data[i][0] for i in keep], [data.attributes[i] for i in keep]


def _two_colour(attributes: list[dict[str, str]], n: int) -> list[int]:
    """The first ``n`` of ``attributes`` (4 n two-object draws) whose objects differ in colour."""
    keep = [i for i, a in enumerate(attributes) if a["color"] != a["color2"]][:n]
    if len(keep) < n:
        raise ValueError(f"could not find {n} two-colour pictures in {len(attributes)} draws; ask for fewer")
    return keep


def pair_attributes(n: int = 400, split: str = "test", seed: int = 0) -> list[dict[str, str]]:
    """The attributes of the ``n`` two-object pictures that :func:`binding_pairs`, :func:`relation_pairs` and
    :func:`word_order_pairs` draw with the same arguments (shape, colour, ``relation``, ... of each picture, in the same
    order): to split a test's results by relation, colour or shape."""
    data = ShapesDataset(split, n=4 * n, image_size=32, seed=seed, relation=True)  # attributes only: nothing is drawn
    return [data.attributes[i] for i in _two_colour(data.attributes, n)]


def binding_pairs(n: int = 400, lang: str = "en", split: str = "test", seed: int = 0,
                  template: int = 0) -> tuple[list[Image.Image], list[str], list[str]]:
    """Two-object pictures, each with its caption and the caption with the two colours swapped:
    ``(pictures, true captions, false captions)``. ``template``: which :data:`mmcore.data.RELATION_TEMPLATES`."""
    _check_lang(lang)
    pictures, attrs = _two_object_pictures(n, split, seed)
    form = RELATION_TEMPLATES[lang][template]
    return pictures, [caption(a, lang, form) for a in attrs], [caption(swap_colors(a), lang, form) for a in attrs]


def relation_pairs(n: int = 400, lang: str = "en", split: str = "test", seed: int = 0,
                   template: int = 0) -> tuple[list[Image.Image], list[str], list[str]]:
    """Two-object pictures with the true relation and the mirrored one ("left of" / "right of", ...)."""
    _check_lang(lang)
    pictures, attrs = _two_object_pictures(n, split, seed)
    form = RELATION_TEMPLATES[lang][template]
    return pictures, [caption(a, lang, form) for a in attrs], [caption(flip_relation(a), lang, form) for a in attrs]


def shuffle_words(text: str, rng: random.Random) -> str:
    """The words of ``text`` in a random *different* order (a one-word text comes back as it is)."""
    words = text.split()
    if len(set(words)) < 2:
        return text
    shuffled = words[:]
    while shuffled == words:
        rng.shuffle(shuffled)
    return " ".join(shuffled)


def word_order_pairs(n: int = 400, lang: str = "en", split: str = "test", seed: int = 0,
                     template: int = 0) -> tuple[list[Image.Image], list[str], list[str]]:
    """Two-object pictures with their caption and the same words shuffled."""
    _check_lang(lang)
    pictures, attrs = _two_object_pictures(n, split, seed)
    form, rng = RELATION_TEMPLATES[lang][template], random.Random(f"shuffle:{seed}")
    true = [caption(a, lang, form) for a in attrs]
    return pictures, true, [shuffle_words(t, rng) for t in true]


def _one_object_pictures(n: int, split: str, seed: int) -> tuple[list[Image.Image], list[dict[str, str]]]:
    data = ShapesDataset(split, n=n, image_size=32, seed=seed)
    return [data[i][0] for i in range(n)], list(data.attributes)


def _shape_word(shape: str, lang: str) -> str:
    return shape if lang == "en" else SHAPES[shape]


def _color_word(color: str, lang: str) -> str:
    return color if lang == "en" else COLORS[color]


def negation_pairs(n: int = 400, lang: str = "en", split: str = "test",
                   seed: int = 0) -> tuple[list[Image.Image], list[str], list[str]]:
    """One-object pictures; true: "a circle that is not <another colour>", false: "a circle that is not <its own
    colour>". A model that skips "not" prefers the false one, which names the colour it sees."""
    _check_lang(lang)
    pictures, attrs = _one_object_pictures(n, split, seed)
    rng = random.Random(f"negation:{seed}")
    form = NEGATION_TEMPLATES[lang]
    true, false = [], []
    for a in attrs:
        other = rng.choice([c for c in COLORS if c != a["color"]])
        shape = _shape_word(a["shape"], lang)
        true.append(form.format(shape=shape, color=_color_word(other, lang)))
        false.append(form.format(shape=shape, color=_color_word(a["color"], lang)))
    return pictures, true, false


def _plural(shape: str) -> str:
    return shape + ("es" if shape.endswith(("s", "x", "ch", "sh")) else "s")


def _count_caption(a: dict[str, str], count: int, lang: str) -> str:
    return COUNT_TEMPLATES[lang][count].format(shape=_shape_word(a["shape"], lang), shapes=_plural(a["shape"]),
                                               color=_color_word(a["color"], lang))


def counting_pairs(n: int = 400, lang: str = "en", split: str = "test",
                   seed: int = 0) -> tuple[list[Image.Image], list[str], list[str]]:
    """Half the pictures hold one object, half two equal objects side by side (or one above the other); true: the
    right count ("one red circle" / "two red circles"), false: the other count."""
    _check_lang(lang)
    rng = random.Random(f"counting:{seed}:{split}")
    pictures, true, false = [], [], []
    for i in range(n):
        a = sample_attributes(rng, split, relation=True)
        count = 2 if i % 2 else 1
        if count == 2:  # two equal objects: the reference becomes a copy of the subject
            a = {**a, "shape2": a["shape"], "color2": a["color"], "size2": a["size"]}
        else:
            a = {"shape": a["shape"], "color": a["color"], "size": a["size"], "position": "center"}
        pictures.append(render(a, 32, rng))
        true.append(_count_caption(a, count, lang))
        false.append(_count_caption(a, 3 - count, lang))
    return pictures, true, false


def write_word(picture: Image.Image, word: str, color: tuple[int, int, int] = (20, 20, 20),
               font_size: int | None = None) -> Image.Image:
    """``picture`` with ``word`` written across its lower part (a typographic attack). Bengali words are drawn with an
    installed Bengali font (Noto Sans Bengali), Latin ones with DejaVu Sans; shaping needs Pillow with libraqm for
    joined Bengali letters (without it the letters stand apart, still legible as a label)."""
    out = picture.convert("RGB").copy()
    size = font_size or max(6, out.width // 3)
    font = _font_for(word, size)
    draw = ImageDraw.Draw(out)
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    x = (out.width - (right - left)) / 2 - left
    y = out.height - (bottom - top) - max(1, out.height // 16) - top
    draw.text((x, y), word, fill=color, font=font)
    return out


def _font_for(word: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    bengali = any("\u0980" <= ch <= "\u09ff" for ch in word)
    family = "Noto Sans Bengali" if bengali else "DejaVu Sans"
    try:
        path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=not bengali)
        return ImageFont.truetype(path, size)
    except (ValueError, OSError):
        if bengali:
            raise RuntimeError("no Bengali font is installed: `apt-get install fonts-noto-core` (Debian/Ubuntu) "
                               "gives Noto Sans Bengali") from None
        return ImageFont.load_default()


def typographic_pairs(n: int = 400, lang: str = "en", split: str = "test",
                      seed: int = 0) -> tuple[list[Image.Image], list[str], list[str]]:
    """One-object pictures with *another* colour's name written on them; true: the drawn colour ("a blue circle"),
    false: the written one ("a red circle"). The written word is in ``lang``."""
    _check_lang(lang)
    pictures, attrs = _one_object_pictures(n, split, seed)
    rng = random.Random(f"typographic:{seed}")
    attacked, true, false = [], [], []
    for picture, a in zip(pictures, attrs):
        written = rng.choice([c for c in COLORS if c != a["color"] and c != "black"])  # black would hide the text
        word = written.upper() if lang == "en" else COLORS[written]
        attacked.append(write_word(picture, word, color=COLOR_RGB[written]))
        form = "a {color} {shape}" if lang == "en" else "একটি {color} {shape}"
        true.append(caption(a, lang, form))
        false.append(caption({**a, "color": written}, lang, form))
    return attacked, true, false
