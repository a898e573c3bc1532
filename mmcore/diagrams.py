"""Architecture diagrams, one per model family, drawn by code in the notebook's language.

Each public function draws a block diagram with matplotlib only and returns the figure::

    from mmcore import diagrams
    diagrams.clip(LANG)      # two towers and the N x N similarity matrix
    diagrams.vqgan(LANG)     # encoder -> codebook -> decoder, the patch discriminator
    diagrams.guided(LANG)    # VQGAN+CLIP: the optimisation loop over the latents
    diagrams.dalle(LANG)     # one token stream, a causal transformer, CLIP re-ranking
    diagrams.unclip(LANG)    # text embedding -> prior -> image embedding -> decoder (DALL-E 2)
    diagrams.distillation(LANG)  # a student text tower learns a new language from a frozen teacher (lesson 08)

``lang`` is "en" or "bn": every label follows it, while technical names (CLIP, VQGAN, ViT, DALL-E) and tensor
shapes stay as they are. Meaning never rests on colour alone: boxes and arrows carry labels, the matching pairs
of the similarity matrix are hatched, and alternative or backward paths are dashed *and* named.

The drawing happens in data units on a fixed canvas (2 units per inch, the origin at the bottom left), so that a
box's position reads like a layout grid. This module is a leaf, like :mod:`mmcore.plot`: notebooks call it,
models never import it.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple, Sequence

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from .lang import check_lang, pick
from .plot import setup_fonts

__all__ = ["clip", "vqgan", "guided", "dalle", "unclip", "distillation"]

UNITS_PER_INCH = 2.0  # canvas units per inch of figure
WIDTH, HEIGHT = 18.0, 7.0  # canvas size in units: a 9 x 3.5 inch figure
DPI = 100

LABEL_SIZE = 8.5  # points: box labels
SMALL_SIZE = 7.0  # points: tensor shapes, arrow labels, notes
TITLE_SIZE = 9.5

# Pale fills, told apart by their labels too (colour is never the only carrier of meaning).
FILLS = {
    "data": "#eeeeee",  # pictures, captions, tokens: what goes in and comes out
    "model": "#d6e6f5",  # a network
    "latent": "#dcefd9",  # embeddings, latents, codes
    "loss": "#fbe3c9",  # an objective
}
EDGE = "#333333"
HIGHLIGHT = "#f2b25c"


class Box(NamedTuple):
    """A box on the canvas: lower-left corner (x, y) and size (w, h), in canvas units."""

    x: float
    y: float
    w: float
    h: float

    @property
    def left(self) -> tuple[float, float]:
        return (self.x, self.y + self.h / 2)

    @property
    def right(self) -> tuple[float, float]:
        return (self.x + self.w, self.y + self.h / 2)

    @property
    def top(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y + self.h)

    @property
    def bottom(self) -> tuple[float, float]:
        return (self.x + self.w / 2, self.y)


# ---------------------------------------------------------------------------------------------------------------
# Small drawing helpers (pure: they draw onto the axes they are given and return geometry, nothing else)


def _canvas(title: str) -> tuple[Figure, plt.Axes]:
    """A blank figure whose axes span it, in canvas units, with ``title`` at the top left."""
    setup_fonts()
    fig = plt.figure(figsize=(WIDTH / UNITS_PER_INCH, HEIGHT / UNITS_PER_INCH), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH)
    ax.set_ylim(0, HEIGHT)
    ax.axis("off")
    ax.text(0.2, HEIGHT - 0.25, title, ha="left", va="top", fontsize=TITLE_SIZE, fontweight="bold")
    return fig, ax


def _box(ax: plt.Axes, x: float, y: float, w: float, h: float, label: str, shape: str | None = None,
         kind: str = "model", dashed: bool = False) -> Box:
    """A rounded box with a centred ``label`` and, below it in small text, a tensor ``shape`` (or short note)."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.18", facecolor=FILLS[kind],
                                edgecolor=EDGE, linewidth=1.0, linestyle="--" if dashed else "-"))
    cx, cy = x + w / 2, y + h / 2
    if shape is None:
        ax.text(cx, cy, label, ha="center", va="center", fontsize=LABEL_SIZE, linespacing=1.15)
    else:
        ax.text(cx, cy + 0.16, label, ha="center", va="center", fontsize=LABEL_SIZE, linespacing=1.15)
        ax.text(cx, y + 0.1, shape, ha="center", va="bottom", fontsize=SMALL_SIZE, color="#444444")
    return Box(x, y, w, h)


