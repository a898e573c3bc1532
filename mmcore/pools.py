"""Training data for the generators, encoded once: pools of Shapes pictures and tables of every training caption.

A generator's training step should cost only the network. So before the first step the frozen models encode
the data once, and a step only indexes tensors:

* a **pool** of fresh ``"train"``-split Shapes pictures (:func:`mmcore.data.rendered_chunks`, image *i* a pure
  function of the seed and *i*), kept as what the generator trains on: the frozen VQGAN's 8 x 8 codes
  (:class:`CodePool`, DALL-E: 64 bytes per picture), plus CLIP's image embedding (:class:`EmbeddingPool`, unCLIP),
  and each picture's attribute combination (:func:`mmcore.data.combo_index`);
* a **caption table** per attribute combination: the token ids of every training caption
  (:func:`caption_table`, DALL-E: every template of :data:`mmcore.data.TRAIN_TEMPLATES` in both languages, and
  optionally captions framed by everyday words) or their unit CLIP text embeddings (:func:`text_embedding_table`,
  unCLIP's prior);
* a **batch** is random pool entries, each with a random column of its row of the table
  (:func:`draw_code_batch`, :func:`draw_prior_batch`).
"""
from __future__ import annotations

import random
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .clip import normalize_pixels
from .dalle import pad_after_end
from .data import LANGS, NUM_COMBOS, TRAIN_TEMPLATES, caption, combo_attributes, frame_caption, rendered_chunks

__all__ = [
    "CodePool",
    "build_code_pool",
    "caption_table",
    "training_captions",
    "framed_captions",
    "draw_code_batch",
    "EmbeddingPool",
    "build_embedding_pool",
    "text_embedding_table",
    "draw_prior_batch",
]


# ------------------------------------------------------------------------------------------- DALL-E: codes, tokens


class CodePool(NamedTuple):
    codes: Tensor  # (N, G*G) uint8 VQGAN codes (num_codes <= 256), on the training device
    combos: Tensor  # (N,) long: each image's row of the caption table


@torch.no_grad()
def build_code_pool(vqgan: Any, n: int, seed: int = 0, split: str = "train", batch: int = 1024, workers: int = 1,
               device: torch.device | str | None = None) -> CodePool:
    """Render ``n`` images of ``split`` and encode them with the (frozen) ``vqgan`` -> :class:`CodePool` on ``device``.

    Rendering runs on the CPU (``workers`` processes) and is encoded chunk by chunk as it arrives (on the VQGAN's
    device, ``batch`` images at a time), so only the codes of the whole pool are ever held: 64 bytes per image."""
    if vqgan.cfg.num_codes > 256:
        raise ValueError("the pool stores codes as uint8: at most 256 codes")
    vq_device = next(vqgan.parameters()).device
    device = torch.device(device) if device is not None else vq_device
    codes, combos = [], []
    for images, chunk_combos in rendered_chunks(n, seed, split, vqgan.cfg.image_size, workers):
        for i in range(0, len(images), batch):
            x = images[i : i + batch].to(vq_device).float().div_(255.0)  # (b, 3, S, S) in [0, 1]
            codes.append(vqgan.encode(x).indices.flatten(1).to(torch.uint8).to(device))  # (b, G*G)
        combos.append(chunk_combos.to(device))
    if not codes:
        G = vqgan.cfg.grid_size
        return CodePool(torch.zeros(0, G * G, dtype=torch.uint8, device=device), torch.zeros(0, dtype=torch.long,
                                                                                              device=device))
    return CodePool(torch.cat(codes), torch.cat(combos))


def training_captions() -> list[str]:
    """Every training caption, combination-major: for each of the :data:`~mmcore.data.NUM_COMBOS` attribute
    combinations, the English :data:`~mmcore.data.TRAIN_TEMPLATES`, then their Bengali twins (the column order of
    both caption tables)."""
    return [caption(combo_attributes(i), lang, template)
            for i in range(NUM_COMBOS) for lang in LANGS for template in TRAIN_TEMPLATES[lang]]


def framed_captions(index: int, count: int, tokenizer: Any, text_length: int, seed: int = 0) -> list[str]:
    """``count`` framed captions of combination ``index``: a random training template of a random language with
    everyday words around it (:func:`mmcore.data.frame_caption`), each short enough for ``text_length`` positions.
    A pure function of (index, count, seed)."""
    texts = []
    rng = random.Random(f"dalle-frame:{seed}:{index}")
    attrs = combo_attributes(index)
    while len(texts) < count:
        lang = LANGS[len(texts) % len(LANGS)]  # both languages equally
        text = frame_caption(caption(attrs, lang, rng.choice(TRAIN_TEMPLATES[lang])), lang, rng)
        if len(tokenizer.encode(text)) + 2 <= text_length:  # [start] + tokens + [end] must fit; else draw again
            texts.append(text)
    return texts


