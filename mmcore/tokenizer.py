"""Byte-level byte-pair encoding (BPE), written from scratch: the text tokenizer of CLIP and of this course.

How BPE works, in five lines:

1. Clean the text (fix broken characters, lower-case, collapse whitespace) and cut it into *pre-tokens*
   (words, single digits, punctuation runs) with a regular expression. Tokens never cross a pre-token.
2. Write each pre-token as its UTF-8 bytes. Every byte is shown as one printable character
   (``bytes_to_unicode``), so any text at all, in any script, can be tokenised: nothing is out of vocabulary.
3. Training: count every adjacent pair of symbols over the corpus, *merge* the most frequent pair into one new
   symbol everywhere, record the merge, and repeat until the vocabulary is as large as asked.
4. Encoding: apply the recorded merges to each pre-token, always the earliest-learnt (lowest *rank*) pair first,
   until no learnt pair is left (``bpe_merge``). Each final symbol is one token id.
5. Decoding: look the ids up, join their bytes, decode the UTF-8.

Two flavours share this code:

* ``BPETokenizer.openai()`` reproduces OpenAI's CLIP tokenizer token for token (49,408 ids, ``</w>`` marks the
  last symbol of a word, ``ftfy`` + HTML-unescape cleaning, context length 77).
* ``BPETokenizer.course()`` is the small tokenizer trained for this course on English *and Bengali* captions. Its
  pre-tokeniser keeps a Bengali word whole: OpenAI's pattern ``[\\p{L}]+`` stops at vowel signs and the virama
  (they are Unicode *marks*, ``\\p{M}``), so "বিড়ালের" falls apart; the course pattern uses ``[\\p{L}\\p{M}]+``.
  Course text is NFC-normalised, lower-cased and whitespace-collapsed; spaces are kept as bytes (a word carries its
  leading space), so ``decode(encode(s)) == normalize(s)`` exactly.

Regenerate the shipped course tokenizer (``data/tokenizer/``) with::

    python -m mmcore.tokenizer train-course

``tokenizer.explain("...")`` shows every step above for one text (made for notebooks).
"""
from __future__ import annotations

import gzip
import hashlib
import heapq
import html
import importlib.util
import json
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import regex

if TYPE_CHECKING:  # torch is imported lazily: training and encoding do not need it
    import torch

__all__ = [
    "BPETokenizer",
    "TokenizerConfig",
    "ContextLengthError",
    "Explanation",
    "bytes_to_unicode",
    "bpe_merge",
    "basic_clean",
    "ftfy_is_identity",
    "whitespace_clean",
    "course_normalize",
    "course_training_corpus",
    "bengali_alphabet_lines",
    "train_course_tokenizer",
    "SOT",
    "EOT",
    "END_OF_WORD",
    "PATTERNS",
    "COURSE_DIR",
]

SOT = "<|startoftext|>"  # start-of-text special token
EOT = "<|endoftext|>"  # end-of-text special token
END_OF_WORD = "</w>"  # OpenAI's suffix on the last symbol of every pre-token

# Where the trained course tokenizer is shipped (relative to the package, so it works from any directory).
COURSE_DIR = Path(__file__).resolve().parent.parent / "data" / "tokenizer"

OPENAI_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# OpenAI's merges file ships with the course (MIT licence, data/tokenizer/openai/LICENSE), so a core install works
# offline; it is checked against the SHA-256 of the file in github.com/openai/CLIP before it is used.
OPENAI_VOCAB_PATH = COURSE_DIR / "openai" / OPENAI_VOCAB_FILE
OPENAI_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
OPENAI_NUM_MERGES = 49152 - 256 - 2  # OpenAI uses the first 48,894 merges of the file

# Pre-tokenisation patterns, by name (the name is what a saved tokenizer records).
PATTERNS = {
    # OpenAI's CLIP pattern (applied to lower-cased text): special tokens, English contractions, letter runs,
    # single digits, runs of everything else except whitespace. Marks (\p{M}) are not letters here, so an Indic
    # word is cut at every vowel sign and virama.
    "openai": r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    # The course pattern: letters *and marks* form one word, so a Bengali word stays whole. A word keeps the single
    # space in front of it (text is whitespace-collapsed first), which makes decoding exact. The last branch
    # (\s+) only catches a space that stands before a special token.
    "course": r"""'s|'t|'re|'ve|'m|'ll|'d| ?[\p{L}\p{M}]+| ?\p{N}| ?[^\s\p{L}\p{M}\p{N}]+|\s+""",
}

_WHITESPACE = regex.compile(r"\s+")
# Text made only of these characters, and already in NFC, is left unchanged by ftfy.fix_text and html.unescape:
# printable ASCII without '&' (no HTML entity), tab, newline, the Bengali block, the danda signs and ZWNJ/ZWJ.
# Why: without '&' there is nothing to unescape; ftfy's mojibake detector (ftfy.badness) only fires on Latin-1,
# Windows-125x, box-drawing and maths characters, none of which is here; its other fixers (C1 controls, ligatures,
# wide forms, curly quotes, line breaks, surrogates, terminal escapes, control characters) target characters that
# are not here either; and its last step is NFC. tests/test_tokenizer.py checks this against ftfy itself.
_FTFY_IDENTITY = regex.compile(r"[\t\n\x20-\x25\x27-\x7e\u0980-\u09ff\u0964\u0965\u200c\u200d]*")


def ftfy_is_identity(text: str) -> bool:
    """True when ``ftfy.fix_text`` and ``html.unescape`` provably return ``text`` unchanged (see above)."""
    return _FTFY_IDENTITY.fullmatch(text) is not None and (text.isascii() or unicodedata.is_normalized("NFC", text))
