"""Linear probes: how much a frozen embedding already "knows", measured by the simplest classifier on top.

A linear probe trains only a logistic-regression layer on fixed (frozen) embeddings of labelled examples. It is
the standard way to compare representations, and the natural rival of zero-shot classification: the probe
needs labelled images of every class, zero-shot needs only the class names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["fit_linear_probe", "probe_accuracy"]


def fit_linear_probe(embeddings: Tensor, labels: Tensor, num_classes: int, weight_decay: float = 1e-3,
                     steps: int = 100) -> tuple[Tensor, Tensor]:
    """Multinomial logistic regression on frozen ``embeddings`` (N, E) with integer ``labels`` (N,).

    Fitted with L-BFGS (full batch, deterministic) on the L2-regularised cross-entropy; returns the weights
    ``(E, C)`` and the bias ``(C,)``. Classes absent from ``labels`` get no training signal: a probe can only
    predict what it was shown.
    """
    if embeddings.ndim != 2 or labels.shape != (embeddings.shape[0],):
        raise ValueError(f"expected embeddings (N, E) and labels (N,); got {tuple(embeddings.shape)} and {tuple(labels.shape)}")
    x = embeddings.detach().float()
    weight = torch.zeros(x.shape[1], num_classes, requires_grad=True)  # (E, C)
    bias = torch.zeros(num_classes, requires_grad=True)  # (C,)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, labels) + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach(), bias.detach()


def probe_accuracy(embeddings: Tensor, labels: Tensor, weight: Tensor, bias: Tensor) -> float:
    """Fraction of ``embeddings`` (N, E) whose highest-scoring class is ``labels`` (N,)."""
    predictions = (embeddings.float() @ weight + bias).argmax(dim=1)  # (N,)
    return (predictions == labels).float().mean().item()