def caption_table(tokenizer: Any, text_length: int, pad_token: int, framed: int = 0, seed: int = 0) -> Tensor:
    """Token ids of every training caption: (480 combinations, T templates + ``framed``, text_length).

    The first half of the T templates are the English :data:`mmcore.data.TRAIN_TEMPLATES`, the second half their
    Bengali translations (in the same order); then ``framed`` captions per combination with everyday words around
    them (:func:`framed_captions`, both languages alternately). Padding after [end] is ``pad_token``."""
    texts = training_captions()
    tokens = pad_after_end(tokenizer(texts, context_length=text_length), tokenizer.eot_token, pad_token)
    table = tokens.view(NUM_COMBOS, -1, text_length)  # (480, T, Lt)
    if framed:
        extra = [t for i in range(NUM_COMBOS) for t in framed_captions(i, framed, tokenizer, text_length, seed)]
        extra_tokens = pad_after_end(tokenizer(extra, context_length=text_length), tokenizer.eot_token, pad_token)
        table = torch.cat([table, extra_tokens.view(NUM_COMBOS, framed, text_length)], dim=1)  # (480, T + F, Lt)
    return table


def draw_code_batch(pool: CodePool, table: Tensor, batch_size: int, null_text: Tensor, null_prob: float,
               generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One training batch: ``(text (B, Lt), codes (B, G*G))``, everything on the pool's device.

    Random pool entries, a random caption template each (:func:`caption_table`), and the null caption
    ``null_text`` (Lt,) instead with probability ``null_prob``. ``generator`` lives on the pool's device."""
    device = pool.codes.device
    index = torch.randint(len(pool.codes), (batch_size,), device=device, generator=generator)  # (B,)
    template = torch.randint(table.shape[1], (batch_size,), device=device, generator=generator)  # (B,)
    text = table[pool.combos[index], template]  # (B, Lt)
    if null_prob > 0:
        drop = torch.rand(batch_size, device=device, generator=generator) < null_prob  # (B,)
        text = torch.where(drop[:, None], null_text[None, :], text)  # (B, Lt)
    return text, pool.codes[index].long()


# ------------------------------------------------------------------------- unCLIP: image and text embeddings


class EmbeddingPool(NamedTuple):
    codes: Tensor  # (N, G*G) uint8 VQGAN codes
    combos: Tensor  # (N,) long: each image's attribute combination (mmcore.data.combo_index)
    image_emb: Tensor  # (N, E) unit CLIP image embeddings


@torch.no_grad()
def build_embedding_pool(clip: Any, vqgan: Any, n: int, seed: int = 0, split: str = "train", batch: int = 1024,
                         workers: int = 1) -> EmbeddingPool:
    """Render ``n`` images of ``split``; keep their VQGAN codes and CLIP image embeddings (:class:`EmbeddingPool`)."""
    device = next(vqgan.parameters()).device
    codes, combos, embs = [], [], []
    for images, chunk_combos in rendered_chunks(n, seed, split, vqgan.cfg.image_size, workers):
        for i in range(0, len(images), batch):
            x = images[i : i + batch].to(device).float().div_(255.0)  # (b, 3, S, S) in [0, 1]
            codes.append(vqgan.encode(x).indices.flatten(1).to(torch.uint8))  # (b, G*G)
            embs.append(clip.encode_image(normalize_pixels(x, clip.cfg.image_size), normalize=True))  # (b, E)
        combos.append(chunk_combos.to(device))
    return EmbeddingPool(torch.cat(codes), torch.cat(combos), torch.cat(embs))


@torch.no_grad()
def text_embedding_table(clip: Any, tokenizer: Any, batch: int = 960) -> Tensor:
    """Unit CLIP text embeddings of every training caption: (480 combinations, T templates, E).

    English templates first, then their Bengali twins, in the order of :func:`caption_table`."""
    device = next(clip.parameters()).device
    texts = training_captions()
    emb = torch.cat([clip.encode_text(tokenizer(texts[i : i + batch]).to(device), normalize=True)
                     for i in range(0, len(texts), batch)])  # (480 * T, E)
    return emb.view(NUM_COMBOS, -1, emb.shape[-1])


def draw_prior_batch(pool: EmbeddingPool, table: Tensor, batch_size: int,
                     generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``(image embeddings (B, E), text embeddings (B, E))``: random pool images, a random caption template each."""
    index = torch.randint(len(pool.codes), (batch_size,), generator=generator).to(pool.codes.device)  # (B,)
    template = torch.randint(table.shape[1], (batch_size,), generator=generator).to(table.device)  # (B,)
    return pool.image_emb[index], table[pool.combos[index], template]