_CACHE_LIMIT = 200_000  # entries per cache; a full cache is simply emptied


# ----------------------------------------------------------------------------------------------------------------
# Small pure functions: the maths of byte-level BPE


@lru_cache(maxsize=None)
def bytes_to_unicode() -> dict[int, str]:
    """Map each of the 256 byte values to one printable character.

    Printable Latin-1 bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves; the other 68 bytes
    (space, control bytes, ...) are shifted to characters from U+0100 up, in byte order, so the space byte 0x20 is
    shown as ``Ġ``. The dict's order (printable bytes first) is also the order of token ids 0..255.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    shifted = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def bpe_merge(
    word: Sequence[str],
    ranks: dict[tuple[str, str], int],
    trace: list[tuple[int, tuple[str, str], list[str]]] | None = None,
) -> list[str]:
    """Apply learnt merges to one word (a sequence of symbols) and return its final symbols.

    At each step the adjacent pair with the lowest rank (the earliest-learnt merge) is merged at every place it
    occurs, scanning left to right; this repeats until no adjacent pair is a learnt merge. When ``trace`` is a list,
    each step is appended to it as ``(rank, pair, symbols_after)``.
    """
    symbols = list(word)
    while len(symbols) > 1:
        best_rank, best = None, None
        for pair in zip(symbols, symbols[1:]):
            rank = ranks.get(pair)
            if rank is not None and (best_rank is None or rank < best_rank):
                best_rank, best = rank, pair
        if best is None:
            break
        first, second = best
        merged: list[str] = []
        i, n = 0, len(symbols)
        while i < n:
            if i < n - 1 and symbols[i] == first and symbols[i + 1] == second:
                merged.append(first + second)
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
        if trace is not None:
            trace.append((best_rank, best, list(symbols)))
    return symbols


def whitespace_clean(text: str) -> str:
    """Collapse every run of whitespace (tabs, newlines, NBSP, ...) into one space and strip both ends."""
    return _WHITESPACE.sub(" ", text).strip()


def basic_clean(text: str) -> str:
    """OpenAI's cleaning: repair broken Unicode with ``ftfy.fix_text``, unescape HTML entities twice, strip.

    Plain text that ftfy and ``html.unescape`` provably leave unchanged (printable ASCII without ``&``, NFC
    Bengali: ``ftfy_is_identity``) is only stripped: ftfy is by far the slowest step of tokenisation.
    """
    if ftfy_is_identity(text):
        return text.strip()
    try:
        import ftfy
    except ImportError as err:  # pragma: no cover - ftfy is a dependency of mmcore
        raise ImportError("OpenAI-compatible cleaning needs ftfy: pip install ftfy") from err
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return text.strip()


def openai_normalize(text: str) -> str:
    """The full text normalisation of OpenAI's CLIP tokenizer: ``basic_clean``, ``whitespace_clean``, lower-case."""
    return whitespace_clean(basic_clean(text)).lower()


def course_normalize(text: str) -> str:
    """The course tokenizer's normalisation: Unicode NFC, lower-case, whitespace collapse.

    Under NFC the Bengali letters য় (U+09DF), ড় (U+09DC) and ঢ় (U+09DD) become two code points, base consonant +
    nukta (য + U+09BC, ...): Unicode excludes the one-code-point forms from composition. So both ways of typing
    these letters give the same tokens. No ftfy here: course text is assumed to be well-formed Unicode.
    """
    text = unicodedata.normalize("NFC", text).lower()
    return whitespace_clean(unicodedata.normalize("NFC", text))


_NORMALIZERS = {"openai": openai_normalize, "course": course_normalize}


# ----------------------------------------------------------------------------------------------------------------
# Configuration, errors and the explanation object


@dataclass
class TokenizerConfig:
    """Everything (besides the merges) that defines a tokenizer; saved as ``tokenizer.json``."""

    name: str = "course"  # a label: "openai", "course", or your own
    pattern: str = "course"  # pre-tokenisation pattern, a key of PATTERNS
    # "openai" (ftfy, HTML unescape, whitespace, lower) or "course" (NFC, lower, whitespace)
    normalization: str = "course"
    end_of_word: str | None = None  # suffix on each word's last symbol ("</w>" for OpenAI); None: spaces are bytes
    special_tokens: tuple[str, ...] = (SOT, EOT)  # appended after the merges; the first is start, the second end
    context_length: int = 32  # default row length of tokenizer(texts)

    @classmethod
    def openai(cls) -> "TokenizerConfig":
        """OpenAI CLIP's settings."""
        return cls(name="openai", pattern="openai", normalization="openai", end_of_word=END_OF_WORD, context_length=77)

    @classmethod
    def course(cls) -> "TokenizerConfig":
        """The course tokenizer's settings: Bengali-safe words, NFC, exact round trips, 32 tokens per row."""
        return cls()

    def __post_init__(self) -> None:
        self.special_tokens = tuple(self.special_tokens)
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown pattern {self.pattern!r}; choose one of {sorted(PATTERNS)}")
        if self.normalization not in _NORMALIZERS:
            raise ValueError(f"unknown normalization {self.normalization!r}; choose one of {sorted(_NORMALIZERS)}")
        if len(self.special_tokens) < 2:
            raise ValueError("special_tokens needs at least a start token and an end token")
        if self.context_length < 2:
            raise ValueError("context_length must be at least 2 (start and end token)")