def _arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float], label: str | None = None,
           dashed: bool = False, connection: str = "arc3", label_at: tuple[float, float] | None = None,
           color: str = EDGE) -> None:
    """An arrow from ``start`` to ``end`` (canvas units), optionally labelled at ``label_at`` (default: midway,
    just above the line)."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=11, shrinkA=1, shrinkB=1,
                                 connectionstyle=connection, color=color, linewidth=1.2 if dashed else 1.0,
                                 linestyle=(0, (4, 2.5)) if dashed else "-"))
    if label is not None:
        x, y = label_at or ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12)
        ax.text(x, y, label, ha="center", va="bottom", fontsize=SMALL_SIZE, color=color)


def _grid(ax: plt.Axes, x: float, y: float, rows: int, cols: int, cell: float,
          marked: Callable[[int, int], bool] = lambda r, c: False) -> Box:
    """A ``rows`` x ``cols`` grid of square cells (patches, codes, a similarity matrix, a mask) with its lower-left
    corner at (x, y); the cells where ``marked(row, col)`` (row 0 at the top) are filled and hatched."""
    for r in range(rows):
        for c in range(cols):
            hit = marked(r, c)
            ax.add_patch(Rectangle((x + c * cell, y + (rows - 1 - r) * cell), cell, cell, linewidth=0.6,
                                   edgecolor=EDGE, facecolor=HIGHLIGHT if hit else "white", hatch="///" if hit else None))
    return Box(x, y, cols * cell, rows * cell)


def _spread(widths: Sequence[float], x0: float = 0.2, x1: float = WIDTH - 0.2) -> list[float]:
    """Left edges of a row of items of these ``widths`` that fills ``x0 .. x1`` with equal gaps between them."""
    gap = (x1 - x0 - sum(widths)) / max(len(widths) - 1, 1)
    return [x0 + sum(widths[:i]) + i * gap for i in range(len(widths))]


def _note(ax: plt.Axes, x: float, y: float, text: str, ha: str = "center", va: str = "center", **kw) -> None:
    """Small free-standing text (a caption under a grid, a remark)."""
    ax.text(x, y, text, ha=ha, va=va, fontsize=SMALL_SIZE, linespacing=1.15, **kw)


def _language(lang: str) -> Callable[[str, str], str]:
    """``t(en, bn)``: the text in ``lang``; a ValueError naming the choices for any other ``lang``."""
    return partial(pick, check_lang(lang))


# ---------------------------------------------------------------------------------------------------------------
# One diagram per model family


def clip(lang: str = "en") -> Figure:
    """CLIP: an image tower (ViT on 16 patches) and a text tower (a transformer on caption tokens), both projected and
    normalised; the N x N similarity matrix whose diagonal holds the matching pairs; the symmetric cross-entropy."""
    t = _language(lang)
    fig, ax = _canvas(t("CLIP: contrastive pre-training on a batch of N picture-caption pairs",
                        "CLIP: N-টি ছবি-ক্যাপশন জোড়ার ব্যাচে কনট্রাস্টিভ প্রাক-প্রশিক্ষণ"))
    top, low, h = 4.05, 1.35, 1.3  # lower edges of the image row and the text row; box height

    picture = _box(ax, 0.2, top, 2.0, h, t("picture", "ছবি"), "(N, 3, 32, 32)", kind="data")
    patches = _grid(ax, 2.75, top + 0.05, 4, 4, 0.3)  # 4 x 4 patches of 8 px: 16 image tokens
    _note(ax, patches.top[0], patches.y - 0.22, t("16 patches of 8 x 8 px", "8 x 8 px-এর ১৬টি প্যাচ"))
    layers = t("3 layers, width 128", "৩টি স্তর, প্রস্থ 128")  # the course's tiny CLIP (CLIPConfig.tiny)
    image_enc = _box(ax, 4.5, top, 2.5, h, t("image encoder", "ছবির এনকোডার") + "\nViT", layers)
    image_proj = _box(ax, 7.5, top, 2.6, h, t("projection +\nnormalise", "প্রজেকশন +\nনর্মালাইজ"), "I: (N, 128)",
                      kind="latent")

    caption = _box(ax, 0.2, low, 2.0, h, t("caption", "ক্যাপশন"), t('"a red circle"', '"একটি লাল বৃত্ত"'), kind="data")
    tokens = _box(ax, 2.7, low, 1.3, h, t("tokens", "টোকেন"), "(N, 32)", kind="data")
    text_enc = _box(ax, 4.5, low, 2.5, h, t("text encoder\ntransformer", "টেক্সট এনকোডার\nট্রান্সফর্মার"), layers)
    text_proj = _box(ax, 7.5, low, 2.6, h, t("projection +\nnormalise", "প্রজেকশন +\nনর্মালাইজ"), "T: (N, 128)",
                     kind="latent")

    for a, b in ((picture, patches), (patches, image_enc), (image_enc, image_proj),
                 (caption, tokens), (tokens, text_enc), (text_enc, text_proj)):
        _arrow(ax, a.right, b.left)

    # The N x N similarity matrix I @ T.T: rows are pictures, columns captions; the diagonal is the matching pairs.
    matrix = _grid(ax, 11.6, 2.75, 4, 4, 0.55, marked=lambda r, c: r == c)
    _arrow(ax, image_proj.right, (matrix.x, matrix.y + matrix.h - 0.3))
    _arrow(ax, text_proj.right, matrix.bottom, connection="angle,angleA=0,angleB=90,rad=0")
    _note(ax, matrix.top[0], matrix.y + matrix.h + 0.62, t("N x N similarities  I·Tᵀ", "N x N সাদৃশ্য  I·Tᵀ"),
          fontweight="bold")
    _note(ax, matrix.top[0], matrix.y + matrix.h + 0.25, t("columns: captions", "কলাম: ক্যাপশন"))
    _note(ax, matrix.x - 0.15, matrix.y + matrix.h / 2 - 0.2, t("rows:\npictures", "সারি:\nছবি"), ha="right")
    _note(ax, matrix.x + matrix.w + 0.2, matrix.y + matrix.h - 0.55,
          t("diagonal (hatched):\nthe N matching pairs", "কর্ণ (দাগানো):\nN-টি সঠিক জোড়া"), ha="left")

    loss = _box(ax, 14.2, 0.35, 3.6, 1.3, t("symmetric cross-entropy", "প্রতিসম ক্রস-এনট্রপি"),
                t("rows + columns, averaged", "সারি ও কলাম ধরে, গড়"), kind="loss")
    _arrow(ax, (matrix.x + matrix.w, matrix.y + 0.2), loss.top, connection="angle,angleA=0,angleB=90,rad=0")
    return fig


def vqgan(lang: str = "en") -> Figure:
    """VQGAN: encoder -> continuous latents -> nearest code of a 256-code codebook -> 8 x 8 indices -> decoder ->
    reconstruction; the patch discriminator judges real vs reconstructed; the straight-through gradient path."""
    t = _language(lang)
    fig, ax = _canvas(t("VQGAN: an autoencoder with discrete codes and a patch discriminator",
                        "VQGAN: বিচ্ছিন্ন কোডের অটোএনকোডার আর প্যাচ ডিসক্রিমিনেটর"))
    y, h = 3.3, 1.3  # lower edge and height of the main row

    cell = 0.14  # the 8 x 8 index grid, one cell per code
    x = _spread([1.8, 1.8, 2.2, 2.2, 8 * cell, 1.8, 2.3])
    picture = _box(ax, x[0], y, 1.8, h, t("picture", "ছবি"), "32 x 32 x 3", kind="data")
    encoder = _box(ax, x[1], y, 1.8, h, t("encoder", "এনকোডার"), "conv")
    latents = _box(ax, x[2], y, 2.2, h, t("continuous\nlatents", "অবিচ্ছিন্ন\nল্যাটেন্ট"), "8 x 8 x 32", kind="latent")
    nearest = _box(ax, x[3], y, 2.2, h, t("nearest code", "নিকটতম কোড"), "argmin ‖z − e‖")
    codebook = _box(ax, x[3], 5.05, 2.2, 1.0, t("codebook", "কোডবুক"), "256 x 32", kind="latent")
    indices = _grid(ax, x[4], y + (h - 8 * cell) / 2, 8, 8, cell)
    _note(ax, indices.top[0], indices.y + indices.h + 0.3, t("8 x 8 indices", "8 x 8 ইনডেক্স"))
    _note(ax, indices.bottom[0], indices.y - 0.25, "0 … 255")
    decoder = _box(ax, x[5], y, 1.8, h, t("decoder", "ডিকোডার"), "conv")
    recon = _box(ax, x[6], y, 2.3, h, t("reconstruction", "পুনর্গঠন"), "32 x 32 x 3", kind="data")

    for a, b in ((picture, encoder), (encoder, latents), (latents, nearest), (nearest, indices), (indices, decoder),
                 (decoder, recon)):
        _arrow(ax, a.right, b.left)
    _arrow(ax, codebook.bottom, nearest.top)

    # Straight-through: the decoder's gradient is copied past the (non-differentiable) nearest-code lookup.
    _arrow(ax, (decoder.x + 0.3, decoder.y), (latents.x + latents.w - 0.3, latents.y), dashed=True,
           connection="arc3,rad=-0.25", color="#b03a2e",
           label=t("straight-through gradient: copied past the lookup", "স্ট্রেট-থ্রু গ্রেডিয়েন্ট: লুকআপ পেরিয়ে কপি"),
           label_at=((decoder.x + latents.x + latents.w) / 2, 2.05))

    disc = _box(ax, 11.4, 0.3, 3.8, 1.25, t("patch discriminator", "প্যাচ ডিসক্রিমিনেটর"),
                t("real? a score per patch: 6 x 6", "আসল? প্রতি প্যাচে স্কোর: 6 x 6"), kind="loss")
    _arrow(ax, picture.bottom, disc.left, connection="angle,angleA=-90,angleB=180,rad=0",
           label=t("real", "আসল"), label_at=(5.0, 0.97))
    _arrow(ax, recon.bottom, (disc.x + disc.w - 0.4, disc.y + disc.h), label=t("reconstructed", "পুনর্গঠিত"),
           label_at=(recon.x - 0.45, 2.25))
    _note(ax, disc.x + disc.w + 0.2, disc.y + 0.62, t("adversarial\nloss", "অ্যাডভারসারিয়াল\nলস"), ha="left")
    return fig


def guided(lang: str = "en") -> Figure:
    """VQGAN+CLIP: latents -> VQGAN decoder -> picture -> random cutouts -> CLIP image encoder -> spherical distance
    to the prompt's text embedding, and the gradient back to the latents (the loop)."""
    t = _language(lang)
    fig, ax = _canvas(t("VQGAN+CLIP: optimise the latents until CLIP agrees with the prompt",
                        "VQGAN+CLIP: CLIP প্রম্পটের সঙ্গে একমত না হওয়া পর্যন্ত ল্যাটেন্ট বদলান"))
    y, h = 3.2, 1.3

    x = _spread([2.0, 2.5, 1.8, 2.4, 2.6, 2.6])
    latents = _box(ax, x[0], y, 2.0, h, t("latents z", "ল্যাটেন্ট z"), "8 x 8 x 32", kind="latent")
    decoder = _box(ax, x[1], y, 2.5, h, t("VQGAN decoder", "VQGAN ডিকোডার"), t("nearest codes first", "আগে নিকটতম কোড"))
    picture = _box(ax, x[2], y, 1.8, h, t("picture", "ছবি"), "32 x 32 x 3", kind="data")
    cutouts = _box(ax, x[3], y, 2.4, h, t("random\ncutouts", "এলোমেলো\nকাটআউট"), "(16, 3, 32, 32)", kind="data")
    image_enc = _box(ax, x[4], y, 2.6, h, "CLIP\n" + t("image encoder", "ছবির এনকোডার"), "(16, 128)")
    distance = _box(ax, x[5], y, 2.6, h, t("spherical\ndistance", "গোলকীয়\nদূরত্ব"), t("loss", "লস"), kind="loss")
    up = 5.0  # lower edge of the prompt's row
    prompt = _box(ax, x[3], up, 2.4, 1.1, t("prompt", "প্রম্পট"), t('"a red circle"', '"একটি লাল বৃত্ত"'), kind="data")
    text_enc = _box(ax, x[4], up, 2.6, 1.1, "CLIP\n" + t("text encoder", "টেক্সট এনকোডার"))
    text_emb = _box(ax, x[5], up, 2.6, 1.1, t("text embedding", "টেক্সট এমবেডিং"), "(1, 128)", kind="latent")

    for a, b in ((latents, decoder), (decoder, picture), (picture, cutouts), (cutouts, image_enc),
                 (image_enc, distance)):
        _arrow(ax, a.right, b.left)
    for a, b in ((prompt, text_enc), (text_enc, text_emb)):
        _arrow(ax, a.right, b.left)
    _arrow(ax, text_emb.bottom, distance.top)

    # The loop: backward through CLIP and the decoder (both frozen) into the latents, then an Adam step on z.
    _arrow(ax, distance.bottom, latents.bottom, dashed=True, color="#b03a2e",
           connection="bar,fraction=-0.1",
           label=t("gradient back to the latents; an Adam step changes only z",
                   "ল্যাটেন্টে ফেরত গ্রেডিয়েন্ট; Adam ধাপে বদলায় শুধু z"), label_at=(WIDTH / 2, 1.3))
    _note(ax, WIDTH / 2, 0.55, t("VQGAN and CLIP stay frozen: their weights never change",
                           "VQGAN আর CLIP স্থির থাকে: তাদের ওজন বদলায় না"))
    return fig


