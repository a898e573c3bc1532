"""Plotting helpers the lessons call: fonts that render Bengali and English together, and image grids.

Matplotlib draws Bengali correctly (with its vowel signs and conjuncts shaped) once a Bengali font is
installed; ``setup_fonts()`` puts one in a fallback list behind the usual Latin font so that a label such as
"red circle / লাল বৃত্ত" mixes both scripts. Where no Bengali font is installed it says once how to get one.
This module is a leaf: notebooks import it, models never do.
"""
from __future__ import annotations

import math
import textwrap
import warnings
from typing import Any, Sequence

import matplotlib
import matplotlib.pyplot as plt
from matplotlib import font_manager
from matplotlib.figure import Figure

from .lang import check_lang

# Tried in order for every character: the first font that has a glyph draws it.
LATIN_FONTS = ["DejaVu Sans"]
BENGALI_FONTS = ["Noto Sans Bengali", "Noto Serif Bengali", "Lohit Bengali", "Vrinda", "Nirmala UI", "Kohinoor Bangla"]

INSTALL_HELP = """No Bengali font was found, so Bengali labels in plots will show as empty boxes.
Install one, then restart the kernel:
  Debian / Ubuntu:  sudo apt-get install fonts-noto-core
  conda:            conda install -c conda-forge font-ttf-noto  (or copy NotoSansBengali-Regular.ttf to ~/.fonts)
  Colab:            !apt-get -qq install fonts-noto-core, then Runtime > Restart session
  macOS / Windows:  Kohinoor Bangla / Nirmala UI are already installed with the system"""

_warned = False


def bengali_font() -> str | None:
    """The name of an installed Bengali font, or None.

    A font installed after matplotlib built its cache (e.g. ``apt-get install`` in a running Colab session) is
    registered on the fly, so no kernel restart is needed.
    """
    name = _known_bengali_font()
    if name is None:
        for path in font_manager.findSystemFonts():
            if "bengali" in path.lower() or "bangla" in path.lower():
                font_manager.fontManager.addfont(path)
        name = _known_bengali_font()
    return name


def _known_bengali_font() -> str | None:
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in BENGALI_FONTS if name in installed), None)


def setup_fonts(size: float = 10.0) -> str | None:
    """Configure matplotlib so labels can mix Latin and Bengali script; return the Bengali font used (or None).

    Warns once, with install instructions, when no Bengali font is installed.
    """
    global _warned
    bengali = bengali_font()
    matplotlib.rcParams["font.family"] = LATIN_FONTS + ([bengali] if bengali else [])
    matplotlib.rcParams["font.size"] = size
    matplotlib.rcParams["axes.unicode_minus"] = False
    if bengali is None and not _warned:
        warnings.warn(INSTALL_HELP, stacklevel=2)
        _warned = True
    return bengali


def setup_notebook(figure_format: str = "jpeg") -> str | None:
    """Set up plots for a lesson notebook: Bengali-capable fonts, and figures stored as JPEG.

    Pictures with textured backgrounds compress badly as PNG; JPEG keeps a committed notebook a few hundred KB
    lighter (pass ``figure_format="png"`` for pixel-exact figures). Returns the Bengali font in use (or None).
    """
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats(figure_format, **({"pil_kwargs": {"quality": 88}} if figure_format == "jpeg" else {}))
        shell = get_ipython()
        if shell is not None:
            _describe_figures(shell, f"image/{figure_format}")
    except ImportError:  # not in IPython: figures are saved or shown by the caller
        pass
    return setup_fonts()


def _describe_figures(shell: Any, mime: str) -> None:
    """Every figure the notebook shows carries alt text (the ``alt`` key of its output metadata, which nbconvert,
    the course website and screen readers use) in the notebook's language: the ``LANG`` of its parameters cell."""
    formatter = shell.display_formatter.formatters[mime]
    draw = formatter.lookup_by_type(Figure)  # the inline backend's own printer for this format
    if getattr(draw, "describes", False):
        return  # already installed (setup_notebook ran twice)

    def draw_with_alt(fig: Figure) -> tuple[Any, dict[str, str]]:
        lang = shell.user_ns.get("LANG")
        return draw(fig), {"alt": alt_text(fig, lang if lang in ("en", "bn") else "en")}

    draw_with_alt.describes = True  # type: ignore[attr-defined]
    formatter.for_type(Figure, draw_with_alt)


