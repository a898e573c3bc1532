"""The Shapes world: a procedural, bilingual (English / Bengali) dataset of captioned images.

No image-text data set can be downloaded in this course, and a laptop CPU cannot train on photos anyway, so
every tiny model of the course (CLIP, VQGAN, DALL-E, unCLIP) trains on the *Shapes world*: small images of one
coloured shape on a light background, each with a caption such as "a small red circle at the top" or
"উপরে একটি ছোট লাল বৃত্ত".

An image is fully described by four *attributes* (English words, the keys of the tables below):

- ``shape``: one of :data:`SHAPES` (circle, square, triangle, star, heart, cross),
- ``color``: one of :data:`COLORS` (eight colours, RGB values in :data:`COLOR_RGB`),
- ``size``: one of :data:`SIZES` (small, large),
- ``position``: one of :data:`POSITIONS` (center, top, bottom, left, right).

Each table maps the English word to its Bengali word; captions in both languages are built from them with the
templates in :data:`TRAIN_TEMPLATES` (used for training captions) and :data:`EVAL_TEMPLATES` (never used for
training: kept for zero-shot prompts). Template ``i`` of one language translates template ``i`` of the other.

To test *compositional generalisation*, the (shape, colour) pairs in :data:`HELDOUT` never appear in the
``"train"`` split: every shape and every colour is seen in training, but never a green heart, say. Splits:

- ``"train"``: training compositions,
- ``"test"``: new images (another random stream) of the training compositions,
- ``"heldout"``: only the held-out compositions.

Images are drawn with PIL at twice the requested size and downscaled (antialiasing), on a light background
with a random tint, gradient and noise that never looks like an object colour; position, size, rotation and
colour are jittered a little. Everything is a pure function of a ``random.Random`` generator, so an image is
reproducible from its seed. :class:`ShapesDataset` renders lazily: ``dataset[i]`` draws image ``i`` when asked.

With ``relation=True`` an image holds two objects, e.g. "a red circle to the left of a blue square", for the
lesson on what CLIP gets wrong (binding attributes to objects, spatial relations).

The module also gives a few real photos that ship with scikit-image (:func:`sample_photos`) and re-exports the
robust image loader (:func:`load_image`, :class:`ImageLoadError`) from :mod:`mmcore.images`.
"""
from __future__ import annotations

import functools
import itertools
import math
import multiprocessing
import random
import re
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from .images import ImageLoadError, load_image, to_tensor

__all__ = [
    "SHAPES", "COLORS", "SIZES", "POSITIONS", "COLOR_RGB", "RELATIONS", "HELDOUT", "SPLITS", "LANGS",
    "WATCH_SEED", "EVAL_SEED", "TRAIN_TEMPLATES", "BASE_TEMPLATES", "EVAL_TEMPLATES", "UNSEEN_PHRASINGS", "RELATION_TEMPLATES", "OPPOSITE_RELATIONS", "compositions", "sample_attributes", "render",
    "swap_colors", "flip_relation", "hard_negative",
    "caption", "parallel_captions", "phrased_prompts", "pair_prompt", "seen_pairs", "NUM_COMBOS", "combo_index", "combo_attributes",
    "render_images", "rendered_chunks", "dataset_images", "frame_caption", "filler_words", "bn_genitive", "ShapesDataset", "caption_corpus", "Photo", "sample_photos", "load_image",
    "ImageLoadError",
]

#: The random streams of the fixed evaluation pictures (never a training stream): the one a training run watches
#: while it trains (its loss / accuracy curves), and the one of the final measurements (checkpoint cards, tests).
WATCH_SEED = 1234
EVAL_SEED = 2026

# ----------------------------------------------------------------------------------------------------------
# The vocabulary: English attribute word -> Bengali word (each word lives in exactly one table).
# ----------------------------------------------------------------------------------------------------------

SHAPES: dict[str, str] = {
    "circle": "বৃত্ত",
    "square": "বর্গ",
    "triangle": "ত্রিভুজ",
    "star": "তারা",
    "heart": "হৃদয়",
    "cross": "যোগচিহ্ন",  # an upright plus sign
}

COLORS: dict[str, str] = {
    "red": "লাল",
    "orange": "কমলা",
    "yellow": "হলুদ",
    "green": "সবুজ",
    "blue": "নীল",
    "purple": "বেগুনি",
    "pink": "গোলাপি",
    "black": "কালো",
}

SIZES: dict[str, str] = {
    "small": "ছোট",
    "large": "বড়",
}

#: Bengali positions are locative phrases that fit inside a sentence ("উপরে একটি ছোট লাল বৃত্ত").
POSITIONS: dict[str, str] = {
    "center": "মাঝখানে",
    "top": "উপরে",
    "bottom": "নিচে",
    "left": "বাঁদিকে",
    "right": "ডানদিকে",
}

#: The RGB value each colour is drawn with (before a small jitter): saturated or dark, far from the light
#: backgrounds, and far from each other.
COLOR_RGB: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "orange": (240, 120, 10),
    "yellow": (240, 210, 30),
    "green": (35, 155, 55),
    "blue": (35, 75, 215),
    "purple": (130, 50, 175),
    "pink": (235, 95, 170),
    "black": (25, 25, 25),
}

