"""DALL-E 2 (unCLIP) at course size: a prior from CLIP's text embedding to its image embedding, and a decoder
from the image embedding to an image.

DALL-E 2 (Ramesh et al., 2022) turns CLIP around. CLIP maps an image to an embedding; unCLIP learns the way back,
from an embedding to an image, and so generates in two stages::

    "a red circle" --CLIP text encoder--> text embedding --prior--> image embedding --decoder--> 8 x 8 codes --VQGAN--> pixels

* **Why a prior?** CLIP's text and image embeddings of the same thing are *close*, not equal: the two towers put
  them in different regions of the sphere (the "modality gap"), and one caption fits many images (any size, any
  position). The decoder is trained on *image* embeddings only, so the prior's job is to turn a caption into a
  plausible image embedding, one sample per possible image. Lesson 06 measures what happens without it.
* **The prior** (:class:`DiffusionPrior`) is a *diffusion* model over the 128 numbers of an embedding: a residual
  MLP that, given a noisy image embedding, the time and the text embedding, predicts the clean image embedding (as
  DALL-E 2's prior predicts it directly). Why diffusion and not autoregressive: the embedding is a continuous
  vector; an autoregressive prior would first have to quantise it into tokens (DALL-E 2 tried both and found the
  diffusion prior as good and cheaper), and here a diffusion MLP trains on a laptop CPU in minutes.
* **The decoder** (:class:`CodeDecoder`) is a diffusion model over the VQGAN's latent grid: the 64 code vectors
  (8 x 8 x 32 numbers) of an image, noised. A small bidirectional transformer sees the noisy grid, the time and the
  CLIP image embedding (as an extra token) and predicts, for every cell, a distribution over the 256 codes: its
  guess of the clean grid is the expected code vector. Predicting codes with a cross-entropy makes the small model
  learn fast, and the last step simply takes the most likely code of each cell, which the VQGAN decodes
  (the idea of diffusion on embedded categorical data, Dieleman et al., 2022).
* **Classifier-free guidance** in both stages: the condition is replaced by a learned *null* vector in 10% of
  training steps, and sampling pushes away from the unconditional prediction (:func:`mmcore.sampling.classifier_free_guidance`).
* **DDIM sampling** (:func:`mmcore.diffusion.ddim_step`) with a few dozen steps.

What it gives besides text -> image: **variations** of an image (encode it with CLIP, decode several times with
different noise) and **interpolation** between two images (decode points on the great circle between their
embeddings, :func:`slerp`, with the same noise).

The model class maps tensors (embeddings -> embeddings -> codes); the pipelines that need CLIP and the VQGAN are the
module's functions, which take the models they use (the shipped ones by default)::

    model = mmcore.unclip.load()                                     # "shapes-unclip"
    mmcore.unclip.generate("একটি লাল বৃত্ত", model, n=8).images        # eight PIL images
    mmcore.unclip.variations(picture, model, n=4)                    # image -> similar images
    mmcore.unclip.interpolate(picture_a, picture_b, model, steps=6)  # a walk between two images

Train one with ``python -m mmcore.train_unclip`` (:mod:`mmcore.train_unclip`).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import clip as clip_module
from . import get_device
from . import vqgan as vqgan_module
from .clip import Preprocess, normalize_pixels
from .data import LANGS, pair_prompt
from .diffusion import add_noise, ddim_step, time_grid, timestep_embedding
from .generation import Generation, shipped
from .sampling import PromptTooLongError, classifier_free_guidance
from .tokenizer import ContextLengthError
from .transformer import Transformer, init_transformer_
from .weights import (CHECKPOINT_DIR, DictConfig, check_kind, check_tensors, load_checkpoint, resolve_checkpoint,
                      save_checkpoint)

__all__ = [
    "PriorConfig",
    "DecoderConfig",
    "UnCLIPSampleConfig",
    "DiffusionPrior",
    "CodeDecoder",
    "UnCLIP",
    "slerp",
    "text_embeddings",
    "image_embeddings",
    "decode",
    "generate",
    "variations",
    "interpolate",
    "sample_pair_images",
    "available_models",
    "load",
]

SHAPES_UNCLIP = CHECKPOINT_DIR / "shapes-unclip.safetensors"
KIND = "mmcore.unclip.UnCLIP"  # the "model" of its checkpoint cards
TRAIN_COMMAND = ("python -m mmcore.train_unclip --max-minutes 40 --threads 2 "
                 "--out data/checkpoints/shapes-unclip.safetensors")  # the card's command (a 2-core CPU run)


# ------------------------------------------------------------------------------------------------------ configs


@dataclass
class PriorConfig(DictConfig):
    embed_dim: int = 128  # CLIP's embedding size (the tiny CLIP: 128)
    width: int = 384  # hidden size of the residual MLP
    depth: int = 3  # residual blocks
    mlp_ratio: float = 2.0  # hidden expansion inside a block


@dataclass
class DecoderConfig(DictConfig):
    embed_dim: int = 128  # CLIP's embedding size (the condition)
    num_codes: int = 256  # the VQGAN's codebook size
    code_dim: int = 32  # the VQGAN's code vector size
    grid_size: int = 8  # codes per side (8 x 8 for 32 px images)
    width: int = 128  # transformer width
    layers: int = 4  # transformer blocks
    heads: int = 4  # attention heads
    latent_scale: float = 1.0  # code vectors are divided by this so that they have about unit variance


@dataclass
class UnCLIPSampleConfig(DictConfig):
    prior_steps: int = 25  # DDIM steps of the prior
    decoder_steps: int = 25  # DDIM steps of the decoder
    prior_guidance: float = 2.0  # classifier-free guidance scale of the prior (1: none)
    decoder_guidance: float = 3.0  # classifier-free guidance scale of the decoder (1: none)
    prior_candidates: int = 2  # prior samples per image; the one closest to the caption is kept (as DALL-E 2)
    eta: float = 0.0  # DDIM noise: 0 deterministic given the start noise, 1 like DDPM
    batch_size: int = 64  # images decoded at once


# ------------------------------------------------------------------------------------------------- pure maths


def slerp(a: Tensor, b: Tensor, w: Tensor | float) -> Tensor:
    """Spherical interpolation between unit vectors ``a`` and ``b`` (..., E): ``w=0`` gives a, ``w=1`` b, and
    every point in between is a unit vector on the great circle through them (a straight line would cut
    inside the sphere, where no CLIP embedding lives). ``w``: a number, or a tensor that broadcasts against
    (..., 1), e.g. (steps, 1) for a batch of steps."""
    w = torch.as_tensor(w, dtype=a.dtype, device=a.device)
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    cos = (a * b).sum(-1, keepdim=True).clamp(-1.0, 1.0)  # (..., 1)
    omega = torch.acos(cos)  # (..., 1) the angle between them
    so = torch.sin(omega)
    out = torch.where(so > 1e-6, (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / so.clamp(min=1e-6),
                      (1 - w) * a + w * b)  # nearly equal vectors: the straight line is the arc
    return F.normalize(out, dim=-1)


def _guided(net: nn.Module, x: Tensor, t: Tensor, cond: Tensor, scale: float) -> Tensor:
    """``net(x, t, cond)`` with classifier-free guidance: one batch with the condition, one without (null)."""
    if scale == 1.0:
        return net(x, t, cond)
    B = x.shape[0]
    out = net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, cond]), drop=torch.arange(2 * B) >= B)
    cond_out, uncond_out = out.float().chunk(2)
    return classifier_free_guidance(cond_out, uncond_out, scale)


# --------------------------------------------------------------------------------------------------- the prior


class _ResidualMLP(nn.Module):
    def __init__(self, width: int, ratio: float):
        super().__init__()
        hidden = int(width * ratio)
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class DiffusionPrior(nn.Module):
    """Text embedding -> image embedding, by diffusion over the embedding's ``embed_dim`` numbers.

    ``forward(x_t, t, text)`` predicts the clean image embedding (scaled by sqrt(E), see :meth:`scale`) from a
    noisy one ``x_t`` (B, E) at times ``t`` (B,) given unit text embeddings ``text`` (B, E). ``drop`` (B,) bool
    replaces the text by the learned null embedding (classifier-free guidance)."""

    def __init__(self, cfg: PriorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or PriorConfig()
        E, W = cfg.embed_dim, cfg.width
        self.inp = nn.Linear(3 * E, W)
        self.blocks = nn.ModuleList([_ResidualMLP(W, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.time = nn.Sequential(nn.Linear(E, W), nn.GELU(), nn.Linear(W, W))
        self.norm = nn.LayerNorm(W)
        self.out = nn.Linear(W, E)
        self.null_text = nn.Parameter(torch.zeros(E))

    @property
    def scale(self) -> float:
        """Unit embeddings are multiplied by sqrt(E) for diffusion, so that each number has about unit variance."""
        return math.sqrt(self.cfg.embed_dim)

    def forward(self, x_t: Tensor, t: Tensor, text: Tensor, drop: Tensor | None = None) -> Tensor:
        text = text * self.scale  # (B, E)
        if drop is not None:
            text = torch.where(drop.to(text.device)[:, None], self.null_text.expand_as(text), text)
        time = timestep_embedding(t, self.cfg.embed_dim)  # (B, E)
        h = self.inp(torch.cat([x_t, text, time], dim=-1)) + self.time(time)  # (B, W)
        for block in self.blocks:
            h = block(h)
        return self.out(self.norm(h))  # (B, E)

    def loss(self, image: Tensor, text: Tensor, drop_prob: float = 0.1,
             generator: torch.Generator | None = None) -> Tensor:
        """Mean squared error of the predicted clean embedding, for unit image and text embeddings (B, E)."""

        B, device = image.shape[0], image.device
        x0 = image * self.scale
        t = torch.rand(B, device=device, generator=generator)
        noise = torch.randn(x0.shape, device=device, generator=generator)
        drop = torch.rand(B, device=device, generator=generator) < drop_prob
        return F.mse_loss(self(add_noise(x0, t, noise), t, text, drop), x0)

    @torch.no_grad()
    def sample(self, text: Tensor, steps: int = 25, guidance_scale: float = 2.0, eta: float = 0.0,
               generator: torch.Generator | None = None) -> Tensor:
        """Unit text embeddings (B, E) -> one unit image embedding each (B, E). ``generator``: a CPU generator."""
        B, device = text.shape[0], text.device
        x = torch.randn(B, self.cfg.embed_dim, generator=generator).to(device)  # (B, E) pure noise at t = 1
        grid = time_grid(steps, device)
        for t, t_next in zip(grid[:-1], grid[1:]):
            tt = t.expand(B)
            x0 = _guided(self, x, tt, text, guidance_scale)  # (B, E)
            noise = torch.randn(x.shape, generator=generator).to(device) if eta > 0 else None
            x = ddim_step(x, x0, tt, t_next.expand(B), eta, noise)
        return F.normalize(x, dim=-1)


# ------------------------------------------------------------------------------------------------- the decoder


class CodeDecoder(nn.Module):
    """CLIP image embedding -> VQGAN codes, by diffusion over the grid of code vectors.

    ``forward(z_t, t, image)``: noisy code vectors (B, G*G, D) (divided by ``latent_scale``) at times ``t`` (B,),
    unit CLIP image embeddings (B, E) -> logits over the codebook for every cell (B, G*G, K). ``drop`` (B,) bool
    replaces the embedding by the learned null one. The codebook (K, D) is a buffer copied from the VQGAN."""

    def __init__(self, cfg: DecoderConfig | None = None, codebook: Tensor | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DecoderConfig()
        W, N = cfg.width, cfg.grid_size**2
        self.register_buffer("codebook", codebook.detach().clone().float() if codebook is not None
                             else torch.zeros(cfg.num_codes, cfg.code_dim))  # (K, D)
        self.inp = nn.Linear(cfg.code_dim, W)
        self.pos_embed = nn.Parameter(torch.zeros(N, W))
        self.cond = nn.Linear(cfg.embed_dim, W)
        self.null_image = nn.Parameter(torch.zeros(W))
        self.time = nn.Sequential(nn.Linear(W, W), nn.GELU(), nn.Linear(W, W))
        self.transformer = Transformer(W, cfg.layers, cfg.heads, activation="gelu")
        self.norm = nn.LayerNorm(W)
        self.head = nn.Linear(W, cfg.num_codes)
        nn.init.normal_(self.pos_embed, std=0.02)
        init_transformer_(self.transformer)

    def latents(self, codes: Tensor) -> Tensor:
        """Code indices (B, ...) -> scaled code vectors (B, G*G, D): the clean sample ``x0`` of the diffusion."""
        return self.codebook[codes.flatten(1)] / self.cfg.latent_scale

    def forward(self, z_t: Tensor, t: Tensor, image: Tensor, drop: Tensor | None = None) -> Tensor:
        cond = self.cond(image * math.sqrt(self.cfg.embed_dim))  # (B, W)
        if drop is not None:
            cond = torch.where(drop.to(cond.device)[:, None], self.null_image.expand_as(cond), cond)
        time = self.time(timestep_embedding(t, self.cfg.width))  # (B, W)
        x = self.inp(z_t) + self.pos_embed + (time + cond)[:, None, :]  # (B, N, W)
        x = torch.cat([(cond + time)[:, None, :], x], dim=1)  # (B, 1 + N, W): the condition as a token too
        h = self.transformer(x)[:, 1:]  # (B, N, W), bidirectional attention
        return self.head(self.norm(h))  # (B, N, K)

    def expected_latents(self, logits: Tensor) -> Tensor:
        """Logits (B, N, K) -> the guess of the clean grid: the probability-weighted code vector (B, N, D)."""
        return logits.float().softmax(-1) @ (self.codebook / self.cfg.latent_scale)

    def loss(self, codes: Tensor, image: Tensor, drop_prob: float = 0.1,
             generator: torch.Generator | None = None) -> Tensor:
        """Cross-entropy of the true codes (B, G, G) from their noised vectors, given image embeddings (B, E)."""

        B, device = codes.shape[0], codes.device
        x0 = self.latents(codes)  # (B, N, D)
        t = torch.rand(B, device=device, generator=generator)
        noise = torch.randn(x0.shape, device=device, generator=generator)
        drop = torch.rand(B, device=device, generator=generator) < drop_prob
        logits = self(add_noise(x0, t, noise), t, image, drop)  # (B, N, K)
        return F.cross_entropy(logits.flatten(0, 1).float(), codes.flatten())

    @torch.no_grad()
    def sample_codes(self, image: Tensor, steps: int = 25, guidance_scale: float = 3.0, eta: float = 0.0,
                     generator: torch.Generator | None = None, noise: Tensor | None = None) -> Tensor:
        """Unit image embeddings (B, E) -> codes (B, G, G). ``noise`` (B, G*G, D): the start at t = 1 (default:
        drawn from ``generator``, a CPU generator); the same noise and ``eta=0`` give the same codes."""
        B, device = image.shape[0], image.device
        G, D = self.cfg.grid_size, self.cfg.code_dim
        z = noise.to(device) if noise is not None else torch.randn(B, G * G, D, generator=generator).to(device)
        grid = time_grid(steps, device)
        logits = None
        for t, t_next in zip(grid[:-1], grid[1:]):
            tt = t.expand(B)
            logits = _guided(self, z, tt, image, guidance_scale)  # (B, N, K)
            fresh = torch.randn(z.shape, generator=generator).to(device) if eta > 0 else None
            z = ddim_step(z, self.expected_latents(logits), tt, t_next.expand(B), eta, fresh)
        return logits.argmax(-1).view(B, G, G)


# -------------------------------------------------------------------------------------------------- the model


class UnCLIP(nn.Module):
    """Prior + decoder, tensors only: :meth:`prior_embeddings` (text embeddings -> image embeddings) and
    :meth:`decode_codes` (image embeddings -> VQGAN codes). The CLIP that defines the embeddings ("shapes-tiny")
    and the VQGAN that draws the codes ("shapes-vqgan", both named in the card) are not part of its weights: the
    module's pipelines (:func:`generate`, :func:`variations`, :func:`interpolate`) take them as arguments."""

    def __init__(self, prior: DiffusionPrior | None = None, decoder: CodeDecoder | None = None):
        super().__init__()
        self.prior = prior or DiffusionPrior()
        self.decoder = decoder or CodeDecoder()
        self.sample_config = UnCLIPSampleConfig()
        self.card: dict[str, Any] = {}

    @property
    def device(self) -> torch.device:
        return self.decoder.pos_embed.device

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def settings(self, **settings: Any) -> UnCLIPSampleConfig:
        """The model's ``sample_config`` with ``settings`` (its field names) changed; unknown names raise."""
        unknown = set(settings) - {f.name for f in fields(UnCLIPSampleConfig)}
        if unknown:
            raise TypeError(f"unknown sampling settings {sorted(unknown)}; use fields of UnCLIPSampleConfig")
        return UnCLIPSampleConfig.from_dict({**asdict(self.sample_config), **settings})

    @torch.no_grad()
    def prior_embeddings(self, text: Tensor, n: int = 1, seed: int = 0, **settings: Any) -> Tensor:
        """Unit text embeddings (B, E) -> ``n`` prior samples each (B, n, E); of ``prior_candidates`` samples
        per image, the one with the highest cosine to its text is kept (DALL-E 2's trick)."""
        cfg = self.settings(**settings)
        generator = torch.Generator().manual_seed(seed)
        c = max(1, cfg.prior_candidates)
        text_rep = text.repeat_interleave(n * c, dim=0)  # (B * n * c, E)
        emb = self.prior.sample(text_rep, cfg.prior_steps, cfg.prior_guidance, cfg.eta, generator)
        emb = emb.view(text.shape[0], n, c, -1)  # (B, n, c, E)
        best = (emb * text[:, None, None, :]).sum(-1).argmax(-1)  # (B, n)
        return torch.gather(emb, 2, best[..., None, None].expand(-1, -1, 1, emb.shape[-1]))[:, :, 0]  # (B, n, E)

    @torch.no_grad()
    def decode_codes(self, embeddings: Tensor, seed: int = 0, noise: Tensor | None = None,
                     **settings: Any) -> Tensor:
        """Unit image embeddings (B, E) -> VQGAN codes (B, G, G), ``batch_size`` at a time. ``noise`` (B, G*G, D)
        fixes the decoder's start (the same for every image gives comparable images, as :func:`interpolate` needs)."""
        cfg = self.settings(**settings)
        generator = torch.Generator().manual_seed(seed)
        embeddings = F.normalize(embeddings.to(self.device).float(), dim=-1)
        codes = []
        for i in range(0, len(embeddings), cfg.batch_size):
            part = embeddings[i : i + cfg.batch_size]
            start = None if noise is None else noise[i : i + cfg.batch_size]
            codes.append(self.decoder.sample_codes(part, cfg.decoder_steps, cfg.decoder_guidance, cfg.eta, generator,
                                                   start))
        return torch.cat(codes)  # (B, G, G)

    # -- checkpoints ---------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None, **card: Any) -> Path:
        """Safetensors weights (floating tensors cast to ``dtype`` if given: the shipped file is float16) + card."""
        card = {"model": KIND, "prior_config": self.prior.cfg.to_dict(), "decoder_config": self.decoder.cfg.to_dict(),
                "sample_config": asdict(self.sample_config), "clip": "shapes-tiny", "vqgan": "shapes-vqgan", **card}
        return save_checkpoint(path, self.state_dict(), card, dtype)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "UnCLIP":
        """A model from :meth:`save` (float32, CPU, eval mode)."""
        sd, card = load_checkpoint(path)
        check_kind(card, path, KIND, "unCLIP", legacy=("unclip",))
        model = cls(DiffusionPrior(PriorConfig.from_dict(card["prior_config"])),
                    CodeDecoder(DecoderConfig.from_dict(card["decoder_config"])))
        check_tensors(sd, model.state_dict(), path)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        model.sample_config = UnCLIPSampleConfig.from_dict(card.get("sample_config", {}))
        model.card = card
        return model.eval()