class ContextLengthError(ValueError):
    """A text has more tokens than the context length allows (pass ``truncate=True`` to cut it)."""

    def __init__(self, index: int, n_tokens: int, context_length: int, text: str):
        self.index, self.n_tokens, self.context_length, self.text = index, n_tokens, context_length, text
        preview = text if len(text) <= 60 else text[:57] + "..."
        super().__init__(
            f"text {index} of the batch ({preview!r}) has {n_tokens} tokens including the start and end tokens, "
            f"more than the context length {context_length}. Shorten it, pass a larger context_length, "
            f"or pass truncate=True to cut it."
        )


@dataclass
class PreTokenTrace:
    """How one pre-token became tokens."""

    text: str  # the pre-token, as cut from the cleaned text
    symbols: list[str]  # its bytes in byte-to-unicode form (the starting symbols of BPE)
    merges: list[tuple[int, tuple[str, str], list[str]]]  # (rank, merged pair, symbols after) for each merge applied
    tokens: list[str]  # the final symbols
    ids: list[int]  # their ids
    texts: list[str] = field(default_factory=list)  # what each token reads as ("<e0 a6>" for part of a character)


_EXPLAIN_LABELS = {
    "en": {"tokenizer": "Tokenizer", "cleaning": "Cleaning", "no change": "no change", "result": "result",
           "pre-tokens": "Pre-tokens", "bytes": "Bytes as symbols, then merges (lowest rank first)", "merge": "merge",
           "tokens": "Tokens", "as": "as symbols = id (and as text)", "cleaned": "cleaned",
           "pieces": "Pre-tokens, their bytes and the merges", "pre-token": "pre-token",
           "symbols": "bytes as symbols", "merges": "merges (rank: pair &rarr; symbols)", "ids": "tokens = ids"},
    "bn": {"tokenizer": "টোকেনাইজার", "cleaning": "পরিষ্কার করা", "no change": "কোনো বদল নেই", "result": "ফল",
           "pre-tokens": "প্রি-টোকেন", "bytes": "বাইটগুলো প্রতীক হিসেবে, তারপর মার্জ (সবচেয়ে নিচু ক্রম আগে)",
           "merge": "মার্জ", "tokens": "টোকেন", "as": "প্রতীক = আইডি (আর টেক্সট হিসেবে)", "cleaned": "পরিষ্কার করার পর",
           "pieces": "প্রি-টোকেন, তাদের বাইট আর মার্জগুলো", "pre-token": "প্রি-টোকেন",
           "symbols": "বাইটগুলো প্রতীক হিসেবে", "merges": "মার্জ (ক্রম: জোড়া &rarr; প্রতীক)", "ids": "টোকেন = আইডি"},
}


@dataclass
class Explanation:
    """The step-by-step work of ``BPETokenizer.explain``: print it, or let a notebook render it as HTML."""

    original: str
    cleaning: list[tuple[str, str, str]]  # (step, before, after), every cleaning step in order
    cleaned: str
    pretokens: list[PreTokenTrace] = field(default_factory=list)
    tokenizer_name: str = ""
    lang: str = "en"  # the language of the labels ("en" or "bn"); the data shown is never translated

    @property
    def ids(self) -> list[int]:
        """All token ids (what ``encode`` returns)."""
        return [i for p in self.pretokens for i in p.ids]

    @property
    def tokens(self) -> list[str]:
        """All tokens, as strings in byte-to-unicode form."""
        return [t for p in self.pretokens for t in p.tokens]

    def __str__(self) -> str:
        w = _EXPLAIN_LABELS[self.lang]
        lines = [f"{w['tokenizer']}: {self.tokenizer_name}", f"1. {w['cleaning']}: {self.original!r}"]
        for step, before, after in self.cleaning:
            lines.append(f"   {step:<22} {before!r} -> {after!r}" if before != after else f"   {step:<22} ({w['no change']})")
        lines.append(f"   {w['result']}: {self.cleaned!r}")
        lines.append(f"2. {w['pre-tokens']} ({len(self.pretokens)}): " + " | ".join(repr(p.text) for p in self.pretokens))
        lines.append(f"3. {w['bytes']}:")
        for p in self.pretokens:
            lines.append(f"   {p.text!r}: {' '.join(p.symbols)}")
            for rank, (a, b), after in p.merges:
                lines.append(f"      {w['merge']} #{rank:<6} {a + ' + ' + b:<26} -> {' '.join(after)}")
        lines.append(f"4. {w['tokens']} ({len(self.ids)}), {w['as']}:")
        for p in self.pretokens:
            lines.append("   " + "  ".join(f"{t}={i} ({x!r})" for t, i, x in zip(p.tokens, p.ids, p.texts)))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        w = _EXPLAIN_LABELS[self.lang]
        rows = []
        for step, before, after in self.cleaning:
            change = (
                f"<code>{esc(repr(before))}</code> &rarr; <code>{esc(repr(after))}</code>"
                if before != after
                else w["no change"]
            )
            rows.append(f"<tr><td>{esc(step)}</td><td style='text-align:left'>{change}</td></tr>")
        out = [
            f"<div><b>{w['tokenizer']}: {esc(self.tokenizer_name)}</b>",
            f"<p><b>1. {w['cleaning']}</b></p><table>" + "".join(rows) + "</table>",
            f"<p>{w['cleaned']}: <code>{esc(repr(self.cleaned))}</code></p>",
            f"<p><b>2&ndash;3. {w['pieces']}</b></p>",
            f"<table><tr><th>{w['pre-token']}</th><th>{w['symbols']}</th><th>{w['merges']}</th>"
            f"<th>{w['ids']}</th></tr>",
        ]
        for p in self.pretokens:
            merges = "<br>".join(
                f"#{r}: <code>{esc(a)}</code>+<code>{esc(b)}</code> &rarr; <code>{esc(' '.join(s))}</code>"
                for r, (a, b), s in p.merges
            )
            toks = " ".join(
                f"<code>{esc(t)}</code>={i} (<code>{esc(repr(x))}</code>)" for t, i, x in zip(p.tokens, p.ids, p.texts)
            )
            out.append(
                f"<tr><td><code>{esc(repr(p.text))}</code></td><td><code>{esc(' '.join(p.symbols))}</code></td>"
                f"<td style='text-align:left'>{merges or '&ndash;'}</td><td style='text-align:left'>{toks}</td></tr>"
            )
        out.append(f"</table><p><b>4. {w['tokens']} ({len(self.ids)}):</b> <code>{self.ids}</code></p></div>")
        return "\n".join(out)