#: Two-object relations: relation -> the position (a :data:`POSITIONS` key) of the subject; the reference
#: object sits on the opposite side. Bengali says "X-এর বাঁদিকে" ("to the left of X") with the position word.
RELATIONS: dict[str, str] = {
    "left of": "left",
    "right of": "right",
    "above": "top",
    "below": "bottom",
}

#: (shape, colour) compositions that never appear in the "train" split: one colour per shape, each colour
#: held out at most once (yellow and black never), so every shape and every colour is still seen in training.
HELDOUT: frozenset[tuple[str, str]] = frozenset({
    ("circle", "orange"),
    ("square", "blue"),
    ("triangle", "purple"),
    ("star", "red"),
    ("heart", "green"),
    ("cross", "pink"),
})

SPLITS: tuple[str, ...] = ("train", "test", "heldout")
LANGS: tuple[str, ...] = ("en", "bn")

# English phrases for the words that need more than the bare word inside a sentence.
_POSITION_PHRASES_EN: dict[str, str] = {
    "center": "in the center",
    "top": "at the top",
    "bottom": "at the bottom",
    "left": "on the left",
    "right": "on the right",
}
_RELATION_PHRASES_EN: dict[str, str] = {
    "left of": "to the left of",
    "right of": "to the right of",
    "above": "above",
    "below": "below",
}
_OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}

# ----------------------------------------------------------------------------------------------------------
# Caption templates. Placeholders: {shape} {color} {size} {position}; Bengali also {shape_gen}, the genitive
# ("বৃত্তের", "of a circle"). Two-object templates add {shape2} {color2} {size2} {shape2_gen} {relation}.
# Index i of "en" and of "bn" say the same thing.
# ----------------------------------------------------------------------------------------------------------

TRAIN_TEMPLATES: dict[str, list[str]] = {
    "en": [
        # 0-5: the first training set (the course tokenizer's corpus and the first 1,500 steps of shapes-tiny)
        "a {size} {color} {shape} {position}",
        "a {color} {shape} {position}",
        "a {size} {color} {shape}",
        "a {color} {shape}",
        "a photo of a {size} {color} {shape}",
        "there is a {size} {color} {shape} {position}",
        # 6-: the ways people actually phrase it: bare noun phrases, "-colored", other orders, imperatives,
        # brackets, other leading words (the phrasing fine-tune of shapes-tiny; see data/checkpoints/shapes-tiny.md)
        "{color} {shape}",
        "{size} {color} {shape} {position}",
        "a {color}-colored {shape}",
        "a {shape} in {color}",
        "{shape}, {color}",
        "the {shape} is {color}",
        "draw a {color} {shape}",
        "an image of a {size} {color} {shape}",
        "{color} {shape} ({size})",
        "one {color} {shape} {position}",
        "here is a {color} {shape}",
        "a drawing with a {color} {shape} in it",
        "a {size} {shape}, colored {color}",
        "{position}: a {color} {shape}",
    ],
    "bn": [
        "{position} একটি {size} {color} {shape}",
        "{position} একটি {color} {shape}",
        "একটি {size} {color} {shape}",
        "একটি {color} {shape}",
        "একটি {size} {color} {shape_gen} ছবি",
        "{position} একটি {size} {color} {shape} আছে",
        "{color} {shape}",
        "{position} {size} {color} {shape}",
        "{color} রঙের একটি {shape}",
        "{color} রঙের {shape}",
        "{shape}, {color}",
        "{shape}টির রঙ {color}",
        "একটা {color} {shape} আঁকো",
        "{size} {color} {shape_gen} একটি ছবি",
        "{color} {shape} ({size})",
        "{position} একটা {color} {shape}",
        "এই যে একটি {color} {shape}",
        "একটি আঁকায় একটা {color} {shape}",
        "একটি {size} {shape}, রঙ {color}",
        "{position}: একটি {color} {shape}",
    ],
}

#: How many of :data:`TRAIN_TEMPLATES` (the first ones) the course tokenizer's corpus and the first shapes-tiny run
#: used. The tokenizer keeps that corpus: retraining it would change every checkpoint's token ids.
BASE_TEMPLATES = 6

#: Held-out prompt templates: never used for training captions, kept for zero-shot evaluation.
EVAL_TEMPLATES: dict[str, list[str]] = {
    "en": [
        "a picture of a {color} {shape}",
        "this is a {color} {shape}",
        "a {size} {color} {shape} can be seen {position}",
    ],
    "bn": [
        "একটি {color} {shape_gen} চিত্র",
        "এটি একটি {color} {shape}",
        "{position} একটি {size} {color} {shape} দেখা যাচ্ছে",
    ],
}