def dalle(lang: str = "en") -> Figure:
    """DALL-E 1: one stream of text tokens and 64 image codes, a causal transformer that predicts each next token,
    the VQGAN decoder that turns 64 sampled codes into pixels, and re-ranking by CLIP."""
    t = _language(lang)
    fig, ax = _canvas(t("DALL-E: one token stream, predicted one token at a time",
                        "DALL-E: একটিই টোকেন-ধারা, একবারে একটি করে টোকেনের অনুমান"))
    # The stream: 16 text positions ([start] tokens [end] [pad] ...), then the 8 x 8 = 64 image codes, row by row.
    text_cells = ["[start]", *t("a red circle", "একটি লাল বৃত্ত").split(), "[end]", "[pad]", "…"]
    code_cells = ["17", "203", "5", "…", "88"]
    y, w, h, gap = 4.65, 1.15, 0.65, 0.15
    stream = [_box(ax, 0.2 + i * (w + gap), y, w, h, text, kind="data") for i, text in enumerate(text_cells)]
    x0 = stream[-1].x + w + 0.45  # a wider gap between text and codes
    stream += [_box(ax, x0 + i * (w + gap), y, w, h, code, kind="latent") for i, code in enumerate(code_cells)]
    split = len(text_cells)
    _note(ax, (stream[0].x + stream[split - 1].x + w) / 2, y + h + 0.22,
          t("16 text positions", "১৬টি টেক্সট অবস্থান"))
    _note(ax, (stream[split].x + stream[-1].x + w) / 2, y + h + 0.22,
          t("64 image codes (8 x 8), from the VQGAN", "VQGAN-এর ৬৪টি ছবি-কোড (8 x 8)"))

    transformer = _box(ax, 0.2, 2.6, 11.0, 1.2, t("causal transformer", "কজাল ট্রান্সফর্মার"),
                       t("predicts token i + 1 from tokens 0 … i", "টোকেন 0 … i থেকে টোকেন i + 1-এর অনুমান"))
    _arrow(ax, stream[2].bottom, (stream[2].bottom[0], transformer.y + transformer.h), label=t("input", "ইনপুট"),
           label_at=(stream[2].x - 0.4, 4.05))
    _arrow(ax, (stream[split].top[0], transformer.y + transformer.h), stream[split].bottom,
           label=t("next token", "পরের টোকেন"), label_at=(stream[split].x - 0.7, 4.05))

    mask = _grid(ax, 12.0, 2.45, 5, 5, 0.27, marked=lambda r, c: c <= r)  # causal mask: position r sees 0 .. r
    _note(ax, mask.x + mask.w + 0.35, mask.y + mask.h / 2,
          t("causal mask:\neach position sees\nonly the past (hatched)", "কজাল মাস্ক:\nপ্রতিটি অবস্থান দেখে\nশুধু অতীত (দাগানো)"),
          ha="left")

    x = _spread([3.2, 2.8, 2.8, 4.4])
    codes = _box(ax, x[0], 0.3, 3.2, 1.3, t("64 sampled codes", "নমুনায়িত ৬৪টি কোড"), "8 x 8", kind="latent")
    decoder = _box(ax, x[1], 0.3, 2.8, 1.3, t("VQGAN decoder", "VQGAN ডিকোডার"), "8 x 8 → 32 x 32")
    pictures = _box(ax, x[2], 0.3, 2.8, 1.3, t("k samples", "k-টি নমুনা"), "(k, 3, 32, 32)", kind="data")
    rerank = _box(ax, x[3], 0.3, 4.4, 1.3, t("re-ranking by CLIP", "CLIP দিয়ে পুনর্বাছাই"),
                  t("keep the pictures closest to the prompt", "প্রম্পটের সবচেয়ে কাছের ছবি রাখুন"), kind="loss")
    _arrow(ax, (codes.top[0], transformer.y), codes.top, label=t("sample 64 times", "৬৪ বার নমুনায়ন"),
           label_at=(3.3, 1.9))
    for a, b in ((codes, decoder), (decoder, pictures), (pictures, rerank)):
        _arrow(ax, a.right, b.left)
    return fig


