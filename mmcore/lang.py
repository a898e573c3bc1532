"""The notebook's language: one setting (``LANG = "en"`` or ``"bn"``, the lesson's ``parameters`` cell) that everything a
lesson prints or draws follows.

The lessons share their code between the English and the Bengali notebook; only the ``parameters`` cell differs. A
printed sentence or a figure label is written once with both texts, ``pick(LANG, "seconds", "সেকেন্ড")``; words that
recur across lessons live in :data:`WORDS` (``word("seen", LANG)``). Shape and colour words have their own tables in
:mod:`mmcore.data`.
"""
from __future__ import annotations

import re

__all__ = ["LANGS", "WORDS", "check_lang", "pick", "word", "bengali_share"]

LANGS: tuple[str, ...] = ("en", "bn")

#: Recurring words of printed tables, figure titles and verdicts: key -> {language: text}.
WORDS: dict[str, dict[str, str]] = {
    "ok": {"en": "ok", "bn": "ঠিক"},
    "wrong": {"en": "wrong", "bn": "ভুল"},
    "shape": {"en": "shape", "bn": "আকৃতি"},
    "color": {"en": "colour", "bn": "রং"},
    "position": {"en": "position", "bn": "অবস্থান"},
    "size": {"en": "size", "bn": "আকার"},
    "not clean": {"en": "not clean", "bn": "অপরিচ্ছন্ন"},
    "seen": {"en": "seen", "bn": "দেখা"},
    "held-out": {"en": "held-out", "bn": "আলাদা রাখা"},
    "original": {"en": "original", "bn": "মূল ছবি"},
    "seconds": {"en": "seconds", "bn": "সেকেন্ড"},
    "step": {"en": "step", "bn": "ধাপ"},
    "loss": {"en": "loss", "bn": "লস"},
    "accuracy": {"en": "accuracy", "bn": "নির্ভুলতা"},
    "prompt": {"en": "prompt", "bn": "প্রম্পট"},
    "score": {"en": "score", "bn": "স্কোর"},
    "fidelity": {"en": "fidelity", "bn": "বিশ্বস্ততা"},
}

_BENGALI = re.compile(r"[\u0980-\u09FF]")
_LETTER = re.compile(r"[A-Za-z\u0980-\u09FF]")


def check_lang(lang: str) -> str:
    """``lang`` itself when it is "en" or "bn"; else a ValueError that says what to write."""
    if lang not in LANGS:
        raise ValueError(f"lang must be 'en' or 'bn' (the notebook's LANG); got {lang!r}")
    return lang


def pick(lang: str, en: str, bn: str) -> str:
    """The text for ``lang``: ``pick(LANG, "held-out compositions", "আলাদা রাখা সমন্বয়")``."""
    return en if check_lang(lang) == "en" else bn


def word(key: str, lang: str) -> str:
    """A recurring word (:data:`WORDS`) in ``lang``; an unknown key is a KeyError that lists the known ones."""
    if key not in WORDS:
        raise KeyError(f"no word {key!r} in mmcore.lang.WORDS; known: {sorted(WORDS)}")
    return WORDS[key][check_lang(lang)]


def bengali_share(text: str) -> float:
    """The fraction of the letters (Latin and Bengali) in ``text`` that are Bengali; 0 for text without letters."""
    letters = _LETTER.findall(text)
    return sum(bool(_BENGALI.match(c)) for c in letters) / len(letters) if letters else 0.0