#: Phrasings that neither template set uses: a stand-in for the words a student types, for the phrasing benchmark
#: (tests/benchmarks/bench_phrasing.py) and its floor test. Never train on these, and never use them as prompts:
#: they stay honest only while no model has seen them. Written before the phrasing fine-tune was measured.
UNSEEN_PHRASINGS: dict[str, list[str]] = {
    "en": [
        "a picture showing one {color} {shape}",
        "i see a {color} {shape}",
        "look, a {color} {shape}!",
        "{color} {shape} please",
        "find the {color} {shape}",
        "a {shape} that is {color}",
        "show me a {color} {shape}",
        "my {shape} is {color}",
        "a {color} {shape} on a light background",
        "this picture has a {color} {shape} in it",
        "can you see the {color} {shape}?",
        "a single {color} {shape}",
    ],
    "bn": [
        "এখানে একটা {color} {shape}",
        "আমি একটি {color} {shape} দেখছি",
        "দেখো, একটা {color} {shape}!",
        "{color} {shape} চাই",
        "{color} রঙের {shape}টি খুঁজে দাও",
        "একটি {shape}, যার রঙ {color}",
        "আমাকে একটি {color} {shape} দেখাও",
        "একটা {color} {shape} দেখতে পাচ্ছ?",
        "হালকা পটভূমিতে একটি {color} {shape}",
        "ছবিতে একটা {color} রঙের {shape} আছে",
        "{shape}টা {color}",
        "একখানা {color} {shape}",
    ],
}

RELATION_TEMPLATES: dict[str, list[str]] = {
    "en": [
        "a {color} {shape} {relation} a {color2} {shape2}",
        "there is a {size} {color} {shape} {relation} a {size2} {color2} {shape2}",
    ],
    "bn": [
        "একটি {color2} {shape2_gen} {relation} একটি {color} {shape}",
        "একটি {size2} {color2} {shape2_gen} {relation} একটি {size} {color} {shape} আছে",
    ],
}

# ----------------------------------------------------------------------------------------------------------
# Attributes and splits
# ----------------------------------------------------------------------------------------------------------


def _check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise a ValueError that lists the allowed values when ``value`` is not one of them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def _check_image_size(image_size: Any) -> None:
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8 (pixels per side); got {image_size!r}")


@functools.lru_cache(maxsize=None)
def _compositions(split: str) -> tuple[tuple[str, str], ...]:
    every = tuple(itertools.product(SHAPES, COLORS))  # (shape, colour) in table order
    if split == "heldout":
        return tuple(pair for pair in every if pair in HELDOUT)
    if split in ("train", "test"):
        return tuple(pair for pair in every if pair not in HELDOUT)
    return every  # "all": the caption corpus and the tokenizer see every word combination


def compositions(split: str) -> list[tuple[str, str]]:
    """The (shape, colour) pairs a split draws from: training ones for "train"/"test", :data:`HELDOUT` for "heldout"."""
    _check_choice("split", split, SPLITS)
    return list(_compositions(split))


def _sample(rng: random.Random, pairs: Sequence[tuple[str, str]], relation: bool) -> dict[str, str]:
    """:func:`sample_attributes` drawing the (shape, colour) pairs from ``pairs``."""
    shape, color = rng.choice(pairs)
    attrs = {"shape": shape, "color": color, "size": rng.choice(list(SIZES)), "position": rng.choice(list(POSITIONS))}
    if not relation:
        return attrs
    others = [pair for pair in pairs if pair != (shape, color)]
    shape2, color2 = rng.choice(others)
    name = rng.choice(list(RELATIONS))
    attrs.update(position=RELATIONS[name], shape2=shape2, color2=color2, size2=rng.choice(list(SIZES)),
                 position2=_OPPOSITE[RELATIONS[name]], relation=name)
    return attrs


def sample_attributes(rng: random.Random, split: str = "train", relation: bool = False) -> dict[str, str]:
    """Draw one image's attributes (English words) for ``split`` from ``rng``.

    Returns ``{"shape", "color", "size", "position"}``; with ``relation=True`` also ``shape2``, ``color2``,
    ``size2``, ``position2`` (the reference object, a different composition) and ``relation`` (a
    :data:`RELATIONS` key: the subject is ``relation`` the reference, and sits at ``position``).
    """
    _check_choice("split", split, SPLITS)
    return _sample(rng, _compositions(split), relation)


# ----------------------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------------------

_BN_VOWELS = set("অআইঈউঊঋএঐওঔািীুূৃেৈোৌ")


def bn_genitive(noun: str) -> str:
    """The Bengali genitive ("of ...") of ``noun``: "-র" after a vowel, "-এর" (ের) after a consonant.

    >>> bn_genitive("বৃত্ত"), bn_genitive("তারা")
    ('বৃত্তের', 'তারার')
    """
    return noun + ("র" if noun[-1] in _BN_VOWELS else "ের")


def _object_words(attrs: dict[str, str], suffix: str, lang: str) -> dict[str, str]:
    """Template words for one object (``suffix`` "" for the subject, "2" for a relation's reference)."""
    shape, color, size = attrs["shape" + suffix], attrs["color" + suffix], attrs["size" + suffix]
    if lang == "en":
        return {"shape" + suffix: shape, "color" + suffix: color, "size" + suffix: size}
    return {"shape" + suffix: SHAPES[shape], "shape" + suffix + "_gen": bn_genitive(SHAPES[shape]),
            "color" + suffix: COLORS[color], "size" + suffix: SIZES[size]}