_ALT = {  # the words of a figure's alt text, in each language
    "en": {"figure": "Figure", "pictures": "{n} pictures", "picture": "one picture", "titled": "titled", "plot": "a plot of {y} against {x}",
           "lines": "lines", "diagram": "Diagram", "stop": ". "},
    "bn": {"figure": "চিত্র", "pictures": "{n}টি ছবি", "picture": "একটি ছবি", "titled": "শিরোনাম", "plot": "{x} অনুযায়ী {y} (লেখচিত্র)",
           "lines": "রেখা", "diagram": "নকশা", "stop": "। "},
}


def alt_text(fig: Figure, lang: str = "en") -> str:
    """A short description of ``fig`` for people who cannot see it, built from what the figure itself says (its
    titles, axis labels and legends, already in the notebook's language) and a few words in ``lang``: how many
    pictures a grid shows and their titles, what each plot plots against what, a diagram's title."""
    words = _ALT[check_lang(lang)]
    clean = lambda text: " ".join(str(text).split())  # titles may hold line breaks
    parts = [clean(fig.get_suptitle())] if fig.get_suptitle() else []
    axes = [ax for ax in fig.axes if ax.get_visible()]
    pictures = [ax for ax in axes if ax.images and not ax.lines]
    plots = [ax for ax in axes if ax.lines or ax.collections or (ax.patches and ax.axison)]
    if pictures:
        titles = [clean(ax.get_title()) for ax in pictures if ax.get_title()]
        picture_part = words["pictures"].format(n=len(pictures)) if len(pictures) > 1 else words["picture"]
        parts.append(picture_part + (f", {words['titled']}: " + "; ".join(titles) if titles else ""))
    for ax in plots:
        if ax in pictures:
            continue
        x, y = clean(ax.get_xlabel()), clean(ax.get_ylabel())
        part = words["plot"].format(x=x, y=y) if x and y else clean(ax.get_title())
        legend = ax.get_legend()
        if legend is not None:
            part += f" ({words['lines']}: " + "; ".join(clean(t.get_text()) for t in legend.get_texts()) + ")"
        if part:
            parts.append(part)
    if not pictures and not plots:  # a diagram drawn with text and patches (mmcore.diagrams) on hidden axes
        texts = [clean(t.get_text()) for ax in axes for t in ax.texts if t.get_text().strip()]
        if texts:
            return f"{words['diagram']}: {texts[0]}"
    return f"{words['figure']}: " + words["stop"].join(p for p in parts if p) if parts else words["figure"]


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 8,
               cell: float = 1.4, title_size: float = 7.0, suptitle: str | None = None, wrap: int = 24,
               dpi: int = 72):
    """Show PIL images (or HWC arrays, or CHW tensors in [0, 1]) in a grid with optional titles; returns the figure.

    The figure is sized ``cell`` inches per image, so that a committed notebook stays small; titles longer than
    ``wrap`` characters are wrapped onto several lines (a title may already hold line breaks, e.g. en + bn).
    ``dpi`` 72 keeps the PNG that a notebook stores small.
    """
    setup_fonts()
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {n} images but {len(titles)} titles")
    ncols = min(ncols, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + (0.3 if suptitle else 0)),
                             squeeze=False, dpi=dpi)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(_as_hwc(images[i]), interpolation="nearest")
        if titles is not None:
            lines = [textwrap.fill(line, wrap) for line in str(titles[i]).split("\n")]
            ax.set_title("\n".join(lines), fontsize=title_size)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def _as_hwc(image):
    """PIL image, HWC array or CHW tensor -> something ``imshow`` takes."""
    if hasattr(image, "detach"):  # torch tensor (C, H, W) in [0, 1]
        image = image.detach().float().cpu().clamp(0, 1)
        return image.permute(1, 2, 0).numpy() if image.ndim == 3 else image.numpy()  # (H, W, C)
    return image


