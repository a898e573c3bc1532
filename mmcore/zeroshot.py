"""Measuring a CLIP model on the Shapes world: zero-shot classification and text -> image retrieval.

Zero-shot classification needs no classifier training: every class gets a text prompt ("a picture of a green
heart"), the prompt's text embedding becomes the class's weight vector, and an image is assigned the class
whose prompt lies closest (:func:`mmcore.clip.zero_shot_classifier` does the embedding).

The Shapes version, used by the training loop (:mod:`mmcore.train_clip`), the tests and lesson 01:

* :func:`eval_set` - a fixed, reproducible set of images (a tensor) with their attributes.
* :func:`class_prompts` - the prompts of one (shape, colour) class in one language. The evaluation templates
  (:data:`mmcore.data.EVAL_TEMPLATES`, never used for training captions) may also name a size and a position;
  those are filled with every value in turn, so the prompt stays about the class alone.
* :func:`shapes_classifier` - zero-shot weights (E, C) for all shape x colour classes, prompt-ensembled.
* :func:`zero_shot_accuracy` - the pure maths: nearest class, fraction correct.
* :func:`evaluate_zero_shot` - joint (shape and colour), shape-only and colour-only accuracy.
* :func:`text_to_image_recall` - recall@k of image search with full captions (:func:`mmcore.search.recall_at_k`).

Shapes: ``N`` images, ``C`` classes, ``Q`` queries, ``E`` embedding size.
"""
from __future__ import annotations

import contextlib
import itertools
import random
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .clip import CLIP, zero_shot_classifier
from .data import (COLORS, EVAL_TEMPLATES, LANGS, POSITIONS, SHAPES, SIZES, UNSEEN_PHRASINGS, WATCH_SEED, caption,
                   render, sample_attributes)
from .images import normalize, to_tensor
from .search import distinct_attributes, recall_at_k, relevant_items

__all__ = [
    "CLASSES",
    "eval_set",
    "class_prompts",
    "shapes_classifier",
    "zero_shot_accuracy",
    "class_accuracies",
    "evaluate_zero_shot",
    "text_to_image_recall",
    "phrasing_report",
    "shapes_report",
]

#: Every (shape, colour) class, in table order: the joint zero-shot task has 6 x 8 = 48 classes.
CLASSES: list[tuple[str, str]] = list(itertools.product(SHAPES, COLORS))


def eval_set(split: str = "heldout", n: int = 600, seed: int = WATCH_SEED, image_size: int = 32) -> tuple[Tensor, list[dict[str, str]]]:
    """A fixed evaluation set: ``(images (N, 3, S, S) normalised, attributes)``, a pure function of the arguments.

    Its random stream (``"eval:..."``) differs from the training stream of :mod:`mmcore.train_clip`, so these
    exact images are never trained on.
    """
    rng = random.Random(f"eval:{split}:{seed}")
    attributes = [sample_attributes(rng, split) for _ in range(n)]
    pil = [render(attrs, image_size, random.Random(f"eval:{split}:{seed}:{i}")) for i, attrs in enumerate(attributes)]
    return normalize(to_tensor(pil, image_size)), attributes  # (N, 3, S, S) as mmcore.clip.Preprocess makes them


def class_prompts(shape: str, color: str, lang: str = "en", templates: Sequence[str] | None = None) -> list[list[str]]:
    """The prompts of class (``shape``, ``color``): one list per template (default: ``EVAL_TEMPLATES[lang]``).

    A template that also names ``{size}`` or ``{position}`` is filled with every size and position (10 prompts),
    so that the class embedding does not favour one of them.
    """
    if lang not in EVAL_TEMPLATES:
        raise ValueError(f"lang must be one of {sorted(EVAL_TEMPLATES)}; got {lang!r}")
    templates = EVAL_TEMPLATES[lang] if templates is None else templates
    prompts = []
    for template in templates:
        fills = itertools.product(SIZES, POSITIONS) if ("{size" in template or "{position" in template) else [("small", "center")]
        attrs = [{"shape": shape, "color": color, "size": size, "position": pos} for size, pos in fills]
        prompts.append(sorted({caption(a, lang, template=template) for a in attrs}))
    return prompts


@torch.no_grad()
def shapes_classifier(
    model: CLIP,
    tokenizer: Callable[..., Tensor],
    lang: str = "en",
    classes: Sequence[tuple[str, str]] = CLASSES,
    templates: Sequence[str] | None = None,
) -> Tensor:
    """Zero-shot weights (E, C) for (shape, colour) ``classes``: each template's prompts are averaged, then the
    templates (each template one vote), and the result is normalised to unit length."""
    per_class = [class_prompts(shape, color, lang, templates) for shape, color in classes]
    flat = [p for groups in per_class for group in groups for p in group]
    emb = zero_shot_classifier(model, tokenizer, flat, templates=("{}",)).t()  # (P, E): one unit vector per prompt
    columns, start = [], 0
    for groups in per_class:
        votes = []
        for group in groups:
            votes.append(emb[start : start + len(group)].mean(dim=0))  # (E,): this template's vote
            start += len(group)
        columns.append(F.normalize(torch.stack(votes).mean(dim=0), dim=-1))  # (E,)
    return torch.stack(columns, dim=1)  # (E, C)


