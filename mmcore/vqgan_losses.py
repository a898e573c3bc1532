"""The losses that train a VQGAN, as small pure functions (and PSNR, the number we report).

A VQGAN is a VQ-VAE (encoder -> vector quantiser -> decoder, :mod:`mmcore.vq`) trained with two extra critics.
The generator (encoder + quantiser + decoder) minimises

    L_G = reconstruction(x, x_hat) + vq_loss + lambda * w_disc(step) * g_loss(D(x_hat))

and a patch discriminator D, trained at the same time, minimises ``d_loss(D(x), D(x_hat))``. Each piece:

* :func:`reconstruction_loss` - L1 between the image and its reconstruction (L1 blurs less than L2). The
  original VQGAN adds a "perceptual" LPIPS term computed with a pretrained VGG; we have no downloadable
  weights, so the adversarial term alone has to bring back sharp edges.
* :func:`hinge_d_loss` - the discriminator's hinge loss: real patches should score above +1, fakes below -1;
  patches already on the right side of the margin cost nothing.
* :func:`hinge_g_loss` - the generator's side: make D score the reconstruction high (``-mean D(x_hat)``).
* :func:`adaptive_weight` - how much the adversarial gradient should count. The two losses pull the decoder's
  last layer with gradients of very different sizes, and their ratio drifts during training; the weight
  ``lambda = ||grad L_rec|| / (||grad L_G|| + eps)`` (both at the decoder's last layer) rescales the adversarial
  gradient to the size of the reconstruction gradient at every step.
* :func:`delayed_weight` - the adversarial term switches on only after ``start`` steps: a discriminator facing
  the blurry reconstructions of an untrained autoencoder wins easily, and its gradients then only add noise.

:func:`psnr` (peak signal-to-noise ratio, in dB, for images in [0, 1]) is the reconstruction metric of the
course's VQGAN card. This module imports no model code: the functions take tensors (and one parameter).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "reconstruction_loss",
    "hinge_d_loss",
    "hinge_g_loss",
    "adaptive_weight",
    "delayed_weight",
    "GeneratorLoss",
    "generator_loss",
    "psnr",
]


def reconstruction_loss(x: Tensor, x_hat: Tensor, kind: str = "l1") -> Tensor:
    """Mean absolute (``"l1"``) or squared (``"l2"``) error between images ``x`` and ``x_hat`` (B, 3, H, W)."""
    if x.shape != x_hat.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(x_hat.shape)}")
    if kind == "l1":
        return (x - x_hat).abs().mean()
    if kind == "l2":
        return F.mse_loss(x_hat, x)
    raise ValueError(f"kind must be 'l1' or 'l2'; got {kind!r}")


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """Discriminator hinge loss ``(mean relu(1 - D(x)) + mean relu(1 + D(x_hat))) / 2`` on patch logits."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_g_loss(logits_fake: Tensor) -> Tensor:
    """Generator's adversarial loss ``-mean D(x_hat)``: push the discriminator's score of the fakes up."""
    return -logits_fake.mean()


def adaptive_weight(rec_loss: Tensor, g_loss: Tensor, last_layer: Tensor, eps: float = 1e-4,
                    max_weight: float = 1e4) -> Tensor:
    """``||d rec_loss / d last_layer|| / (||d g_loss / d last_layer|| + eps)``, clamped to [0, max_weight], detached.

    ``last_layer`` is the weight of the decoder's output layer. Both losses must still have their graphs (the
    gradients are taken with ``retain_graph=True``, so the caller can backpropagate the total afterwards).
    """
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (g_grad.norm() + eps)
    return weight.clamp(0.0, max_weight).detach()


def delayed_weight(weight: float, step: int, start: int) -> float:
    """``weight`` from step ``start`` on, 0 before: the delayed start of the adversarial loss."""
    return weight if step >= start else 0.0


class GeneratorLoss(NamedTuple):
    """The generator's objective and its parts (all scalars; ``total`` carries the gradient)."""

    total: Tensor  # reconstruction + vq + adversarial_weight * adversarial
    reconstruction: Tensor  # L1 between image and reconstruction
    vq: Tensor  # quantiser loss (codebook + commitment, or commitment only with EMA)
    adversarial: Tensor  # hinge_g_loss of the reconstruction (0 when the adversarial term is off)
    adversarial_weight: Tensor  # delayed weight * adaptive weight actually applied (detached)


def generator_loss(x: Tensor, x_hat: Tensor, vq: Tensor, logits_fake: Tensor | None = None,
                   last_layer: Tensor | None = None, disc_weight: float = 0.0) -> GeneratorLoss:
    """Assemble the generator's objective: ``L1(x, x_hat) + vq + disc_weight * lambda * hinge_g(logits_fake)``.

    ``disc_weight`` is the (already delayed, :func:`delayed_weight`) adversarial weight; when it is 0 or there are
    no ``logits_fake`` the adversarial term is left out. ``lambda`` is :func:`adaptive_weight` at ``last_layer``
    (in eval mode, without gradients, it is 1).
    """
    rec = reconstruction_loss(x, x_hat)
    zero = rec.new_zeros(())
    if logits_fake is None or disc_weight == 0.0:
        return GeneratorLoss(rec + vq, rec.detach(), vq.detach(), zero, zero)
    g = hinge_g_loss(logits_fake)
    if last_layer is not None and torch.is_grad_enabled() and rec.requires_grad:
        lam = adaptive_weight(rec, g, last_layer)
    else:
        lam = rec.new_ones(())
    weight = disc_weight * lam
    return GeneratorLoss(rec + vq + weight * g, rec.detach(), vq.detach(), g.detach(), weight)


def psnr(x: Tensor, x_hat: Tensor, reduction: str = "mean") -> Tensor:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (B, C, H, W): ``10 log10(1 / MSE)`` per image.

    ``reduction="mean"`` averages the per-image PSNRs (the usual convention), ``"none"`` returns them (B,).
    ``x_hat`` is clamped to [0, 1] first, as a saved image would be.
    """
    mse = (x.float() - x_hat.float().clamp(0, 1)).pow(2).flatten(1).mean(dim=1)  # (B,)
    values = 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))  # (B,)
    return values.mean() if reduction == "mean" else values
