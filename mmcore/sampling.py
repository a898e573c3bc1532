"""Sampling maths shared by the course's two token/embedding generators (:mod:`mmcore.dalle`, :mod:`mmcore.unclip`).

* **Filters** over the next-token logits: :func:`top_k_filter` (keep the k most likely) and :func:`top_p_filter`
  (nucleus: the smallest most likely set with probability mass >= p); :func:`sample_from_logits` applies the
  temperature, both filters, and draws one class per row reproducibly on any device.
* **Classifier-free guidance** (Ho & Salimans, 2022): :func:`classifier_free_guidance` pushes a conditional
  prediction away from the unconditional one. DALL-E applies it to logits, unCLIP to predicted embeddings.
* **Re-ranking**: :func:`rerank_scores` turns CLIP's and the generator's own scores of ``n`` samples into one
  score to sort by (:data:`RERANK_BY` names the choices); :func:`standardize` makes two scores addable.
* :class:`PromptTooLongError`: what every generator raises for a prompt longer than its text positions.

Every function here is pure (tensors in, tensors out) and knows nothing about a particular model.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "PromptTooLongError",
    "top_k_filter",
    "top_p_filter",
    "sample_from_logits",
    "classifier_free_guidance",
    "RERANK_BY",
    "standardize",
    "rerank_scores",
]


class PromptTooLongError(ValueError):
    """A prompt has more tokens than the model's text positions."""


def top_k_filter(logits: Tensor, k: int | None) -> Tensor:
    """Keep the ``k`` largest logits of each row (last dimension), set the others to ``-inf``.

    ``k=None`` (or ``k`` >= the number of classes) keeps all. Ties at the k-th value are all kept.
    """
    if k is None or k >= logits.shape[-1]:
        return logits
    if k < 1:
        raise ValueError(f"top_k must be >= 1 or None; got {k}")
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1): the k-th largest value
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float | None) -> Tensor:
    """Nucleus filtering: keep the smallest set of most likely classes whose probabilities sum to at least ``p``.

    The most likely class is always kept; ``p=None`` or ``p >= 1`` keeps all. Others get ``-inf``.
    """
    if p is None or p >= 1.0:
        return logits
    if p <= 0:
        raise ValueError(f"top_p must be in (0, 1] or None; got {p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (..., K)
    probs = sorted_logits.softmax(dim=-1)  # (..., K)
    mass_before = probs.cumsum(dim=-1) - probs  # (..., K): probability of the classes ranked above
    drop_sorted = mass_before >= p  # the set already reached p without this class
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to the original class order
    return logits.masked_fill(drop, float("-inf"))


def classifier_free_guidance(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """``uncond + scale * (cond - uncond)``: move the logits ``scale`` times as far from the unconditional ones.

    ``scale=1`` gives ``cond`` (written as ``cond + (scale - 1) * (cond - uncond)``, so exactly ``cond``), ``0``
    gives ``uncond``, larger values follow the caption more closely at the cost of variety.
    """
    return cond + (scale - 1.0) * (cond - uncond)


def sample_from_logits(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None, generator: torch.Generator | None = None) -> Tensor:
    """One class per row of ``logits`` (B, K) -> (B,) long.

    Temperature first, then :func:`top_k_filter` and :func:`top_p_filter`, then one uniform number per row from
    ``generator`` (a CPU generator; the draw is moved to the logits' device) picks a class by inverting the
    cumulative distribution. The same generator state gives the same classes on any device, and logits that
    differ only by float rounding (a cached and an uncached forward) almost never change the result.
    ``temperature=0`` picks the most likely class.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    # (B, 1) uniform in (0, 1), drawn even when greedy so that the generator advances the same way
    u = torch.rand(logits.shape[0], 1, generator=generator).clamp_(min=1e-7).to(logits.device)
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = top_p_filter(top_k_filter(logits.float() / temperature, top_k), top_p)
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)  # (B, K)
    index = (cdf < u * cdf[:, -1:]).sum(dim=-1)  # (B,): the first class whose cumulative mass reaches u
    return index.clamp_(max=logits.shape[-1] - 1)


RERANK_BY = ("clip", "likelihood", "clip+likelihood")  # the scores :func:`rerank_scores` knows


def standardize(x: Tensor) -> Tensor:
    """``(x - mean) / std`` of a 1-d tensor (0 where all values are equal): makes two scores addable."""
    std = x.std() if x.numel() > 1 else x.new_zeros(())
    return (x - x.mean()) / std if std > 0 else torch.zeros_like(x)


def rerank_scores(clip_score: Tensor | None, log_likelihood: Tensor | None, rerank_by: str = "clip") -> Tensor:
    """The score that re-ranking sorts by (higher is better), for one prompt's ``n`` samples -> (n,).

    ``"clip"``: CLIP's cosine similarity with the prompt (the DALL-E paper). ``"likelihood"``: the generator's own
    mean log-probability of the sample's codes (low for the odd, broken sample). ``"clip+likelihood"``: the sum of
    both, each standardised over the ``n`` samples. Why the second: the course's tiny CLIP at 32 px gives every
    good sample almost the same score (0.85 +- 0.01), so on its own it often picks an odd sample whose outline is
    broken; the likelihood prefers typical samples.
    """
    if rerank_by == "clip":
        return clip_score
    if rerank_by == "likelihood":
        return log_likelihood
    if rerank_by == "clip+likelihood":
        return standardize(clip_score) + standardize(log_likelihood)
    raise ValueError(f"rerank_by must be one of {RERANK_BY}; got {rerank_by!r}")