def _words(attrs: dict[str, str], lang: str) -> dict[str, str]:
    """Every placeholder a template may use, in ``lang``, for ``attrs``."""
    words = _object_words(attrs, "", lang)
    position = attrs["position"]
    words["position"] = _POSITION_PHRASES_EN[position] if lang == "en" else POSITIONS[position]
    if "relation" in attrs:
        words.update(_object_words(attrs, "2", lang))
        name = attrs["relation"]
        words["relation"] = _RELATION_PHRASES_EN[name] if lang == "en" else POSITIONS[RELATIONS[name]]
    return words


def _fix_articles(text: str) -> str:
    """English "a" becomes "an" before a vowel: "a orange circle" -> "an orange circle"."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)


def caption(attrs: dict[str, str], lang: str = "en", template: str | None = None,
            rng: random.Random | None = None) -> str:
    """The caption of an image with attributes ``attrs`` in ``lang`` ("en" or "bn").

    ``template`` is a format string with the placeholders of :data:`TRAIN_TEMPLATES`; by default one of the
    training templates (the relation templates for a two-object image) is drawn from ``rng``, or the first
    one (the most complete) when ``rng`` is None.
    """
    _check_choice("lang", lang, LANGS)
    if template is None:
        pool = (RELATION_TEMPLATES if "relation" in attrs else TRAIN_TEMPLATES)[lang]
        template = pool[0] if rng is None else rng.choice(pool)
    text = template.format(**_words(attrs, lang))
    return _fix_articles(text) if lang == "en" else text


# ----------------------------------------------------------------------------------------------------------
# Hard negatives: a description that differs from the picture in one bound detail (lesson 07)
# ----------------------------------------------------------------------------------------------------------

#: Each relation's mirror image: "left of" <-> "right of", "above" <-> "below".
OPPOSITE_RELATIONS: dict[str, str] = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}


def swap_colors(attrs: dict[str, str]) -> dict[str, str]:
    """A two-object picture's attributes with the two colours exchanged: "a red circle left of a blue square" ->
    "a blue circle left of a red square". The same words, bound the other way round."""
    if "relation" not in attrs:
        raise ValueError("swap_colors needs a two-object picture's attributes (sample_attributes(..., relation=True))")
    return {**attrs, "color": attrs["color2"], "color2": attrs["color"]}


def flip_relation(attrs: dict[str, str]) -> dict[str, str]:
    """A two-object picture's attributes with the relation mirrored ("left of" -> "right of"): the objects keep their
    description, only where they are is wrong (their ``position`` fields stay those of the picture)."""
    if "relation" not in attrs:
        raise ValueError("flip_relation needs a two-object picture's attributes (sample_attributes(..., relation=True))")
    return {**attrs, "relation": OPPOSITE_RELATIONS[attrs["relation"]]}


def hard_negative(attrs: dict[str, str], rng: random.Random) -> dict[str, str]:
    """A description close to ``attrs`` but wrong (the NegCLIP idea): a two-object picture gets its colours swapped or
    its relation mirrored (one of the two, drawn from ``rng``; mirrored when both objects share a colour, where a
    swap would change nothing); a one-object picture gets another colour."""
    if "relation" in attrs:
        swap = rng.random() < 0.5 and attrs["color"] != attrs["color2"]
        return swap_colors(attrs) if swap else flip_relation(attrs)
    return {**attrs, "color": rng.choice([c for c in COLORS if c != attrs["color"]])}


def parallel_captions(n: int | None = None, split: str = "train", source: str = "en", target: str = "bn",
                      seed: int = 0) -> list[tuple[str, str]]:
    """Caption pairs that say the same thing in two languages: ``[(source caption, target caption), ...]``.

    Every one-object attribute combination of ``split``'s compositions in every training template (template ``i``
    of one language translates template ``i`` of the other), each distinct pair once, in a fixed shuffled order
    (``seed``); the first ``n`` of them (None: all). Lesson 08 distils a text tower from these: no picture needed.
    """
    _check_choice("split", split, SPLITS)
    _check_choice("source", source, LANGS)
    _check_choice("target", target, LANGS)
    if n is not None and (not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive number of caption pairs (or None: all); got {n!r}")
    pairs: dict[tuple[str, str], None] = {}  # ordered and distinct
    for shape, color in _compositions(split):
        for size, position in itertools.product(SIZES, POSITIONS):
            attrs = {"shape": shape, "color": color, "size": size, "position": position}
            for i, template in enumerate(TRAIN_TEMPLATES[source]):
                pairs[(caption(attrs, source, template), caption(attrs, target, TRAIN_TEMPLATES[target][i]))] = None
    out = list(pairs)
    random.Random(f"parallel:{split}:{seed}").shuffle(out)
    return out[:n]


def phrased_prompts(pairs: Sequence[tuple[str, str]], per_pair: int | None = None, langs: Sequence[str] = LANGS,
                    phrasings: dict[str, Sequence[str]] | None = None) -> list[tuple[str, str, dict[str, str]]]:
    """Prompts for (shape, colour) ``pairs`` written with ``phrasings`` (default :data:`UNSEEN_PHRASINGS`):
    ``[(prompt, lang, {"shape", "color"}), ...]``. ``per_pair`` phrasings per pair and language, cycling through
    the list so that every phrasing gets used (None: all of them)."""
    phrasings = UNSEEN_PHRASINGS if phrasings is None else phrasings
    out = []
    for lang in langs:
        options = phrasings[lang]
        for k, (shape, color) in enumerate(pairs):
            chosen = options if per_pair is None else [options[(k * per_pair + j) % len(options)] for j in range(per_pair)]
            for template in chosen:
                attrs = {"shape": shape, "color": color, "size": "small", "position": "center"}
                out.append((caption(attrs, lang, template=template), lang, {"shape": shape, "color": color}))
    return out


_SHAPES, _COLORS, _SIZES, _POSITIONS = list(SHAPES), list(COLORS), list(SIZES), list(POSITIONS)
NUM_COMBOS = len(_SHAPES) * len(_COLORS) * len(_SIZES) * len(_POSITIONS)  # 480 attribute combinations


def combo_index(attrs: dict[str, str]) -> int:
    """An image's (one-object) attributes -> its index among all :data:`NUM_COMBOS` combinations (0 .. 479): the
    row of a training run's caption table (:mod:`mmcore.train_dalle`, :mod:`mmcore.train_unclip`)."""
    i = _SHAPES.index(attrs["shape"])
    i = i * len(_COLORS) + _COLORS.index(attrs["color"])
    i = i * len(_SIZES) + _SIZES.index(attrs["size"])
    return i * len(_POSITIONS) + _POSITIONS.index(attrs["position"])