def zero_shot_accuracy(image_embeddings: Tensor, class_weights: Tensor, labels: Tensor) -> float:
    """Fraction of images whose nearest class (largest ``embedding @ weights``) is ``labels``.

    ``image_embeddings`` (N, E) unit vectors, ``class_weights`` (E, C), ``labels`` (N,) class indices.
    """
    predictions = (image_embeddings @ class_weights).argmax(dim=1)  # (N,)
    return (predictions == labels.to(predictions.device)).float().mean().item()


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Evaluate ``model`` in eval mode inside the block, then put back the mode it had (training loops call this)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def _encode_images(model: CLIP, images: Tensor, batch_size: int = 500) -> Tensor:
    device = next(model.parameters()).device
    parts = [model.encode_image(images[i : i + batch_size].to(device), normalize=True) for i in range(0, len(images), batch_size)]
    return torch.cat(parts)  # (N, E)


@torch.no_grad()
def evaluate_zero_shot(
    model: CLIP,
    tokenizer: Callable[..., Tensor],
    images: Tensor,
    attributes: Sequence[dict[str, str]],
    lang: str = "en",
    templates: Sequence[str] | None = None,
) -> dict[str, float]:
    """Zero-shot accuracy over all 48 shape x colour classes: ``{"joint", "shape", "color"}``.

    ``joint``: the predicted class is exactly (shape, colour). ``shape`` / ``color``: the predicted class has the
    right shape / colour (the same 48-way prediction, read one attribute at a time).
    """
    with eval_mode(model):
        weights = shapes_classifier(model, tokenizer, lang, CLASSES, templates)  # (E, C)
        image_emb = _encode_images(model, images)  # (N, E)
    return class_accuracies(image_emb, weights, attributes)


def class_accuracies(image_embeddings: Tensor, class_weights: Tensor, attributes: Sequence[dict[str, str]]) -> dict[str, float]:
    """``{"joint", "shape", "color"}`` accuracy of the nearest of the 48 :data:`CLASSES` (``class_weights`` (E, 48))
    for unit ``image_embeddings`` (N, E) whose true attributes are ``attributes``."""
    predicted = (image_embeddings @ class_weights.to(image_embeddings.device)).argmax(dim=1).tolist()  # (N,)
    pairs = [CLASSES[p] for p in predicted]
    n = len(attributes)
    return {
        "joint": sum(p == (a["shape"], a["color"]) for p, a in zip(pairs, attributes)) / n,
        "shape": sum(p[0] == a["shape"] for p, a in zip(pairs, attributes)) / n,
        "color": sum(p[1] == a["color"] for p, a in zip(pairs, attributes)) / n,
    }


@torch.no_grad()
def text_to_image_recall(
    model: CLIP,
    tokenizer: Callable[..., Tensor],
    images: Tensor,
    attributes: Sequence[dict[str, str]],
    lang: str = "en",
    ks: Sequence[int] = (1, 5, 10),
) -> dict[int, float]:
    """Image search with full captions ("a small red circle at the top"): recall@k over ``images``.

    One query per distinct full caption among the images. A full caption names shape, colour, size and position,
    and there are only 6 * 8 * 2 * 5 = 480 of them, so several images share each caption: every image with the
    caption's four attributes counts as a correct answer (:func:`mmcore.search.recall_at_k`).
    """
    queries = distinct_attributes(attributes)
    texts = [caption(attrs, lang) for attrs in queries]  # caption() without a template: the full one
    device = next(model.parameters()).device
    with eval_mode(model):
        query_emb = model.encode_text(tokenizer(texts).to(device), normalize=True)  # (Q, E)
        image_emb = _encode_images(model, images)  # (N, E)
    relevant = [relevant_items(attributes, **attrs) for attrs in queries]  # per query: the correct images
    return recall_at_k(query_emb, image_emb, relevant, ks)


@torch.no_grad()
def phrasing_report(
    model: CLIP,
    tokenizer: Callable[..., Tensor],
    images: Tensor,
    attributes: Sequence[dict[str, str]],
    phrasings: dict[str, Sequence[str]] = UNSEEN_PHRASINGS,
    langs: Sequence[str] = LANGS,
) -> dict[str, dict[str, dict[str, float]]]:
    """Does the phrasing matter? Zero-shot accuracy with each phrasing alone as the prompt (no ensembling):
    ``report[lang][phrasing] = {"joint", "shape", "color"}``. The default phrasings are
    :data:`mmcore.data.UNSEEN_PHRASINGS`, which no training caption or prompt template uses."""
    with eval_mode(model):
        image_emb = _encode_images(model, images)  # (N, E): encoded once for every phrasing
        return {lang: {phrasing: class_accuracies(image_emb, shapes_classifier(model, tokenizer, lang, CLASSES, [phrasing]),
                                                  attributes)
                       for phrasing in phrasings[lang]} for lang in langs}


@torch.no_grad()
def shapes_report(model: CLIP, tokenizer: Callable[..., Tensor], n_heldout: int = 600, n_test: int = 1000,
                  seed: int = WATCH_SEED, langs: Sequence[str] = LANGS, recall: bool = True) -> dict[str, float]:
    """The full Shapes report: held-out zero-shot accuracy (joint / shape / colour) and text -> image recall@1,
    in each language. Keys like ``"zero_shot_en_joint"``, ``"recall1_bn"``."""
    size = model.cfg.image_size
    metrics: dict[str, float] = {}
    images, attributes = eval_set("heldout", n_heldout, seed, size)
    for lang in langs:
        for kind, value in evaluate_zero_shot(model, tokenizer, images, attributes, lang).items():
            metrics[f"zero_shot_{lang}_{kind}"] = value
    if recall:
        images, attributes = eval_set("test", n_test, seed, size)
        for lang in langs:
            metrics[f"recall1_{lang}"] = text_to_image_recall(model, tokenizer, images, attributes, lang, ks=(1,))[1]
    return metrics