def unclip(lang: str = "en") -> Figure:
    """DALL-E 2 (unCLIP): prompt -> CLIP text encoder -> text embedding -> diffusion prior -> image embedding ->
    diffusion decoder -> 8 x 8 codes -> VQGAN decoder -> picture; for variations a picture's CLIP image embedding
    enters instead (the side path)."""
    t = _language(lang)
    fig, ax = _canvas(t("unCLIP (DALL-E 2): a prior from text embedding to image embedding, then a decoder",
                        "unCLIP (DALL-E 2): টেক্সট এমবেডিং থেকে ছবির এমবেডিং-এ প্রায়র, তারপর ডিকোডার"))
    w, gap, h = 2.2, 0.35, 1.3
    col = [0.2 + i * (w + gap) for i in range(7)]  # left edges of the seven columns
    up, down = 3.8, 1.0  # lower edges of the two rows

    prompt = _box(ax, col[0], up, w, h, t("prompt", "প্রম্পট"), t('"a red circle"', '"একটি লাল বৃত্ত"'), kind="data")
    text_enc = _box(ax, col[1], up, w, h, "CLIP\n" + t("text encoder", "টেক্সট এনকোডার"))
    text_emb = _box(ax, col[2], up, w, h, t("text\nembedding", "টেক্সট\nএমবেডিং"), "(128,)", kind="latent")
    prior = _box(ax, col[3], up, w, h, t("diffusion\nprior", "ডিফিউশন\nপ্রায়র"))
    image_emb = _box(ax, col[4], up, w, h, t("image\nembedding", "ছবির\nএমবেডিং"), "(128,)", kind="latent")
    # The variations side path: a picture's own CLIP image embedding replaces the prior's output.
    image_enc = _box(ax, col[5], up, w, h, "CLIP\n" + t("image encoder", "ছবির এনকোডার"), dashed=True)
    source = _box(ax, col[6], up, w, h, t("a picture", "একটি ছবি"), "32 x 32 x 3", kind="data", dashed=True)
    _note(ax, (col[5] + col[6] + w) / 2, up + h + 0.3,
          t("variations: start from a picture (dashed)", "ছবির রূপভেদ: একটি ছবি থেকে শুরু (ড্যাশ রেখা)"))

    # The second row runs right to left, back under the first.
    decoder = _box(ax, col[4], down, w, h, t("diffusion\ndecoder", "ডিফিউশন\nডিকোডার"))
    codes = _box(ax, col[3], down, w, h, t("codes", "কোড"), "8 x 8", kind="latent")
    vqgan_dec = _box(ax, col[2], down, w, h, t("VQGAN decoder", "VQGAN ডিকোডার"))
    picture = _box(ax, col[1], down, w, h, t("picture", "ছবি"), "32 x 32 x 3", kind="data")

    for a, b in ((prompt, text_enc), (text_enc, text_emb), (text_emb, prior), (prior, image_emb)):
        _arrow(ax, a.right, b.left)
    for a, b in ((source, image_enc), (image_enc, image_emb)):
        _arrow(ax, a.left, b.right, dashed=True)
    _arrow(ax, image_emb.bottom, decoder.top)
    for a, b in ((decoder, codes), (codes, vqgan_dec), (vqgan_dec, picture)):
        _arrow(ax, a.left, b.right)
    _note(ax, (col[5] + col[6] + w) / 2, down + h / 2,
          t("both diffusion models start\nfrom noise and remove it\nstep by step",
            "দুটি ডিফিউশন মডেলই নয়েজ থেকে\nশুরু করে ধাপে ধাপে\nনয়েজ সরায়"))
    return fig