def similarity_heatmap(similarity, images: Sequence, texts: Sequence[str], title: str | None = None,
                       cell: float = 0.62, thumb: float = 0.9, dpi: int = 72):
    """Cosine similarities ``(len(texts), len(images))`` as a heatmap, with each image drawn above its column.

    Rows are texts (labels may mix English and Bengali), columns images; each cell shows its value, and the
    best text of each image (column maximum) is outlined.
    """
    setup_fonts()
    values = similarity.detach().float().cpu().numpy() if hasattr(similarity, "detach") else similarity
    n_texts, n_images = values.shape
    if (n_texts, n_images) != (len(texts), len(images)):
        raise ValueError(f"similarity has shape {values.shape} but there are {len(texts)} texts and {len(images)} images")
    # Figure size in inches: room for the longest text label on the left, one square cell per value.
    left = 0.3 + 0.065 * max(len(t) for t in texts)
    top = 0.35 + cell * (thumb + 0.3)
    width, height = left + cell * n_images + 0.2, top + cell * n_texts + 0.1
    fig, ax = plt.subplots(figsize=(width, height), dpi=dpi)
    fig.subplots_adjust(left=left / width, right=1 - 0.2 / width, top=1 - 0.35 / height, bottom=0.1 / height)
    ax.imshow(values, cmap="viridis", aspect="auto")
    for i in range(n_images):  # thumbnails above the matrix, in data coordinates
        ax.imshow(_as_hwc(images[i]), extent=(i - 0.45 * thumb, i + 0.45 * thumb, -0.6 - thumb, -0.6),
                  interpolation="nearest")
        best = int(values[:, i].argmax())
        ax.add_patch(plt.Rectangle((i - 0.5, best - 0.5), 1, 1, fill=False, edgecolor="white", linewidth=2))
    for t in range(n_texts):
        for i in range(n_images):
            ax.text(i, t, f"{values[t, i]:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if values[t, i] > values.mean() else "white")
    ax.set_xlim(-0.5, n_images - 0.5)
    ax.set_ylim(n_texts - 0.5, -0.7 - thumb)
    ax.set_yticks(range(n_texts), list(texts), fontsize=8)
    ax.set_xticks([])
    for side in ("top", "right", "bottom", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def _loss_and_accuracy(history, text: dict[str, str], lines: list[tuple[list, str, str]], log_loss: bool = False,
                       top: float = 1.0, dpi: int = 72):
    """Two panels: ``history.loss`` per ``history.step`` (log scale if ``log_loss``), and each accuracy series of
    ``lines`` ``(values, style, label)`` per ``history.eval_step``; axis texts from ``text``."""
    setup_fonts()
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8), dpi=dpi)
    left.plot(history.step, history.loss, linewidth=0.8)
    if log_loss:
        left.set_yscale("log")
    left.set_xlabel(text["step"])
    left.set_ylabel(text["loss"])
    if history.eval_step:
        for values, style, label in lines:
            right.plot(history.eval_step, values, style, label=label)
        right.set_ylim(0, top)
        right.legend(fontsize=8)
    right.set_xlabel(text["step"])
    right.set_ylabel(text["accuracy"])
    fig.tight_layout()
    return fig


def training_curves(history, labels: dict[str, str] | None = None, dpi: int = 72):
    """Loss per step and held-out zero-shot accuracy per evaluation of a :class:`mmcore.train_clip.CLIPHistory`.

    ``labels`` overrides the axis texts (keys: loss, accuracy, step, english, bengali), e.g. in Bengali.
    """
    text = {"loss": "loss", "accuracy": "held-out zero-shot accuracy", "step": "step",
            "english": "English prompts", "bengali": "Bengali prompts", **(labels or {})}
    lines = [(history.zero_shot, "o-", text["english"])]
    if history.zero_shot_bn:
        lines.append((history.zero_shot_bn, "s-", text["bengali"]))
    return _loss_and_accuracy(history, text, lines, dpi=dpi)


