"""Diffusion in a few pure functions: the noise schedule, noising, and one DDIM denoising step.

A diffusion model learns to *undo noise*. Training takes a clean sample ``x0`` (for us: a CLIP image embedding, or
the VQGAN code vectors of an image), picks a random time ``t`` in [0, 1] and mixes in Gaussian noise::

    x_t = sqrt(a(t)) * x0 + sqrt(1 - a(t)) * noise        (add_noise)

where ``a(t)`` (:func:`alpha_bar`, "alpha bar") falls from 1 (clean) at t = 0 to 0 (pure noise) at t = 1. A
network sees ``x_t`` and ``t`` (and a condition: a caption's embedding, an image's embedding) and predicts ``x0``.
Generation runs the other way: start from pure noise at t = 1 and walk down a grid of times; at each step the
network guesses ``x0``, the guess tells which noise is in ``x_t`` (:func:`predicted_noise`), and
:func:`ddim_step` moves to the next, less noisy time by mixing the guess and that noise in the proportions the
schedule prescribes (Song et al., 2021, "DDIM"; ``eta=0`` deterministic, ``eta=1`` adds fresh noise like DDPM).

The schedule is the cosine one of Nichol & Dhariwal (2021). Everything here works on tensors of any shape whose
first dimension is the batch; ``t`` is a float tensor (B,).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["alpha_bar", "add_noise", "predicted_noise", "ddim_step", "time_grid", "timestep_embedding"]

_MIN_ALPHA_BAR = 1e-4  # a(1) would be exactly 0; keep both sqrt terms finite
_MAX_ALPHA_BAR = 1.0 - 1e-6


def alpha_bar(t: Tensor, s: float = 0.008) -> Tensor:
    """The cosine schedule: the fraction of signal *power* left at time ``t`` in [0, 1] (1 -> clean, 0 -> noise)."""
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    return (f / f0).clamp(_MIN_ALPHA_BAR, _MAX_ALPHA_BAR)


def _per_sample(a: Tensor, x: Tensor) -> Tensor:
    """(B,) -> (B, 1, ..., 1) so that it broadcasts over a sample of ``x``."""
    return a.view(-1, *([1] * (x.ndim - 1)))


def add_noise(x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """``x_t = sqrt(a(t)) x0 + sqrt(1 - a(t)) noise`` for clean samples ``x0`` (B, ...) at times ``t`` (B,)."""
    a = _per_sample(alpha_bar(t), x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def predicted_noise(x_t: Tensor, x0: Tensor, t: Tensor) -> Tensor:
    """The noise that a guess ``x0`` implies is in ``x_t`` at times ``t``: :func:`add_noise` solved for the noise."""
    a = _per_sample(alpha_bar(t), x_t)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


def ddim_step(x_t: Tensor, x0: Tensor, t: Tensor, t_next: Tensor, eta: float = 0.0,
              noise: Tensor | None = None) -> Tensor:
    """One denoising step from time ``t`` to the earlier time ``t_next`` given the network's guess ``x0``.

    ``x_next = sqrt(a') x0 + sqrt(1 - a' - sigma^2) eps + sigma * noise`` with ``eps`` = :func:`predicted_noise`,
    ``a' = a(t_next)`` and ``sigma = eta * sqrt((1 - a') / (1 - a)) * sqrt(1 - a / a')``. ``eta=0``: no fresh noise
    (the deterministic DDIM sampler); then ``noise`` may be None. At ``t_next = 0`` the result is ``x0`` itself.
    """
    a = _per_sample(alpha_bar(t), x_t)
    a_next = _per_sample(alpha_bar(t_next), x_t)
    eps = predicted_noise(x_t, x0, t)
    sigma = eta * ((1 - a_next) / (1 - a)).sqrt() * (1 - a / a_next).clamp(min=0).sqrt()
    x_next = a_next.sqrt() * x0 + (1 - a_next - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        x_next = x_next + sigma * noise
    final = _per_sample(t_next <= 0, x_t)
    return torch.where(final, x0, x_next)


def time_grid(steps: int, device: torch.device | str | None = None) -> Tensor:
    """``steps + 1`` times from 1 (pure noise) down to 0 (clean), evenly spaced: the sampler's path."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1, device=device)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 1000.0) -> Tensor:
    """Times (B,) in [0, 1] -> sinusoidal features (B, dim), as transformers embed positions."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)  # (h,)
    angles = (t.float() * 1000.0)[:, None] * freqs[None, :]  # (B, h)
    emb = torch.cat([angles.cos(), angles.sin()], dim=-1)  # (B, 2h)
    return torch.nn.functional.pad(emb, (0, dim - 2 * half))  # (B, dim)