def combo_attributes(index: int) -> dict[str, str]:
    """Inverse of :func:`combo_index`."""
    index, p = divmod(index, len(_POSITIONS))
    index, z = divmod(index, len(_SIZES))
    s, c = divmod(index, len(_COLORS))
    return {"shape": _SHAPES[s], "color": _COLORS[c], "size": _SIZES[z], "position": _POSITIONS[p]}


def pair_prompt(shape: str, color: str, lang: str = "en") -> str:
    """The plain prompt of a (shape, colour) pair: ``"a red circle"`` / ``"an orange star"`` / ``"একটি লাল বৃত্ত"``
    (training template 3); the prompt with which the generators' fidelity is measured."""
    return caption({"shape": shape, "color": color, "size": "small", "position": "center"}, lang,
                   TRAIN_TEMPLATES[lang][3])


def seen_pairs(n: int | None = None) -> list[tuple[str, str]]:
    """Training (shape, colour) compositions in a fixed order that spreads shapes and colours (first ``n``)."""
    pairs = [(s, c) for c in _COLORS for s in _SHAPES if (s, c) not in HELDOUT]
    pairs.sort(key=lambda sc: ((_SHAPES.index(sc[0]) * 5 + _COLORS.index(sc[1])) % 7, sc))
    return pairs[:n]


@functools.lru_cache(maxsize=None)
def filler_words(lang: str) -> tuple[str, ...]:
    """Everyday words of ``lang`` that name no Shapes attribute: the words of the course tokenizer's general text
    (:data:`mmcore.tokenizer.GENERAL_EN` / ``GENERAL_BN``: cats, tea, rivers, ...), without punctuation, without the
    lines that list colours, shapes or places (their words are synonyms of attributes), without any attribute word
    of either language ("তারা" is both "star" and "they") and without any word of :data:`UNSEEN_PHRASINGS` or
    :data:`EVAL_TEMPLATES` (those must stay unseen: "এটি" + "একটি লাল বৃত্ত" would be an evaluation prompt)."""
    from .tokenizer import GENERAL_BN, GENERAL_EN  # imported here: only caption framing needs them

    _check_choice("lang", lang, LANGS)
    attribute_words = {w for table in (SHAPES, COLORS, SIZES, POSITIONS) for pair in table.items() for w in pair}
    kept_unseen = [t for table in (UNSEEN_PHRASINGS, EVAL_TEMPLATES) for ts in table.values() for t in ts]
    banned = attribute_words | {w.strip(".,!?():") for t in kept_unseen for w in t.split()}
    banned |= {"white", "brown", "stars", "সাদা"}  # colours the world does not draw (the background is whitish), plurals
    text = GENERAL_EN.lower() if lang == "en" else GENERAL_BN
    words: list[str] = []
    for line in text.splitlines():
        line_words = re.findall(r"[^\s.,:;!?\"()।০-৯0-9-]+", line)
        if sum(w in attribute_words for w in line_words) > 2:
            continue  # a word list about colours, shapes or places ("red, green, blue, ..."): synonyms of attributes
        words += line_words
    return tuple(sorted({w for w in words if w not in banned and len(w) > 1}))


def frame_caption(text: str, lang: str, rng: random.Random, max_words: int = 3) -> str:
    """``text`` with 1 to ``max_words`` everyday words (:func:`filler_words`) before it, after it, or both: a
    training-time augmentation that teaches a text tower that words naming no attribute do not change the picture,
    so a student's own sentence frame ("i think it is a red circle, right") still works."""
    words = filler_words(lang)
    before = [rng.choice(words) for _ in range(rng.randint(0, max_words))]
    after = [rng.choice(words) for _ in range(rng.randint(0 if before else 1, max_words))]
    return " ".join([*before, text, *after])


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------