def distillation_curves(history, labels: dict[str, str] | None = None, dpi: int = 72):
    """Loss per step (log scale) and held-out zero-shot accuracy per evaluation, in the new language and in the
    teacher's, of a :class:`mmcore.train_distill.DistillHistory`.

    ``labels`` overrides the axis texts (keys: loss, accuracy, step, target, source), e.g. in Bengali.
    """
    text = {"loss": "distillation loss (MSE)", "accuracy": "held-out zero-shot accuracy", "step": "step",
            "target": "prompts in the new language", "source": "prompts in the teacher's language", **(labels or {})}
    lines = [(history.zero_shot_target, "s-", text["target"]), (history.zero_shot_source, "o--", text["source"])]
    return _loss_and_accuracy(history, text, lines, log_loss=True, top=1.02, dpi=dpi)


def _series(history, key: str) -> list:
    """``history.key`` for a history object, ``history[key]`` for a dict (a checkpoint card's ``"history"``)."""
    return history[key] if isinstance(history, dict) else getattr(history, key)


def vq_training_curves(history, labels: dict[str, str] | None = None, dpi: int = 72):
    """Reconstruction loss, codebook perplexity and codebook usage per step of a VQGAN training run.

    ``history`` is a :class:`mmcore.train_vqgan.VQGANHistory` or a checkpoint card's ``"history"`` dict (keys
    ``step``, ``reconstruction``, ``perplexity``, ``usage``). The labels are bilingual by default; ``labels``
    overrides them (keys: reconstruction, perplexity, usage, step).
    """
    setup_fonts()
    text = {"reconstruction": "L1 reconstruction loss / পুনর্গঠন লস", "perplexity": "perplexity / পারপ্লেক্সিটি",
            "usage": "codes used in the batch / ব্যবহৃত কোড", "step": "step / ধাপ", **(labels or {})}
    steps = _series(history, "step")
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6), dpi=dpi)
    for ax, key in zip(axes, ("reconstruction", "perplexity", "usage")):
        ax.plot(steps, _series(history, key), linewidth=0.8)
        ax.set_xlabel(text["step"])
        ax.set_title(text[key], fontsize=9)
    axes[0].set_yscale("log")
    axes[2].set_ylim(0, 1.05)
    fig.tight_layout()
    return fig


def code_grid(image, indices, title: str | None = None, highlight=None, cell: float = 2.4, dpi: int = 72):
    """An image next to its grid of code indices: the image on the left; on the right the same image, faded,
    with the index of the code at each grid position written over its patch.

    ``image``: PIL image, HWC array or CHW tensor in [0, 1]; ``indices``: (h, w) integer tensor or array.
    ``highlight``: (h, w) boolean mask of positions to outline in red (e.g. an edited code).
    """
    setup_fonts()
    grid = indices.detach().cpu().numpy() if hasattr(indices, "detach") else indices
    h, w = grid.shape
    picture = _as_hwc(image)
    fig, (left, right) = plt.subplots(1, 2, figsize=(2 * cell, cell + (0.3 if title else 0)), dpi=dpi)
    left.imshow(picture, interpolation="nearest")
    right.imshow(picture, interpolation="nearest", alpha=0.35, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    for r in range(h):
        for c in range(w):
            right.text(c, r, str(int(grid[r, c])), ha="center", va="center", fontsize=6.5)
            if highlight is not None and bool(highlight[r][c]):
                right.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    right.set_xticks([x - 0.5 for x in range(w + 1)], [])
    right.set_yticks([y - 0.5 for y in range(h + 1)], [])
    right.grid(True, color="grey", linewidth=0.4)
    right.tick_params(length=0)
    left.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
