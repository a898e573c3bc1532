"""What the three generators share: one result type and the shipped helper models they fall back on.

The course draws pictures from text three ways, each a module-level pipeline that takes the models it uses::

    guided.generate(prompt, clip=None, vqgan=None, *, seed=0, ...)          # lesson 04: optimise VQGAN latents
    dalle.generate(prompt, model=None, *, n=8, seed=0, vqgan=None, clip=None, ...)   # lesson 05: one token stream
    unclip.generate(prompt, model=None, *, n=8, seed=0, clip=None, vqgan=None, ...)  # lesson 06: prior + decoder

A model argument left as None is the shipped one (loaded once per device and cached by :func:`shipped`). The model
classes themselves (:class:`mmcore.dalle.DALLE`, :class:`mmcore.unclip.UnCLIP`) only map tensors: token ids or
embeddings in, codes out. Every pipeline returns a :class:`Generation` (VQGAN+CLIP a subclass with its optimisation
record): the pictures as a tensor and as PIL images, the VQGAN codes, the scores when any were computed, and the
wall time.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from .images import to_pil

__all__ = ["Generation", "shipped"]


@dataclass
class Generation:
    """What :func:`mmcore.dalle.generate`, :func:`mmcore.unclip.generate` (and its ``variations``,
    ``interpolate``) and :func:`mmcore.guided.generate` return."""

    prompt: str  # what was asked ("" for unconditional samples and for image-to-image pipelines)
    pixels: Tensor  # (n, 3, S, S) in [0, 1] on the CPU, best first when re-ranked
    codes: Tensor  # (n, G, G) the VQGAN codes the pictures decode from
    scores: Tensor | None = None  # (n,) the score the pictures were ranked by (re-ranking, CLIP), None if none
    seconds: float = 0.0  # wall time of the whole pipeline
    embeddings: Tensor | None = None  # (n, E) the unit CLIP image embeddings decoded (unCLIP), else None

    @property
    def images(self) -> list[Any]:
        """The pictures as PIL RGB images (a new list on every call)."""
        return to_pil(self.pixels)

    @property
    def image(self) -> Any:
        """The first (best, when re-ranked) picture as a PIL image."""
        return to_pil(self.pixels[0])

    def __len__(self) -> int:
        return self.pixels.shape[0]


@functools.lru_cache(maxsize=None)
def _shipped(load: Callable[..., Any], name: str, device: str) -> Any:
    return load(name, device=device)


def shipped(load: Callable[..., Any], name: str, device: torch.device | str = "cpu") -> Any:
    """``load(name, device=device)``, done once per (loader, name, device) and cached: the default helper models of
    the pipelines (a CLIP, a VQGAN, a DALL-E prior). A cached model is shared: do not train it in place."""
    return _shipped(load, name, str(torch.device(device)))