_SIZE_RADIUS = {"small": 0.14, "large": 0.22}  # object radius as a fraction of the image side
_POSITION_XY = {"center": (0.5, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75), "left": (0.25, 0.5),
                "right": (0.75, 0.5)}  # (x, y) of the object's centre, fractions of the image side
_PAIR_SCALE = 0.78  # two objects side by side are drawn smaller so that they never touch
_JITTER_XY, _JITTER_SIZE, _JITTER_ANGLE, _JITTER_RGB = 0.025, 0.08, math.radians(15), 8.0
_HEART_EXTENT = 1.1  # the heart fills its circle less than the others: it gets a larger one
_MARGIN = 0.02  # minimal gap between an object and the image border


def _regular(n: int, radius: float = 1.0, offset: float = -math.pi / 2) -> list[tuple[float, float]]:
    """The vertices of a regular ``n``-gon of circumradius ``radius``, the first one pointing up by default."""
    return [(radius * math.cos(offset + 2 * math.pi * k / n), radius * math.sin(offset + 2 * math.pi * k / n))
            for k in range(n)]


def _star() -> list[tuple[float, float]]:
    outer, inner = _regular(5, 1.05), _regular(5, 0.48, offset=-math.pi / 2 + math.pi / 5)
    return [point for pair in zip(outer, inner) for point in pair]


def _heart(n: int = 36) -> list[tuple[float, float]]:
    # The classic parametric heart, scaled to reach radius 1.1 (it fills its circle less than the others);
    # y grows downwards as in images.
    raw = [(16 * math.sin(t) ** 3, -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)))
           for t in (2 * math.pi * k / n for k in range(n))]
    cy = (max(y for _, y in raw) + min(y for _, y in raw)) / 2
    scale = _HEART_EXTENT / max(math.hypot(x, y - cy) for x, y in raw)
    return [(x * scale, (y - cy) * scale) for x, y in raw]


def _triangle() -> list[tuple[float, float]]:
    # An equilateral triangle, a little larger than inscribed so that it looks as big as the others,
    # shifted down by half the offset between its circumcentre and the centre of its bounding box.
    radius = 1.12
    return [(x, y + radius / 8) for x, y in _regular(3, radius)]


_W = 0.34  # half-width of the cross's arms
_UNIT_POLYGONS: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": _triangle(),
    "star": _star(),
    "heart": _heart(),
    "cross": [(-_W, -1), (_W, -1), (_W, -_W), (1, -_W), (1, _W), (_W, _W), (_W, 1), (-_W, 1), (-_W, _W),
              (-1, _W), (-1, -_W), (-_W, -_W)],
}  # shape -> vertices in units of the object radius, centred on (0, 0); "circle" is drawn as an ellipse
_EXTENTS: dict[str, float] = {"circle": 1.0} | {
    shape: max(math.hypot(x, y) for x, y in points) for shape, points in _UNIT_POLYGONS.items()
}  # shape -> radius of the circle around (0, 0) that holds it in any rotation, in units of the object radius


class _Placed(NamedTuple):
    """One object ready to draw: all lengths are fractions of the image side."""
    shape: str
    rgb: tuple[int, int, int]
    cx: float
    cy: float
    radius: float
    angle: float  # radians


def _place(rng: random.Random, shape: str, color: str, size: str, position: str, scale: float) -> _Placed:
    radius = _SIZE_RADIUS[size] * scale * rng.uniform(1 - _JITTER_SIZE, 1 + _JITTER_SIZE)
    low, high = _EXTENTS[shape] * radius + _MARGIN, 1 - _EXTENTS[shape] * radius - _MARGIN
    x, y = _POSITION_XY[position]
    cx = min(max(x + rng.uniform(-_JITTER_XY, _JITTER_XY), low), high)
    cy = min(max(y + rng.uniform(-_JITTER_XY, _JITTER_XY), low), high)
    rgb = tuple(min(max(round(c + rng.uniform(-_JITTER_RGB, _JITTER_RGB)), 0), 255) for c in COLOR_RGB[color])
    return _Placed(shape, rgb, cx, cy, radius, rng.uniform(-_JITTER_ANGLE, _JITTER_ANGLE))


def _layout(attrs: dict[str, str], rng: random.Random) -> list[_Placed]:
    """The objects of an image: one, or a relation's subject and reference."""
    if "relation" not in attrs:
        return [_place(rng, attrs["shape"], attrs["color"], attrs["size"], attrs["position"], 1.0)]
    return [_place(rng, attrs["shape" + s], attrs["color" + s], attrs["size" + s], attrs["position" + s],
                   _PAIR_SCALE) for s in ("", "2")]


def _mask(obj: _Placed, image_size: int) -> Image.Image:
    """The object's coverage, an "L" image (0 = background, 255 = object): drawn at 2x, then box-downscaled."""
    side = 2 * image_size
    canvas = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy, r = obj.cx * side, obj.cy * side, obj.radius * side
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        cos, sin = math.cos(obj.angle), math.sin(obj.angle)
        points = [(cx + r * (x * cos - y * sin), cy + r * (x * sin + y * cos)) for x, y in _UNIT_POLYGONS[obj.shape]]
        draw.polygon(points, fill=255)
    return canvas.reduce(2)  # 2x2 box average: antialiased edges