# ----------------------------------------------------------------------------------------------------------------
# The tokenizer


class BPETokenizer:
    """A byte-level BPE tokenizer: ``tokenizer(texts) -> LongTensor[B, L]``, ``encode``, ``decode``, ``explain``.

    Vocabulary layout (the same as OpenAI's): ids 0..255 are the 256 bytes (in ``bytes_to_unicode`` order); with an
    end-of-word suffix, ids 256..511 are the same bytes ending a word (``"a</w>"``); then one id per merge, in
    merge order; then the special tokens (start, end).
    """

    def __init__(self, merges: Sequence[tuple[str, str]], config: TokenizerConfig | None = None):
        self.config = config or TokenizerConfig()
        self.merges: list[tuple[str, str]] = [tuple(m) for m in merges]  # type: ignore[misc]
        byte_symbols = list(bytes_to_unicode().values())
        vocab = list(byte_symbols)
        eow = self.config.end_of_word
        if eow:
            vocab += [s + eow for s in byte_symbols]
        vocab += [a + b for a, b in self.merges]
        vocab += list(self.config.special_tokens)
        self.vocab: list[str] = vocab  # id -> token string
        self.encoder: dict[str, int] = {}
        for i, token in enumerate(vocab):
            # Two merges can spell the same string ("a"+"bc", "ab"+"c"); encoding then uses the first id.
            self.encoder.setdefault(token, i)
        for a, b in self.merges:
            if a not in self.encoder or b not in self.encoder:
                raise ValueError(f"merge ({a!r}, {b!r}) uses a symbol that no earlier merge produced")
        self.ranks: dict[tuple[str, str], int] = {m: r for r, m in enumerate(self.merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self._byte_chars = [self.byte_encoder[b] for b in range(256)]
        self.special_ids = {t: self.encoder[t] for t in self.config.special_tokens}
        self.sot_token: int = self.encoder[self.config.special_tokens[0]]
        self.eot_token: int = self.encoder[self.config.special_tokens[1]]
        self._pattern = regex.compile(PATTERNS[self.config.pattern], regex.IGNORECASE)
        self._normalize = _NORMALIZERS[self.config.normalization]
        # id -> (bytes, ends a word): decoding tables
        self._id_bytes: list[bytes] = []
        self._id_ends_word: list[bool] = []
        for token in vocab:
            ends = bool(eow) and token.endswith(eow)  # type: ignore[arg-type]
            body = token[: -len(eow)] if ends else token  # type: ignore[arg-type]
            if token in self.special_ids:
                self._id_bytes.append(token.encode("utf-8"))
            else:
                self._id_bytes.append(bytes(self.byte_decoder[c] for c in body))
            self._id_ends_word.append(ends)
        self._word_cache: dict[str, tuple[int, ...]] = {}  # pre-token -> ids
        self._text_cache: dict[str, tuple[int, ...]] = {}  # raw text -> ids

    # -- constructors ---------------------------------------------------------------------------------------------

    @classmethod
    def openai(cls, path: str | Path | None = None) -> "BPETokenizer":
        """OpenAI CLIP's tokenizer, token for token, from ``bpe_simple_vocab_16e6.txt.gz``.

        ``path`` is that file (gzipped or plain), or a folder holding it; by default the copy shipped in
        ``data/tokenizer/openai/`` (SHA-256 checked), else the one an installed ``open_clip`` or OpenAI ``clip``
        package carries.
        """
        file = _find_openai_vocab(path)
        opener = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        merges = [tuple(line.split()) for line in lines[1 : OPENAI_NUM_MERGES + 1]]
        bad = [m for m in merges if len(m) != 2]
        if bad or len(merges) != OPENAI_NUM_MERGES:
            raise ValueError(f"{file} does not look like OpenAI's CLIP merges file (bad lines: {bad[:3]})")
        return cls(merges, TokenizerConfig.openai())  # type: ignore[arg-type]

    @classmethod
    def course(cls, path: str | Path | None = None) -> "BPETokenizer":
        """The course tokenizer trained on English + Bengali Shapes captions, shipped in ``data/tokenizer/``."""
        folder = Path(path) if path is not None else COURSE_DIR
        if not (folder / "tokenizer.json").exists():
            raise FileNotFoundError(
                f"no trained course tokenizer at {folder} (tokenizer.json is missing). It ships with the course "
                f"repository in data/tokenizer/; regenerate it with `python -m mmcore.tokenizer train-course`, "
                f"or pass the folder: BPETokenizer.course(path=...)."
            )
        return cls.load(folder)

    @classmethod
    def train(
        cls,
        corpus: Iterable[str],
        vocab_size: int,
        config: TokenizerConfig | None = None,
        min_frequency: int = 2,
        verbose: bool = False,
        whole_characters: bool = True,
    ) -> "BPETokenizer":
        """Learn merges on ``corpus`` until the vocabulary has ``vocab_size`` ids (or no pair occurs
        ``min_frequency`` times). Deterministic: ties between equally frequent pairs go to the smaller pair
        (string order). ``config`` defaults to the course settings.

        With ``whole_characters`` (the default) a merge may not make a token that ends in part of a character or
        starts with a combining mark (see ``_merge_keeps_characters``); plain byte-level BPE has no such rule."""
        config = config or TokenizerConfig.course()
        n_base = 256 * (2 if config.end_of_word else 1) + len(config.special_tokens)
        if not isinstance(vocab_size, int) or vocab_size < n_base:
            raise ValueError(
                f"vocab_size={vocab_size!r} is too small: the {n_base - len(config.special_tokens)} byte symbols and "
                f"{len(config.special_tokens)} special tokens alone need {n_base}"
            )
        if isinstance(corpus, str):
            raise TypeError("corpus must be an iterable of texts, not one str (wrap it in a list)")
        helper = cls([], config)
        word_counts: Counter[str] = Counter()
        for text in corpus:
            if not isinstance(text, str):
                raise TypeError(f"corpus items must be str, got {type(text).__name__}")
            for piece in helper._pretokenize(helper._normalize(text)):
                if piece not in helper.special_ids:
                    word_counts[piece] += 1
        merges = _learn_merges(word_counts, helper, vocab_size - n_base, min_frequency, verbose, whole_characters)
        return cls(merges, config)

    # -- save / load ----------------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``tokenizer.json`` (the config) and ``merges.txt`` (one merge per line, in rank order)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": "mmcore-bpe",
            "version": 1,
            "config": {**asdict(self.config), "special_tokens": list(self.config.special_tokens)},
            "vocab_size": self.vocab_size,
            "num_merges": len(self.merges),
        }
        text = json.dumps(meta, ensure_ascii=False, indent=2) + "\n"
        (directory / "tokenizer.json").write_text(text, encoding="utf-8")
        lines = ["#version: mmcore-bpe 1 (pairs of symbols in byte-to-unicode form, earliest merge first)"]
        lines += [f"{a} {b}" for a, b in self.merges]
        (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "BPETokenizer":
        """Load a tokenizer written by ``save``."""
        directory = Path(directory)
        meta_file, merges_file = directory / "tokenizer.json", directory / "merges.txt"
        for f in (meta_file, merges_file):
            if not f.exists():
                raise FileNotFoundError(f"{f} is missing: {directory} is not a folder written by BPETokenizer.save()")
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if meta.get("format") != "mmcore-bpe":
            raise ValueError(f"{meta_file} is not an mmcore tokenizer file")
        config = TokenizerConfig(**meta["config"])
        lines = merges_file.read_text(encoding="utf-8").split("\n")
        merges = [tuple(line.split(" ")) for line in lines[1:] if line]
        tok = cls(merges, config)  # type: ignore[arg-type]
        if tok.vocab_size != meta.get("vocab_size", tok.vocab_size):
            raise ValueError(f"{directory}: expected vocab_size {meta['vocab_size']}, got {tok.vocab_size}")
        return tok

    # -- properties -----------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of token ids (bytes + merges + special tokens)."""
        return len(self.vocab)

    @property
    def context_length(self) -> int:
        """Default row length of ``tokenizer(texts)``."""
        return self.config.context_length

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(name={self.config.name!r}, vocab_size={self.vocab_size}, "
            f"context_length={self.context_length}, pattern={self.config.pattern!r})"
        )

    def __len__(self) -> int:
        return self.vocab_size

    # -- the pipeline ---------------------------------------------------------------------------------------------

    def normalize(self, text: str) -> str:
        """The cleaning step alone (what ``encode`` tokenises)."""
        return self._normalize(_check_text(text))

    def pre_tokenize(self, text: str) -> list[str]:
        """Cut the *normalised* text into pre-tokens (OpenAI mode keeps special tokens whole, as OpenAI's does)."""
        return self._pretokenize(self.normalize(text))

    def _pretokenize(self, text: str) -> list[str]:
        if self.config.pattern == "openai":
            # OpenAI's single regex (its special-token branches only match where a match starts)
            return self._pattern.findall(text)
        # Course: words and the symbols between them. A special token's text typed by a user ("<|endoftext|>") is
        # plain text here, so it cannot end a caption early; only __call__ places the real start/end tokens.
        return self._pattern.findall(text)

    def _symbols(self, piece: str) -> list[str]:
        """A pre-token's bytes in byte-to-unicode form, with the end-of-word suffix on the last symbol."""
        chars = self._byte_chars
        symbols = [chars[b] for b in piece.encode("utf-8")]
        if self.config.end_of_word and symbols:
            symbols[-1] += self.config.end_of_word
        return symbols

    def _word_ids(self, piece: str) -> tuple[int, ...]:
        ids = self._word_cache.get(piece)
        if ids is None:
            special = self.special_ids.get(piece)
            if special is not None:
                ids = (special,)
            else:
                enc = self.encoder
                ids = tuple(enc[s] for s in bpe_merge(self._symbols(piece), self.ranks))
            if len(self._word_cache) >= _CACHE_LIMIT:
                self._word_cache.clear()
            self._word_cache[piece] = ids
        return ids

    def _encode_tuple(self, text: str) -> tuple[int, ...]:
        ids = self._text_cache.get(text)
        if ids is None:
            _check_text(text)  # only on a cache miss: a cached text was checked when it was first seen
            out: list[int] = []
            cache, word_ids = self._word_cache, self._word_ids
            for piece in self._pretokenize(self._normalize(text)):
                hit = cache.get(piece)
                out.extend(hit if hit is not None else word_ids(piece))
            ids = tuple(out)
            if len(self._text_cache) >= _CACHE_LIMIT:
                self._text_cache.clear()
            self._text_cache[text] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without the start/end tokens."""
        return list(self._encode_tuple(_check_text(text)))

    def tokenize(self, text: str) -> list[str]:
        """The tokens of one text as strings (byte-to-unicode form): handy to look at."""
        return [self.vocab[i] for i in self.encode(text)]

    def decode(self, ids: Any, skip_special_tokens: bool = True) -> str:
        """Text of a list / tuple / 1-D tensor or array of ids.

        Trailing zeros after the last end-of-text token are padding and are dropped (only there: in OpenAI's
        vocabulary id 0 is "!"). Special tokens are dropped unless ``skip_special_tokens=False``. In OpenAI mode a
        space is put after every word-final token (the original spacing is lost), without a trailing space.
        """
        if hasattr(ids, "tolist"):  # torch tensor / numpy array
            if getattr(ids, "ndim", 1) != 1:
                shape = tuple(ids.shape)
                raise ValueError(f"decode takes one row of ids (1-D), got shape {shape}; decode rows one by one")
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
            raise TypeError(f"decode takes a sequence of int ids, got {type(ids).__name__}")
        ids = list(ids)
        eot = self.eot_token
        if eot in ids:
            last = len(ids) - 1 - ids[::-1].index(eot)
            end = len(ids)
            while end > last + 1 and ids[end - 1] == 0:
                end -= 1
            ids = ids[:end]
        n = self.vocab_size
        parts: list[bytes] = []
        id_bytes, ends = self._id_bytes, self._id_ends_word
        specials = set(self.special_ids.values())
        for i in ids:
            if isinstance(i, bool) or not hasattr(i, "__index__"):
                raise TypeError(f"token ids must be int, got {type(i).__name__} ({i!r})")
            i = i.__index__()  # numpy integers too
            if not 0 <= i < n:
                raise ValueError(f"token id {i} is out of range for a vocabulary of {n}")
            if i in specials:
                if skip_special_tokens:
                    continue
                parts.append(id_bytes[i])  # no space after a special token: OpenAI's decode writes none either
                continue
            parts.append(id_bytes[i] + b" " if ends[i] else id_bytes[i])
        text = b"".join(parts).decode("utf-8", errors="replace")
        if self.config.end_of_word and text.endswith(" "):
            text = text[:-1]
        return text

    def token_text(self, token_id: int) -> str:
        """What one token reads as: its text, or its bytes in hex (``"<e0 a6>"``) when it is part of a character."""
        data = self._id_bytes[token_id]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return "<" + data.hex(" ") + ">"
        return text + ("</w>" if self._id_ends_word[token_id] else "")

    def __call__(
        self, texts: str | Sequence[str], context_length: int | None = None, truncate: bool = False
    ) -> "torch.Tensor":
        """Tokenise a text or a list of texts into a ``LongTensor[B, context_length]``.

        Each row is ``[start] + tokens + [end]`` padded with 0. A text that does not fit raises
        ``ContextLengthError`` unless ``truncate=True``, which cuts the row and makes its last token end-of-text.
        """
        import torch

        if isinstance(texts, str):
            texts = [texts]
        elif texts is None or not isinstance(texts, (list, tuple)):
            raise TypeError(f"texts must be a str or a list of str, got {type(texts).__name__}")
        length = self.context_length if context_length is None else context_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 2:
            raise ValueError(f"context_length must be an int >= 2, got {length!r}")
        sot, eot = self.sot_token, self.eot_token
        rows: list[list[int]] = []
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] must be a str, got {type(text).__name__} ({text!r})")
            ids = self._encode_tuple(text)
            n = len(ids) + 2
            if n <= length:
                rows.append([sot, *ids, eot] + [0] * (length - n))
            elif truncate:
                rows.append([sot, *ids[: length - 2], eot])
            else:
                raise ContextLengthError(index, n, length, text)
        if not rows:
            return torch.zeros(0, length, dtype=torch.long)
        return torch.tensor(rows, dtype=torch.long)

    # -- teaching -------------------------------------------------------------------------------------------------

    def explain(self, text: str, lang: str = "en") -> Explanation:
        """Every step of tokenising ``text``: cleaning, pre-tokens, bytes, each merge, final tokens and ids.

        ``print(tok.explain("..."))`` in a terminal; in a notebook the result renders as a table. ``lang``: the
        language of the labels ("en" or "bn").
        """
        text = _check_text(text)
        if lang not in _EXPLAIN_LABELS:
            raise ValueError(f"lang must be 'en' or 'bn'; got {lang!r}")
        steps: list[tuple[str, str, str]] = []

        def step(name: str, fn: Any, value: str) -> str:
            out = fn(value)
            steps.append((name, value, out))
            return out

        t = text
        if self.config.normalization == "openai":
            if ftfy_is_identity(t):
                t = step("ftfy.fix_text", lambda s: s, t)
            else:
                import ftfy

                t = step("ftfy.fix_text", ftfy.fix_text, t)
            t = step("html.unescape (x2)", lambda s: html.unescape(html.unescape(s)), t)
            t = step("whitespace collapse", whitespace_clean, t)
            t = step("lower-case", str.lower, t)
        else:
            t = step("Unicode NFC", lambda s: unicodedata.normalize("NFC", s), t)
            t = step("lower-case", lambda s: unicodedata.normalize("NFC", s.lower()), t)
            t = step("whitespace collapse", whitespace_clean, t)
        assert t == self._normalize(text)
        traces = []
        for piece in self._pretokenize(t):
            if piece in self.special_ids:
                traces.append(PreTokenTrace(piece, [piece], [], [piece], [self.special_ids[piece]], [piece]))
                continue
            symbols = self._symbols(piece)
            merges: list[tuple[int, tuple[str, str], list[str]]] = []
            final = bpe_merge(symbols, self.ranks, trace=merges)
            ids = [self.encoder[s] for s in final]
            traces.append(PreTokenTrace(piece, symbols, merges, final, ids, [self.token_text(i) for i in ids]))
        return Explanation(text, steps, t, traces, self.config.name, lang)


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def _check_text(text: Any) -> str:
    """``text`` if it is a string of real characters; else a TypeError, or a ValueError naming a lone surrogate."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__} ({text!r})")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(
            f"text {text[:40]!r} contains {text[error.start]!r} at position {error.start}: half of a character pair "
            "(a 'lone surrogate', usually from a broken copy-paste), not a real character. Remove it, e.g. with "
            "text.encode('utf-8', 'ignore').decode()") from None
    return text


def _find_openai_vocab(path: str | Path | None) -> Path:
    """The OpenAI merges file: ``path`` (file or folder), else the course's checked copy, else open_clip's or clip's."""
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / OPENAI_VOCAB_FILE
        if not p.is_file():
            raise FileNotFoundError(f"OpenAI's CLIP vocabulary {OPENAI_VOCAB_FILE} not found at {p}")
        return p
    if OPENAI_VOCAB_PATH.is_file():
        digest = hashlib.sha256(OPENAI_VOCAB_PATH.read_bytes()).hexdigest()
        if digest != OPENAI_VOCAB_SHA256:
            raise ValueError(
                f"{OPENAI_VOCAB_PATH} is damaged (SHA-256 {digest[:12]}..., expected {OPENAI_VOCAB_SHA256[:12]}...): "
                f"restore the course's copy with `git checkout -- data/tokenizer/openai`"
            )
        return OPENAI_VOCAB_PATH
    for package in ("open_clip", "clip"):
        try:
            spec = importlib.util.find_spec(package)  # finds the folder without importing the package
        except (ImportError, ValueError):
            spec = None
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = Path(folder) / OPENAI_VOCAB_FILE
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(
        f"OpenAI's CLIP vocabulary ({OPENAI_VOCAB_FILE}) was not found: the course ships it in {OPENAI_VOCAB_PATH.parent} "
        f"(restore the folder with `git checkout`), or pass its path: BPETokenizer.openai(path='.../{OPENAI_VOCAB_FILE}')."
    )


def _utf8_length(lead: int) -> int:
    """Length of the UTF-8 sequence that starts with byte ``lead`` (1 for a stray continuation byte)."""
    return 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4 if lead >> 3 == 0b11110 else 1


def _merge_keeps_characters(pair: tuple[str, str], helper: BPETokenizer) -> bool:
    """Whether merging ``pair`` makes a token that respects characters (the course trainer's rule).

    Allowed: bytes that stay inside one character (``e0 a6`` + ``a4`` -> "ত"), and whole characters joined to
    whole characters, as long as the result does not start with a combining mark (a vowel sign or virama must
    join the letter before it, never the one after). So a course token is either a piece of one character (the bytes
    on the way to it) or whole characters, never whole characters plus half of the next one, and it never starts
    with a mark.
    """
    eow = helper.config.end_of_word or ""
    a, b = (t[: -len(eow)] if eow and t.endswith(eow) else t for t in pair)
    ba = bytes(helper.byte_decoder[c] for c in a)
    bb = bytes(helper.byte_decoder[c] for c in b)
    try:
        ta = ba.decode("utf-8")
    except UnicodeDecodeError:  # a is part of a character: b must continue that same character
        return len(ba) + len(bb) <= _utf8_length(ba[0])
    try:
        tb = bb.decode("utf-8")
    except UnicodeDecodeError:  # whole characters followed by a piece of one
        return False
    text = ta + tb
    return not unicodedata.category(text[0]).startswith("M")


def _learn_merges(
    word_counts: Counter[str],
    helper: BPETokenizer,
    n_merges: int,
    min_frequency: int,
    verbose: bool,
    whole_characters: bool = True,
) -> list[tuple[str, str]]:
    """The BPE training loop, with incremental pair counts and a lazy max-heap.

    ``words[k]`` is the k-th distinct pre-token as a list of symbols, ``freq[k]`` its count; ``pair_count`` holds
    the weighted count of every adjacent pair and ``where`` the words that contain it.
    """
    words = [helper._symbols(w) for w in sorted(word_counts)]
    freq = [word_counts[w] for w in sorted(word_counts)]
    pair_count: Counter[tuple[str, str]] = Counter()
    where: dict[tuple[str, str], set[int]] = {}
    for k, symbols in enumerate(words):
        for pair in zip(symbols, symbols[1:]):
            pair_count[pair] += freq[k]
            where.setdefault(pair, set()).add(k)
    allowed_cache: dict[tuple[str, str], bool] = {}

    def allowed(pair: tuple[str, str]) -> bool:
        ok = allowed_cache.get(pair)
        if ok is None:
            ok = allowed_cache[pair] = not whole_characters or _merge_keeps_characters(pair, helper)
        return ok

    heap = [(-c, pair) for pair, c in pair_count.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges and heap:
        neg, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -neg:  # stale entry: the count changed since it was pushed
            continue
        if -neg < min_frequency:
            break
        if not allowed(pair):
            continue
        merges.append(pair)
        first, second = pair
        merged_symbol = first + second
        changed: set[tuple[str, str]] = set()
        for k in sorted(where.pop(pair, ())):
            old = words[k]
            new: list[str] = []
            i = 0
            while i < len(old):
                if i < len(old) - 1 and old[i] == first and old[i + 1] == second:
                    new.append(merged_symbol)
                    i += 2
                else:
                    new.append(old[i])
                    i += 1
            for p in zip(old, old[1:]):
                pair_count[p] -= freq[k]
                changed.add(p)
            for p in zip(new, new[1:]):
                pair_count[p] += freq[k]
                where.setdefault(p, set()).add(k)
                changed.add(p)
            words[k] = new
        pair_count.pop(pair, None)
        for p in changed:
            c = pair_count.get(p, 0)
            if c > 0 and p != pair:
                heapq.heappush(heap, (-c, p))
            elif c <= 0:
                pair_count.pop(p, None)
        if verbose and len(merges) % 500 == 0:
            print(f"  {len(merges)} merges, last {first!r} + {second!r} (count {-neg})")
    return merges


# ----------------------------------------------------------------------------------------------------------------
# The course tokenizer: corpus and training recipe

COURSE_VOCAB_SIZE = 3000  # target size; training stops earlier when no pair is frequent enough
COURSE_SEED = 0
COURSE_N_CAPTIONS = 20_000

# General English and Bengali text so that the course tokenizer is not useless outside Shapes: one "document" per
# line, the words repeating across lines on purpose, like in real text (data/tokenizer/general-en.txt, -bn.txt).
GENERAL_EN = (COURSE_DIR / "general-en.txt").read_text(encoding="utf-8")
GENERAL_BN = (COURSE_DIR / "general-bn.txt").read_text(encoding="utf-8")


def bengali_alphabet_lines() -> list[str]:
    """Every Bengali letter, sign and digit, and every consonant + vowel-sign syllable, as lines of text.

    Trained on these, the course tokenizer has a token for every Bengali character (no Bengali character is ever
    cut into raw UTF-8 bytes) and for the common syllables, even in words it has never seen.
    """
    chars = [chr(c) for c in range(0x0980, 0x0A00) if unicodedata.category(chr(c)) != "Cn"]
    consonants = [c for c in chars if "LETTER" in unicodedata.name(c) and 0x0995 <= ord(c) <= 0x09B9]
    signs = [c for c in chars if unicodedata.category(c) in ("Mn", "Mc") and "VOWEL SIGN" in unicodedata.name(c)]
    lines = [" ".join(course_normalize(c) for c in chars)]
    lines += [" ".join(k + s for s in signs + ["\u09cd"]) for k in consonants]
    return lines


def course_training_corpus(n_captions: int = COURSE_N_CAPTIONS, seed: int = COURSE_SEED) -> list[str]:
    """The course tokenizer's training text: Shapes captions in both languages plus the general lines above.

    The general lines are repeated so that their words get merges although they are far fewer than the captions.
    """
    from mmcore.data import caption_corpus  # imported here: the data module is only needed for training

    captions = list(caption_corpus(n=n_captions, seed=seed, langs=("en", "bn")))
    general = [line for block in (GENERAL_EN, GENERAL_BN) for line in block.splitlines() if line.strip()]
    general += bengali_alphabet_lines()
    # Every word also on a line of its own: inside a text a word carries its leading space (" red"), so without
    # these lines a word that starts a prompt ("বৃত্তের ছবি") would be cut into more pieces.
    words = sorted({w.strip(".,:?!।") for line in captions + general for w in line.split()} - {""})
    return captions + general * 20 + words * 2


def train_course_tokenizer(
    out_dir: str | Path | None = COURSE_DIR,
    vocab_size: int = COURSE_VOCAB_SIZE,
    n_captions: int = COURSE_N_CAPTIONS,
    seed: int = COURSE_SEED,
    verbose: bool = True,
) -> BPETokenizer:
    """Train the course tokenizer reproducibly (same corpus, same merges) and save it to ``out_dir``."""
    corpus = course_training_corpus(n_captions, seed)
    tok = BPETokenizer.train(corpus, vocab_size, TokenizerConfig.course(), min_frequency=2, verbose=verbose)
    if out_dir is not None:
        tok.save(out_dir)
        if verbose:
            print(f"saved {tok!r} to {out_dir}")
    return tok


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m mmcore.tokenizer", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train-course", help="train the course tokenizer and save it to data/tokenizer/")
    train.add_argument("--out", default=str(COURSE_DIR))
    train.add_argument("--vocab-size", type=int, default=COURSE_VOCAB_SIZE)
    train.add_argument("--n-captions", type=int, default=COURSE_N_CAPTIONS)
    train.add_argument("--seed", type=int, default=COURSE_SEED)
    explain = sub.add_parser("explain", help="show how a text is tokenised")
    explain.add_argument("text")
    explain.add_argument("--openai", action="store_true", help="use OpenAI's vocabulary instead of the course one")
    args = parser.parse_args(argv)
    if args.command == "train-course":
        train_course_tokenizer(args.out, args.vocab_size, args.n_captions, args.seed)
    else:
        tok = BPETokenizer.openai() if args.openai else BPETokenizer.course()
        print(tok.explain(args.text))


if __name__ == "__main__":
    _main()
