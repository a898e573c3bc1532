"""Tests of mmcore.sampling: the top-k / top-p filters, drawing from logits, classifier-free guidance, re-ranking."""
from __future__ import annotations

import pytest
import torch

from mmcore.sampling import (classifier_free_guidance, rerank_scores, sample_from_logits, standardize, top_k_filter,
                             top_p_filter)


def test_top_k_filter():
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0], [0.5, 0.1, 0.2, 0.9]])
    out = top_k_filter(logits, 2)
    assert torch.isinf(out).tolist() == [[True, False, False, True], [False, True, True, False]]
    assert torch.equal(out[~torch.isinf(out)], logits[~torch.isinf(out)])
    assert torch.equal(top_k_filter(logits, None), logits) and torch.equal(top_k_filter(logits, 10), logits)
    with pytest.raises(ValueError):
        top_k_filter(logits, 0)


def test_top_p_filter():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    keep = lambda p: (~torch.isinf(top_p_filter(logits, p))).tolist()[0]  # noqa: E731
    assert keep(0.5) == [True, False, False, False]  # the top class alone reaches 0.5
    assert keep(0.6) == [True, True, False, False]  # 0.5 + 0.3 >= 0.6
    assert keep(0.85) == [True, True, True, False]
    assert keep(0.01) == [True, False, False, False]  # the most likely class is always kept
    assert keep(1.0) == [True] * 4
    shuffled = logits[:, [2, 0, 3, 1]]  # order does not matter
    assert (~torch.isinf(top_p_filter(shuffled, 0.6))).tolist()[0] == [False, True, False, True]


def test_sample_from_logits():
    logits = torch.tensor([[0.0, 5.0, 1.0], [2.0, 0.0, 9.0]])
    assert sample_from_logits(logits, temperature=0).tolist() == [1, 2]
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_from_logits(logits, top_k=1, generator=g) for _ in range(20)])  # (20, 2)
    assert (draws == torch.tensor([1, 2])).all()  # top-k 1 is greedy
    g = torch.Generator().manual_seed(0)
    many = torch.cat([sample_from_logits(torch.zeros(500, 4), generator=g)])  # uniform: every class appears
    assert set(many.tolist()) == {0, 1, 2, 3}
    counts = torch.bincount(many, minlength=4).float() / 500
    assert (counts - 0.25).abs().max() < 0.08
    x = torch.randn(8, 6)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(sample_from_logits(x, generator=g1), sample_from_logits(x, generator=g2))  # reproducible
    with pytest.raises(ValueError):
        sample_from_logits(logits, temperature=-1)


def test_rerank_scores():
    clip, lik = torch.tensor([0.85, 0.86, 0.84]), torch.tensor([-1.0, -3.0, -1.5])
    assert torch.equal(rerank_scores(clip, lik, "clip"), clip)
    assert torch.equal(rerank_scores(clip, lik, "likelihood"), lik)
    both = rerank_scores(clip, lik, "clip+likelihood")
    assert torch.allclose(both, standardize(clip) + standardize(lik)) and both.argmax() == 0
    assert torch.allclose(standardize(torch.tensor([1.0, 3.0])).abs(), torch.tensor([0.7071, 0.7071]), atol=1e-4)
    assert torch.equal(standardize(torch.tensor([2.0, 2.0])), torch.zeros(2))
    with pytest.raises(ValueError, match="rerank_by"):
        rerank_scores(clip, lik, "judge")


def test_classifier_free_guidance():
    cond, uncond = torch.tensor([1.0, 2.0, -0.3]), torch.tensor([0.5, 0.0, 0.7])
    assert torch.equal(classifier_free_guidance(cond, uncond, 1.0), cond)  # exactly
    assert torch.allclose(classifier_free_guidance(cond, uncond, 0.0), uncond)
    assert torch.allclose(classifier_free_guidance(cond, uncond, 3.0), uncond + 3 * (cond - uncond))