@functools.lru_cache(maxsize=16)
def _ramps(image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [-0.5, 0.5]: x and y, each (S, S)."""
    axis = np.linspace(-0.5, 0.5, image_size, dtype=np.float32)
    shape = (image_size, image_size)
    return np.broadcast_to(axis[None, :], shape), np.broadcast_to(axis[:, None], shape)


def _background(rng: random.Random, image_size: int) -> Image.Image:
    """A light, low-saturation RGB background: tint + linear gradient + grey noise, every channel in [190, 255]."""
    level = rng.uniform(212.0, 242.0)
    tint = np.array([level + rng.uniform(-10.0, 10.0) for _ in range(3)], dtype=np.float32)  # (3,)
    angle, slope, grain = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 12.0), rng.uniform(0.0, 6.0)
    xs, ys = _ramps(image_size)
    noise = np.frombuffer(rng.randbytes(image_size * image_size), dtype=np.uint8).astype(np.float32)  # (S * S,)
    noise = noise.reshape(image_size, image_size) * np.float32(grain / 127.5) - np.float32(grain)  # (S, S)
    shade = np.float32(math.cos(angle) * slope) * xs + np.float32(math.sin(angle) * slope) * ys + noise  # (S, S)
    pixels = tint + shade[:, :, None]  # (S, S, 3)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))  # RGB


def render(attributes: dict[str, str], image_size: int = 32, rng: random.Random | None = None) -> Image.Image:
    """Draw an image (RGB, ``image_size`` x ``image_size``) of ``attributes``; the jitter comes from ``rng``.

    ``attributes`` is a :func:`sample_attributes` dict; with a ``relation`` key it draws both objects. The same
    ``rng`` state gives the same image; ``rng=None`` means ``random.Random(0)``.
    """
    _check_image_size(image_size)
    rng = random.Random(0) if rng is None else rng
    objects = _layout(attributes, rng)
    image = _background(rng, image_size)
    for obj in objects:
        image.paste(obj.rgb, mask=_mask(obj, image_size))  # blends the colour in by the mask's coverage
    return image


def _render_range(args: tuple[str, int, int, int, str]) -> tuple[np.ndarray, np.ndarray]:
    """Images ``start .. start + n - 1`` of a stream -> (uint8 (n, S, S, 3), combo indices (n,)).

    A top-level function, so that worker processes can run it."""
    stream, start, n, image_size, split = args
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    combos = np.empty(n, dtype=np.int64)
    for k in range(n):
        rng = random.Random(f"{stream}:{start + k}")
        attrs = sample_attributes(rng, split)
        images[k] = np.asarray(render(attrs, image_size, rng), dtype=np.uint8)
        combos[k] = combo_index(attrs)
    return images, combos


def _render_jobs(n: int, seed: int, split: str, image_size: int,
                 chunk: int = 2048) -> list[tuple[str, int, int, int, str]]:
    stream = f"dalle:{split}:{seed}"
    return [(stream, s, min(chunk, n - s), image_size, split) for s in range(0, n, chunk)]


def rendered_chunks(n: int, seed: int, split: str, image_size: int, workers: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Chunks of :func:`render_images`, in order: (uint8 (c, 3, S, S), combo indices (c,)) each."""
    jobs = _render_jobs(n, seed, split, image_size)
    if workers > 1 and len(jobs) > 1:
        # "spawn": fresh interpreters, safe even after CUDA or torch's thread pools have started in this process
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for images, combos in pool.map(_render_range, jobs):
                yield torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(combos)
    else:
        for job in jobs:
            images, combos = _render_range(job)
            yield torch.from_numpy(images).permute(0, 3, 1, 2), torch.from_numpy(combos)  # (c, 3, S, S), (c,)


def render_images(n: int, seed: int = 0, split: str = "train", image_size: int = 32,
                  workers: int = 1) -> tuple[Tensor, Tensor]:
    """``n`` Shapes images of ``split`` -> (uint8 (n, 3, S, S), combo indices (n,)).

    Image ``i`` is a pure function of (seed, split, i), whatever ``workers`` is (processes that render chunks)."""
    parts = list(rendered_chunks(n, seed, split, image_size, workers))
    if not parts:
        return torch.zeros(0, 3, image_size, image_size, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)
    return torch.cat([p[0] for p in parts]).contiguous(), torch.cat([p[1] for p in parts])


# ----------------------------------------------------------------------------------------------------------
# The dataset
# ----------------------------------------------------------------------------------------------------------


class ShapesDataset:
    """Captioned Shapes images, like a torchvision dataset: ``dataset[i] -> (PIL.Image, caption)``.

    Args:
        split: "train", "test" (new images of the training compositions) or "heldout" (only :data:`HELDOUT`).
        n: number of images.
        image_size: side of the square images in pixels.
        seed: item ``i`` depends only on (split, seed, relation, i): a larger ``n`` extends the same sequence.
        lang: caption language, "en", "bn", or "both" (each item draws its language at random).
        transform: applied to the PIL image, e.g. a torchvision transform.
        relation: two objects per image with a spatial relation (see :data:`RELATION_TEMPLATES`).

    ``attributes[i]`` holds item ``i``'s attributes (English words), drawn up front (fast); images and captions
    are rendered lazily in ``__getitem__`` (several thousand images/s at 32 px on one core: see
    ``tests/benchmarks/bench_shapes.py``).
    """

    def __init__(self, split: str = "train", n: int = 10_000, image_size: int = 32, seed: int = 0,
                 lang: str = "en", transform: Callable[[Image.Image], Any] | None = None,
                 relation: bool = False) -> None:
        _check_choice("split", split, SPLITS)
        _check_choice("lang", lang, LANGS + ("both",))
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int; got {n!r}")
        _check_image_size(image_size)
        self.split, self.n, self.image_size, self.seed = split, n, image_size, seed
        self.lang, self.transform, self.relation = lang, transform, relation
        self._stream = f"shapes:{split}:{seed}:{int(relation)}"
        rng = random.Random(self._stream)
        self.attributes: list[dict[str, str]] = [sample_attributes(rng, split, relation) for _ in range(n)]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[Any, str]:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for a ShapesDataset of {self.n} items")
        index %= self.n
        attrs = self.attributes[index]
        rng = random.Random(f"{self._stream}:{index}")
        lang = rng.choice(LANGS) if self.lang == "both" else self.lang
        text = caption(attrs, lang, rng=rng)
        image = render(attrs, self.image_size, rng)
        return (self.transform(image) if self.transform is not None else image), text

    def __repr__(self) -> str:
        return (f"ShapesDataset(split={self.split!r}, n={self.n}, image_size={self.image_size}, seed={self.seed}, "
                f"lang={self.lang!r}, relation={self.relation})")


def dataset_images(n: int = 1000, split: str = "test", seed: int = EVAL_SEED, image_size: int = 32) -> Tensor:
    """The pictures of ``ShapesDataset(split, n=n, image_size=image_size, seed=seed)`` as one float batch
    (n, 3, S, S) in [0, 1]: a fixed evaluation set (the VQGAN's card uses 1,000 ``"test"`` pictures, seed 2026)."""
    dataset = ShapesDataset(split, n=n, image_size=image_size, seed=seed)
    return to_tensor([dataset[i][0] for i in range(n)])  # (n, 3, S, S)


def caption_corpus(n: int = 20_000, seed: int = 0, langs: Sequence[str] = LANGS) -> list[str]:
    """``n`` captions cycling through the templates of every language: the base training templates (the first
    :data:`BASE_TEMPLATES`, what the shipped course tokenizer was trained on), evaluation and relation templates.

    The attributes are drawn from all compositions, held-out ones included: the corpus teaches a tokenizer the
    words, not the images. Languages alternate in the order of ``langs``.
    """
    langs = tuple(langs)
    if not langs:
        raise ValueError("langs must name at least one language")
    for lang in langs:
        _check_choice("lang", lang, LANGS)
    pools = {lang: [(t, False) for t in TRAIN_TEMPLATES[lang][:BASE_TEMPLATES] + EVAL_TEMPLATES[lang]]
             + [(t, True) for t in RELATION_TEMPLATES[lang]] for lang in langs}
    rng = random.Random(f"corpus:{seed}")
    corpus = []
    for i in range(n):
        lang = langs[i % len(langs)]
        template, relation = pools[lang][(i // len(langs)) % len(pools[lang])]
        corpus.append(caption(_sample(rng, _compositions("all"), relation), lang, template=template))
    return corpus


# ----------------------------------------------------------------------------------------------------------
# Real photos (bundled with scikit-image, no network needed)
# ----------------------------------------------------------------------------------------------------------


class Photo(NamedTuple):
    """A real photo with a short label in both languages."""
    name: str
    image: Image.Image  # RGB
    label_en: str
    label_bn: str


# name -> (label_en, label_bn); the name is the scikit-image loader.
_PHOTOS: dict[str, tuple[str, str]] = {
    "chelsea": ("a cat", "একটি বিড়াল"),
    "astronaut": ("an astronaut", "একজন নভোচারী"),
    "camera": ("a man with a camera", "ক্যামেরা হাতে একজন লোক"),
    "coffee": ("a cup of coffee", "এক কাপ কফি"),
    "rocket": ("a rocket", "একটি রকেট"),
    "horse": ("a horse", "একটি ঘোড়া"),
    "coins": ("coins", "কয়েকটি মুদ্রা"),
    "stereo_motorcycle": ("a motorcycle", "একটি মোটরসাইকেল"),
}


def _photo_array(name: str) -> np.ndarray:
    import skimage.data  # imported here: only this function needs scikit-image

    array = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        array = array[0]  # (left, right, disparity): the left view
    return (array.astype(np.uint8) * 255) if array.dtype == bool else array  # the horse is a bool silhouette


def sample_photos() -> list[Photo]:
    """A few real photos shipped with scikit-image (cat, astronaut, cameraman, ...) as RGB images."""
    return [Photo(name.removeprefix("stereo_"), Image.fromarray(_photo_array(name)).convert("RGB"), en, bn)
            for name, (en, bn) in _PHOTOS.items()]