def distillation(lang: str = "en") -> Figure:
    """Lesson 08: a frozen English teacher text tower embeds an English caption; a student text tower embeds the same
    caption in Bengali; the mean squared error between the two vectors trains the student only. Afterwards the
    teacher's unchanged image tower and the student make one CLIP that reads Bengali."""
    t = _language(lang)
    fig, ax = _canvas(t("Distillation: a student text tower learns Bengali from a frozen English teacher",
                        "ডিস্টিলেশন: স্থির ইংরেজি শিক্ষকের কাছ থেকে একটি শিক্ষার্থী টেক্সট-স্তম্ভ বাংলা শেখে"))
    top, low, h = 4.05, 1.35, 1.3  # lower edges of the teacher row and the student row; box height

    english = _box(ax, 0.2, top, 2.5, h, t("English caption", "ইংরেজি ক্যাপশন"),
                   t('"a red circle"', '"একটি লাল বৃত্ত", ইংরেজিতে'), kind="data")
    teacher = _box(ax, 3.1, top, 3.0, h, t("teacher text tower", "শিক্ষক টেক্সট-স্তম্ভ"),
                   t("frozen, English only", "স্থির, শুধু ইংরেজি"))
    goal = _box(ax, 6.6, top, 2.2, h, t("teacher vector", "শিক্ষকের ভেক্টর"), "(B, 128)", kind="latent")
    bengali = _box(ax, 0.2, low, 2.5, h, t("Bengali caption", "বাংলা ক্যাপশন"),
                   t('"a red circle", in Bengali', '"একটি লাল বৃত্ত"'), kind="data")
    student = _box(ax, 3.1, low, 3.0, h, t("student text tower", "শিক্ষার্থী টেক্সট-স্তম্ভ"),
                   t("starts as the teacher's copy", "শুরুতে শিক্ষকের প্রতিলিপি"))
    guess = _box(ax, 6.6, low, 2.2, h, t("student vector", "শিক্ষার্থীর ভেক্টর"), "(B, 128)", kind="latent")
    loss = _box(ax, 9.4, 2.7, 2.6, h, t("mean squared\nerror", "গড় বর্গ\nত্রুটি"), "‖s − t‖²", kind="loss")
    _note(ax, 1.4, 3.05, t("the same meaning", "একই অর্থ"))

    for a, b in ((english, teacher), (teacher, goal), (bengali, student), (student, guess)):
        _arrow(ax, a.right, b.left)
    _arrow(ax, goal.right, loss.top, connection="angle,angleA=0,angleB=90,rad=0")
    _arrow(ax, guess.right, loss.bottom, connection="angle,angleA=0,angleB=-90,rad=0")
    _arrow(ax, (loss.x + 0.5, loss.y), (student.x + student.w - 0.4, student.y), dashed=True,
           connection="arc,angleA=-90,armA=72,angleB=-90,armB=25,rad=0",  # arms in points: down to y = 0.65, across
           label=t("gradient: student only", "গ্রেডিয়েন্ট: শুধু শিক্ষার্থী"), label_at=(8.0, 0.7))

    # After training: the teacher's unchanged image tower beside the student, one CLIP that reads Bengali.
    _note(ax, 15.15, 5.75, t("after training", "প্রশিক্ষণের পরে"), fontweight="bold")
    image = _box(ax, 12.5, top, 2.7, h, t("image tower", "ছবির স্তম্ভ"), t("the teacher's, unchanged", "শিক্ষকের, অপরিবর্তিত"))
    reader = _box(ax, 12.5, low, 2.7, h, t("student text\ntower", "শিক্ষার্থী\nটেক্সট-স্তম্ভ"))
    use = _box(ax, 15.6, 2.7, 2.2, h, t("Bengali zero-shot\nand search", "বাংলায় জিরো-শট\nও অনুসন্ধান"), kind="data")
    _arrow(ax, image.right, use.top, connection="angle,angleA=0,angleB=90,rad=0")
    _arrow(ax, reader.right, use.bottom, connection="angle,angleA=0,angleB=-90,rad=0")
    return fig