# ----------------------------------------------------------------------------------------- the pipelines


def _models(model: UnCLIP | None, clip: Any, tokenizer: Any, vqgan: Any) -> tuple[UnCLIP, Any, Any, Any]:
    """Fill in the shipped models (cached) for the ones not given: the unCLIP model, the CLIP its card names (with
    its tokenizer) and the VQGAN its card names, all on the model's device."""
    model = model if model is not None else shipped(load, "shapes-unclip")
    if clip is None:
        clip, _, default_tokenizer = shipped(clip_module.load, model.card.get("clip", "shapes-tiny"), model.device)
        tokenizer = default_tokenizer if tokenizer is None else tokenizer
    return model, clip, tokenizer, _vqgan_for(model, vqgan)


def _vqgan_for(model: UnCLIP, vqgan: Any) -> Any:
    """``vqgan`` if given, else the VQGAN ``model``'s card names (cached), on the model's device."""
    return vqgan if vqgan is not None else shipped(vqgan_module.load, model.card.get("vqgan", "shapes-vqgan"),
                                                   model.device)


@torch.no_grad()
def text_embeddings(prompts: str | Sequence[str], clip: Any = None, tokenizer: Any = None) -> Tensor:
    """Prompts (English or Bengali) -> unit CLIP text embeddings (B, E) of ``clip`` (default: the shipped
    "shapes-tiny" with its tokenizer; with your own ``clip`` pass its ``tokenizer``)."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    for p in prompts:
        if not isinstance(p, str):
            raise TypeError(f"prompts must be strings; got {type(p).__name__}")
        if not p.strip():
            raise ValueError("the prompt is empty: unCLIP needs a caption to embed (try 'a red circle')")
    if clip is None:
        clip, _, tokenizer = shipped(clip_module.load, "shapes-tiny")
    if tokenizer is None:
        raise ValueError("pass the tokenizer of your CLIP model (tokenizer=...)")
    try:
        tokens = tokenizer(prompts)
    except ContextLengthError as e:
        raise PromptTooLongError(f"prompt {e.text!r} has {e.n_tokens - 2} tokens, but CLIP reads at most "
                                 f"{e.context_length - 2}; shorten it (e.g. 'a red circle at the top')") from None
    return clip.encode_text(tokens.to(next(clip.parameters()).device), normalize=True)


@torch.no_grad()
def image_embeddings(images: Any, clip: Any = None) -> Tensor:
    """PIL images (one or a list) or a float batch (B, 3, S, S) in [0, 1] -> unit CLIP image embeddings (B, E) of
    ``clip`` (default: the shipped "shapes-tiny")."""
    clip = clip if clip is not None else shipped(clip_module.load, "shapes-tiny")[0]
    device, size = next(clip.parameters()).device, clip.cfg.image_size
    if isinstance(images, Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W) in [0, 1]; got a tensor of shape {tuple(images.shape)}")
        x = normalize_pixels(images.to(device).float(), size)  # (B, 3, S, S)
    else:
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        if not images:
            raise ValueError("no images given")
        preprocess = Preprocess(size)
        x = torch.stack([preprocess(im.convert("RGB")) for im in images]).to(device)  # (B, 3, S, S)
    return clip.encode_image(x, normalize=True)


@torch.no_grad()
def decode(embeddings: Tensor, model: UnCLIP | None = None, *, seed: int = 0, noise: Tensor | None = None,
           vqgan: Any = None, prompt: str = "", **settings: Any) -> Generation:
    """Unit image embeddings (B, E) -> pictures: the decoder's codes, then the VQGAN (default: the one the card
    names) -> :class:`~mmcore.generation.Generation` with ``.embeddings``. ``noise``: see
    :meth:`UnCLIP.decode_codes`."""
    start = time.perf_counter()
    model = model if model is not None else shipped(load, "shapes-unclip")
    vqgan = _vqgan_for(model, vqgan)
    was_training = model.training
    model.eval()
    codes = model.decode_codes(embeddings, seed, noise, **settings)  # (B, G, G)
    model.train(was_training)
    images = vqgan.decode_indices(codes.to(next(vqgan.parameters()).device)).float().clamp(0, 1)  # (B, 3, S, S)
    unit = F.normalize(embeddings.float(), dim=-1)
    return Generation(prompt, images.cpu(), codes.cpu(), seconds=time.perf_counter() - start, embeddings=unit.cpu())


@torch.no_grad()
def generate(prompt: str, model: UnCLIP | None = None, *, n: int = 8, seed: int = 0, use_prior: bool = True,
             clip: Any = None, tokenizer: Any = None, vqgan: Any = None, **settings: Any) -> Generation:
    """``n`` pictures for ``prompt`` (English or Bengali): CLIP text embedding -> prior -> decoder -> VQGAN
    -> :class:`~mmcore.generation.Generation` (``.images``: PIL; ``.embeddings``: the decoded image embeddings).

    ``model``: an :class:`UnCLIP` (default: the shipped "shapes-unclip", cached); ``clip`` (with its ``tokenizer``)
    and ``vqgan``: default the ones its card names. ``use_prior=False`` hands the *text* embedding straight to the
    decoder (the ablation of lesson 06: the decoder never saw text embeddings in training). ``settings``:
    :class:`UnCLIPSampleConfig` fields. The same seed gives the same pictures."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string; got {type(prompt).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    start = time.perf_counter()
    model, clip, tokenizer, vqgan = _models(model, clip, tokenizer, vqgan)
    model.settings(**settings)  # unknown settings fail before any work
    text = text_embeddings(prompt, clip, tokenizer).to(model.device)  # (1, E)
    was_training = model.training
    model.eval()
    emb = model.prior_embeddings(text, n, seed, **settings)[0] if use_prior else text.expand(n, -1)  # (n, E)
    model.train(was_training)
    result = decode(emb, model, seed=seed + 1, vqgan=vqgan, prompt=prompt, **settings)
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def variations(image: Any, model: UnCLIP | None = None, *, n: int = 8, seed: int = 0, clip: Any = None,
               vqgan: Any = None, **settings: Any) -> Generation:
    """``n`` pictures that share what CLIP sees in ``image`` (a PIL image or a (3, S, S) tensor in [0, 1]): its
    CLIP image embedding decoded ``n`` times from different noise."""
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    start = time.perf_counter()
    model, clip, _, vqgan = _models(model, clip, None, vqgan)
    if isinstance(image, Tensor) and image.ndim == 3:
        image = image[None]
    emb = image_embeddings(image, clip)  # (1, E)
    result = decode(emb.expand(n, -1), model, seed=seed, vqgan=vqgan, **settings)
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def interpolate(a: Any, b: Any, model: UnCLIP | None = None, *, steps: int = 6, seed: int = 0, clip: Any = None,
                vqgan: Any = None, **settings: Any) -> Generation:
    """``steps`` pictures on the way from image ``a`` to image ``b``: their CLIP embeddings are slerped
    (:func:`slerp`) and decoded from the same start noise, so that only the embedding changes."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2; got {steps}")
    start = time.perf_counter()
    model, clip, _, vqgan = _models(model, clip, None, vqgan)
    ea, eb = image_embeddings(a, clip), image_embeddings(b, clip)  # (1, E) each
    w = torch.linspace(0, 1, steps, device=ea.device)[:, None]  # (steps, 1)
    emb = slerp(ea.expand(steps, -1), eb.expand(steps, -1), w)  # (steps, E)
    G, D = model.decoder.cfg.grid_size, model.decoder.cfg.code_dim
    noise = torch.randn(1, G * G, D, generator=torch.Generator().manual_seed(seed)).expand(steps, -1, -1)
    result = decode(emb, model, seed=seed, noise=noise, vqgan=vqgan, **settings)
    result.seconds = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------ many prompts at once


@torch.no_grad()
def sample_pair_images(model: UnCLIP, pairs: Sequence[tuple[str, str]], n: int = 4, seed: int = 0,
                       langs: Sequence[str] = LANGS, use_prior: bool = True, clip: Any = None, tokenizer: Any = None,
                       vqgan: Any = None, **settings: Any) -> tuple[list[str], list[dict[str, str]], Tensor]:
    """``n`` images for the :func:`mmcore.data.pair_prompt` of every (shape, colour) pair and language,
    all prompts in one batch -> ``(prompts (P,), wanted (P,), images (P, n, 3, S, S))``."""
    model, clip, tokenizer, vqgan = _models(model, clip, tokenizer, vqgan)
    model.eval()
    prompts = [pair_prompt(s, c, lang) for s, c in pairs for lang in langs]
    wanted = [{"shape": s, "color": c} for s, c in pairs for _ in langs]
    text = text_embeddings(prompts, clip, tokenizer).to(model.device)  # (P, E)
    if use_prior:
        emb = model.prior_embeddings(text, n, seed, **settings).flatten(0, 1)  # (P * n, E)
    else:
        emb = text.repeat_interleave(n, dim=0)  # (P * n, E)
    images = decode(emb, model, seed=seed + 1, vqgan=vqgan, **settings).pixels  # (P * n, 3, S, S)
    return prompts, wanted, images.view(len(prompts), n, *images.shape[1:])


# ----------------------------------------------------------------------------------------------------- loading


def available_models() -> list[str]:
    """Names :func:`load` knows without a path."""
    return ["shapes-unclip"]


def load(name_or_path: str | os.PathLike = "shapes-unclip", device: str | torch.device | None = None) -> UnCLIP:
    """The shipped ``"shapes-unclip"`` (``data/checkpoints/``, no network) or a checkpoint path -> :class:`UnCLIP`
    in eval mode, float32, on ``device`` (default: :func:`mmcore.get_device`). Reading safetensors runs no code."""
    path = resolve_checkpoint(name_or_path, "shapes-unclip", SHAPES_UNCLIP, "unCLIP model",
                              f"`{TRAIN_COMMAND}` (`make checkpoints`; see mmcore/train_unclip.py)")
    return UnCLIP.from_checkpoint(path).to(device or get_device())
