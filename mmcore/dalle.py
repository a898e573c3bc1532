"""DALL-E 1 at course size: one token stream of text and image codes, a causal transformer, CLIP re-ranking.

The idea of DALL-E (Ramesh et al., 2021) fits in one line: *write the caption and the image as one sequence of
tokens and train a GPT on it*. The image is first turned into tokens by a VQ autoencoder (ours:
:mod:`mmcore.vqgan`, a 32 px image -> 8 x 8 = 64 codes out of 256), the caption by a BPE tokenizer (ours:
``BPETokenizer.course()``, English and Bengali). One training sequence is::

    [start] a red circle [end] [pad] ... [pad] | c_0 c_1 ... c_63
    <------------- text_length text tokens ---> <-- 64 image codes -->

and the transformer, causal (each position sees only itself and earlier ones), learns to predict every next token.
To draw a picture, feed the caption and sample the 64 codes one after another; the VQGAN decoder turns them into
pixels. What each piece here is for:

* **Two vocabularies, two heads.** Text tokens and image codes get their own embedding tables and their own output
  layers: a text position only ever predicts text, an image position only a code (the paper does the same with one
  big vocabulary and a mask).
* **Separate positional embeddings.** Text positions get a learned embedding per position; image positions get a
  *row* embedding plus a *column* embedding, so that the model knows the 64 codes form an 8 x 8 grid.
* **The 1 : 7 loss.** The paper weights the text loss 1/8 and the image loss 7/8 (:func:`dalle_loss`): the image
  is what we want to generate; the text loss is a cheap extra signal.
* **Classifier-free guidance** (Ho & Salimans, 2022; not in DALL-E 1, but every later model uses it). Training
  replaces the caption by the *null caption* (``[start] [end]``, the empty prompt) a fraction of the time, so
  the same network also learns unconditional generation. At sampling time both streams run in one batch and
  the logits are pushed away from the unconditional ones: ``uncond + s * (cond - uncond)``
  (:func:`mmcore.sampling.classifier_free_guidance`).
* **Sampling** with temperature, :func:`mmcore.sampling.top_k_filter` and :func:`~mmcore.sampling.top_p_filter`, and a key/value cache
  (:class:`mmcore.transformer.KVCache`) so that each new code costs one position, not the whole sequence.
* **CLIP re-ranking.** Sample ``n`` images, score each against the prompt with the course's tiny CLIP, keep the
  best ``k`` (:func:`clip_scores`, ``generate(prompt, model, rerank=k)``). The tiny CLIP scores every good sample almost
  alike, so ``rerank_by="clip+likelihood"`` also asks the generator how typical each sample is
  (:func:`mmcore.sampling.rerank_scores`).

The model class maps tensors (token ids -> codes); the pipeline from a prompt to pictures is the module's
:func:`generate`, which takes the models it uses (the shipped ones by default)::

    model = mmcore.dalle.load()                                          # "shapes-dalle"
    mmcore.dalle.generate("একটি লাল বৃত্ত", model, n=8, rerank=2).images   # two PIL images, best first

Train one with ``python -m mmcore.train_dalle`` (:mod:`mmcore.train_dalle`).
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import clip as clip_module
from . import get_device
from . import vqgan as vqgan_module
from .clip import normalize_pixels
from .data import LANGS, pair_prompt
from .generation import Generation, shipped
from .sampling import RERANK_BY, PromptTooLongError, classifier_free_guidance, rerank_scores, sample_from_logits
from .tokenizer import BPETokenizer, ContextLengthError
from .transformer import KVCache, Transformer, init_transformer_
from .weights import (CHECKPOINT_DIR, DictConfig, check_kind, check_tensors, load_checkpoint, resolve_checkpoint,
                      save_checkpoint)

__all__ = [
    "DALLEConfig",
    "SampleConfig",
    "DALLEOutput",
    "DALLELoss",
    "DALLE",
    "dalle_loss",
    "pad_after_end",
    "clip_scores",
    "tokenize",
    "generate",
    "score_samples",
    "sample_pair_images",
    "rerank_images",
    "available_models",
    "load",
]

SHAPES_DALLE = CHECKPOINT_DIR / "shapes-dalle.safetensors"
KIND = "mmcore.dalle.DALLE"  # the "model" of its checkpoint cards
TRAIN_COMMAND = ("python -m mmcore.train_dalle --device cuda --max-minutes 2.5 --final-eval-samples 0 "
                 "--eval-every 1000 --out data/checkpoints/shapes-dalle.safetensors --no-progress")  # the card's command


# ------------------------------------------------------------------------------------------------------ configs


@dataclass
class DALLEConfig(DictConfig):
    """All sizes of a DALL-E model. Use a preset (``DALLEConfig.tiny()``, the shipped size) and
    ``dataclasses.replace`` to vary it."""

    text_vocab_size: int | None = None  # the tokenizer's vocabulary (None: the course BPE's); +1 id for padding
    text_length: int = 16  # text positions: [start] + tokens + [end], padded; longer prompts are an error
    num_codes: int = 256  # the VQGAN's codebook size (image vocabulary)
    grid_size: int = 8  # the VQGAN's code grid side: grid_size ** 2 image tokens
    width: int = 256  # C: transformer width
    layers: int = 6  # transformer blocks
    heads: int = 8  # attention heads (width must be a multiple)
    mlp_ratio: float = 4.0  # MLP hidden width / width
    sot_token: int | None = None  # the tokenizer's start-of-text id (None: the course BPE's)
    eot_token: int | None = None  # the tokenizer's end-of-text id (None: the course BPE's)

    def __post_init__(self) -> None:
        if None in (self.text_vocab_size, self.sot_token, self.eot_token):  # ids come from the tokenizer itself
            tokenizer = BPETokenizer.course()
            self.text_vocab_size = tokenizer.vocab_size if self.text_vocab_size is None else self.text_vocab_size
            self.sot_token = tokenizer.sot_token if self.sot_token is None else self.sot_token
            self.eot_token = tokenizer.eot_token if self.eot_token is None else self.eot_token

    @classmethod
    def tiny(cls, **overrides: Any) -> "DALLEConfig":
        """The shipped ``shapes-dalle``'s size (the course's preset names: ``tiny`` is what ships, ``toy`` is for
        tests and quick live runs): width 256, 6 layers, 8 heads (about 5.5 M parameters, 11 MB in float16)."""
        return cls(**{**dict(width=256, layers=6, heads=8), **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> "DALLEConfig":
        """Width 192, 6 layers, 6 heads (about 3.2 M parameters): a CPU-friendlier size for experiments."""
        return cls(**{**dict(width=192, layers=6, heads=6), **overrides})

    @classmethod
    def toy(cls, **overrides: Any) -> "DALLEConfig":
        """Width 32, 2 layers, 2 heads: for tests (random weights, instant) and lesson 05's live run."""
        return cls(**{**dict(width=32, layers=2, heads=2), **overrides})

    @property
    def pad_token(self) -> int:
        """The id that fills text positions after [end] (the tokenizer pads with 0, a real byte: we re-map it)."""
        return self.text_vocab_size

    @property
    def image_length(self) -> int:
        """Image tokens per sequence (64 for an 8 x 8 grid)."""
        return self.grid_size**2


@dataclass
class SampleConfig(DictConfig):
    """How :func:`generate` samples (the shipped checkpoint stores the settings its benchmark chose)."""

    temperature: float = 1.0  # divide the logits by this (0: always the most likely code)
    top_k: int | None = None  # keep only the k most likely codes (None: all)
    top_p: float | None = None  # keep the smallest set of codes whose probability reaches p (None: all)
    guidance_scale: float = 1.5  # classifier-free guidance s (1: plain conditional sampling, no second stream)
    batch_size: int = 64  # images sampled at once (the guided batch holds twice as many rows)
    rerank_by: str = "clip"  # re-ranking score: "clip" (the paper), "likelihood" or "clip+likelihood" (rerank_scores)


class DALLEOutput(NamedTuple):
    text_logits: Tensor  # (B, text_length - 1, text_vocab_size + 1): predictions of text tokens 1 ..
    image_logits: Tensor  # (B, image_length, num_codes): predictions of image codes 0 .. 63


class DALLELoss(NamedTuple):
    total: Tensor  # (text_weight * text + image_weight * image) / (text_weight + image_weight)
    text: Tensor  # mean cross-entropy over the text targets
    image: Tensor  # mean cross-entropy over the image targets (nats per code)


# ----------------------------------------------------------------------------------------------- pure functions


def dalle_loss(text_logits: Tensor, text_targets: Tensor, image_logits: Tensor, image_targets: Tensor,
               text_weight: float = 1.0, image_weight: float = 7.0) -> DALLELoss:
    """The DALL-E loss: cross-entropy of the text and of the image tokens, weighted 1 : 7 (the paper's choice).

    ``text_logits`` (B, Lt, Vt) with ``text_targets`` (B, Lt); ``image_logits`` (B, Li, K) with ``image_targets``
    (B, Li). Each part is a mean over its tokens; the total is their weighted mean.
    """
    text = F.cross_entropy(text_logits.flatten(0, 1).float(), text_targets.flatten())
    image = F.cross_entropy(image_logits.flatten(0, 1).float(), image_targets.flatten())
    total = (text_weight * text + image_weight * image) / (text_weight + image_weight)
    return DALLELoss(total, text, image)


def pad_after_end(tokens: Tensor, eot_token: int, pad_token: int) -> Tensor:
    """Replace every id after each row's first ``eot_token`` by ``pad_token``: (B, L) -> (B, L).

    The tokenizer pads with 0, which in a byte-level vocabulary is a real token ("!"); a dedicated padding id
    keeps "nothing more to say" apart from text."""
    is_end = (tokens == eot_token).int()  # (B, L)
    after = (is_end.cumsum(dim=1) - is_end) > 0  # (B, L): strictly after the first [end]
    return tokens.masked_fill(after, pad_token)


@torch.no_grad()
def clip_scores(clip: Any, tokenizer: Callable[..., Tensor], images: Tensor, prompt: str) -> Tensor:
    """Cosine similarity between each image (N, 3, S, S) in [0, 1] and ``prompt`` under ``clip`` -> (N,).

    The images are resized to CLIP's input size and normalised with OpenAI's mean and std, as
    :mod:`mmcore.guided` does."""
    device = next(clip.parameters()).device
    x = normalize_pixels(images.to(device=device, dtype=torch.float32), clip.cfg.image_size)  # (N, 3, size, size)
    image_emb = clip.encode_image(x, normalize=True)  # (N, E)
    text_emb = clip.encode_text(tokenizer([prompt], truncate=True).to(device), normalize=True)  # (1, E)
    return (image_emb @ text_emb.t())[:, 0].cpu()  # (N,)


# ----------------------------------------------------------------------------------------------------- the model


class DALLE(nn.Module):
    """The text + image-code transformer.

    ``model(text, codes)`` runs teacher forcing for training (:class:`DALLEOutput`); :meth:`sample_codes` draws
    codes for token ids (:func:`tokenize`). Tensors only: the prompt -> pictures pipeline, which also needs a
    tokenizer, a VQGAN and (to re-rank) a CLIP, is the module's :func:`generate`.
    """

    def __init__(self, cfg: DALLEConfig | None = None):
        super().__init__()
        cfg = cfg or DALLEConfig.tiny()
        self.cfg = cfg
        C = cfg.width
        self.text_embed = nn.Embedding(cfg.text_vocab_size + 1, C)  # + 1: the padding id
        self.text_pos_embed = nn.Parameter(torch.zeros(cfg.text_length, C))  # (Lt, C)
        self.image_embed = nn.Embedding(cfg.num_codes, C)
        self.row_embed = nn.Parameter(torch.zeros(cfg.grid_size, C))  # (G, C)
        self.col_embed = nn.Parameter(torch.zeros(cfg.grid_size, C))  # (G, C)
        self.transformer = Transformer(C, cfg.layers, cfg.heads, cfg.mlp_ratio, activation="gelu")
        self.norm = nn.LayerNorm(C)
        self.image_head = nn.Linear(C, cfg.num_codes, bias=False)
        # the text head shares its weights with the text embedding (as GPT-2 does): half the text parameters
        self.text_bias = nn.Parameter(torch.zeros(cfg.text_vocab_size + 1))
        self.sample_config = SampleConfig()  # the defaults of generate(); a checkpoint may store others
        self.card: dict[str, Any] = {}  # a loaded checkpoint's card ("vqgan": the VQGAN its codes are for); {} fresh
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2-like initialisation: small normal embeddings, depth-scaled residual projections."""
        for p in (self.text_embed.weight, self.image_embed.weight):
            nn.init.normal_(p, std=0.02)
        for p in (self.text_pos_embed, self.row_embed, self.col_embed):
            nn.init.normal_(p, std=0.01)
        init_transformer_(self.transformer)
        nn.init.normal_(self.image_head.weight, std=0.02)  # near-uniform first predictions: loss ~ ln(num_codes)
        nn.init.zeros_(self.text_bias)

    # -- pieces ------------------------------------------------------------------------------------------------

    def embed_text(self, text: Tensor) -> Tensor:
        """Text ids (B, Lt) with the padding id after [end] -> (B, Lt, C): token + position embedding."""
        Lt = text.shape[1]
        if Lt != self.cfg.text_length:
            raise ValueError(f"text has {Lt} positions; this model takes exactly {self.cfg.text_length}")
        return self.text_embed(text) + self.text_pos_embed  # (B, Lt, C)

    def embed_codes(self, codes: Tensor, start: int = 0) -> Tensor:
        """Image codes (B, n) at grid positions ``start .. start + n - 1`` (row-major) -> (B, n, C).

        ``codes`` may also be float code *distributions* (B, n, K) (rows summing to 1): each is embedded as the
        probability-weighted mean of the code embeddings, so a one-hot row gives exactly its code's embedding."""
        n = codes.shape[1]
        pos = torch.arange(start, start + n, device=codes.device)  # (n,)
        G = self.cfg.grid_size
        tokens = codes @ self.image_embed.weight if codes.is_floating_point() else self.image_embed(codes)  # (B, n, C)
        return tokens + self.row_embed[pos // G] + self.col_embed[pos % G]  # (B, n, C)

    def text_logits(self, h: Tensor) -> Tensor:
        """Hidden states (..., C) -> text logits (..., Vt + 1) through the tied text embedding."""
        return F.linear(h, self.text_embed.weight, self.text_bias)

    def forward(self, text: Tensor, codes: Tensor) -> DALLEOutput:
        """Teacher forcing: text (B, Lt) and codes (B, G*G) (or (B, G, G)) -> :class:`DALLEOutput`.

        Position ``t`` predicts token ``t + 1``: the text positions but the last predict the text after them, the
        last text position and the image positions predict the 64 codes.
        """
        codes = codes.flatten(1)  # (B, G*G)
        Lt = self.cfg.text_length
        x = torch.cat([self.embed_text(text), self.embed_codes(codes[:, :-1])], dim=1)  # (B, Lt + G*G - 1, C)
        h = self.norm(self.transformer(x, is_causal=True))  # (B, Lt + G*G - 1, C)
        return DALLEOutput(self.text_logits(h[:, : Lt - 1]), self.image_head(h[:, Lt - 1 :]))

    def loss(self, text: Tensor, codes: Tensor, text_weight: float = 1.0, image_weight: float = 7.0) -> DALLELoss:
        """:func:`dalle_loss` of a batch: text (B, Lt), codes (B, G*G)."""
        out = self(text, codes)
        return dalle_loss(out.text_logits, text[:, 1:], out.image_logits, codes.flatten(1), text_weight, image_weight)

    @torch.no_grad()
    def code_log_likelihood(self, text: Tensor, codes: Tensor) -> Tensor:
        """Mean log-probability per code of ``codes`` (N, G, G) given ``text`` (N, Lt) (no guidance) -> (N,)."""
        codes = codes.flatten(1)  # (N, G*G)
        log_probs = F.log_softmax(self(text, codes).image_logits.float(), dim=-1)  # (N, G*G, K)
        return log_probs.gather(-1, codes[..., None])[..., 0].mean(dim=1)  # (N,)

    def soft_code_cross_entropy(self, text: Tensor, probs: Tensor) -> Tensor:
        """How unlikely the model finds code *distributions* ``probs`` (B, G*G, K) after ``text`` (B, Lt) -> (B,).

        Teacher forcing on the soft codes themselves: ``-sum_k probs[t, k] * log q(k | text, probs[:t])``, averaged
        over the G*G positions. For one-hot ``probs`` it equals ``-code_log_likelihood``; unlike that, it is
        differentiable in ``probs``, which is how :mod:`mmcore.guided` uses this model as a prior over codes.
        """
        Lt = self.cfg.text_length
        x = torch.cat([self.embed_text(text), self.embed_codes(probs[:, :-1])], dim=1)  # (B, Lt + G*G - 1, C)
        h = self.norm(self.transformer(x, is_causal=True))  # (B, Lt + G*G - 1, C)
        log_q = F.log_softmax(self.image_head(h[:, Lt - 1 :]).float(), dim=-1)  # (B, G*G, K)
        return -(probs * log_q).sum(-1).mean(1)  # (B,)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def null_text(self, n: int = 1, device: torch.device | str | None = None) -> Tensor:
        """The null caption ``[start] [end] [pad] ...`` (what training drops captions to): (n, Lt)."""
        row = torch.full((self.cfg.text_length,), self.cfg.pad_token, dtype=torch.long)
        row[0], row[1] = self.cfg.sot_token, self.cfg.eot_token
        return row.expand(n, -1).to(device)

    # -- sampling ----------------------------------------------------------------------------------------------

    def _image_logits_uncached(self, text: Tensor, codes: Tensor) -> Tensor:
        """Logits of the next code after ``codes`` (B, j): the whole sequence again -> (B, K)."""
        x = self.embed_text(text)  # (B, Lt, C)
        if codes.shape[1]:
            x = torch.cat([x, self.embed_codes(codes)], dim=1)  # (B, Lt + j, C)
        h = self.transformer(x, is_causal=True)[:, -1]  # (B, C): only the last position is needed
        return self.image_head(self.norm(h))  # (B, K)

    @torch.no_grad()
    def sample_codes(self, text: Tensor, guidance_scale: float | None = None, temperature: float = 1.0,
                     top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
                     use_cache: bool = True) -> Tensor:
        """Sample the image codes for text ids ``text`` (B, Lt) -> codes (B, G, G).

        ``guidance_scale`` None: plain conditional sampling. A number: the unconditional stream (the null caption)
        runs in the same batch, and the logits are combined by :func:`classifier_free_guidance`.
        ``use_cache=False`` re-runs the whole sequence for every code (slow; for tests and the benchmark): with the
        same ``generator`` state both give the same codes.
        """
        B, device = text.shape[0], text.device
        guided = guidance_scale is not None
        if guided:
            text = torch.cat([text, self.null_text(B, device)])  # (2B, Lt): conditional rows, then unconditional
        codes = torch.zeros(B, 0, dtype=torch.long, device=device)  # (B, j): sampled so far
        cache = KVCache() if use_cache else None
        n_codes = self.cfg.image_length
        for j in range(n_codes):
            stream = torch.cat([codes, codes]) if guided else codes  # (B or 2B, j)
            if cache is None:
                logits = self._image_logits_uncached(text, stream)  # (B or 2B, K)
            else:
                x = self.embed_text(text) if j == 0 else self.embed_codes(stream[:, -1:], start=j - 1)  # (.., T, C)
                h = self.transformer(x, is_causal=True, cache=cache)[:, -1]  # (B or 2B, C)
                logits = self.image_head(self.norm(h))  # (B or 2B, K)
            if guided:
                cond, uncond = logits.float().chunk(2)  # (B, K) each
                logits = classifier_free_guidance(cond, uncond, guidance_scale)
            nxt = sample_from_logits(logits, temperature, top_k, top_p, generator)  # (B,)
            codes = torch.cat([codes, nxt[:, None]], dim=1)  # (B, j + 1)
        G = self.cfg.grid_size
        return codes.view(B, G, G)  # (B, G, G)

    # -- checkpoints -------------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None, **card: Any) -> Path:
        """Safetensors weights (floating tensors cast to ``dtype`` if given: the shipped file is float16) + card."""
        card = {"model": KIND, "config": self.cfg.to_dict(), "sample_config": asdict(self.sample_config),
                "tokenizer": "course", "vqgan": "shapes-vqgan", **card}
        return save_checkpoint(path, self.state_dict(), card, dtype)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "DALLE":
        """A model from :meth:`save` (float32, CPU, eval mode)."""
        sd, card = load_checkpoint(path)
        check_kind(card, path, KIND, "DALL-E", legacy=("dalle",))
        model = cls(DALLEConfig.from_dict(card["config"]))
        check_tensors(sd, model.state_dict(), path)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})
        model.sample_config = SampleConfig.from_dict(card.get("sample_config", {}))
        model.card = card
        return model.eval()


# ------------------------------------------------------------------------------------ prompt -> pictures


def _vqgan_for(model: DALLE, vqgan: Any) -> Any:
    """The VQGAN that decodes ``model``'s codes: ``vqgan`` if given, else the one its card names (cached)."""
    device = model.text_pos_embed.device
    return vqgan if vqgan is not None else shipped(vqgan_module.load, model.card.get("vqgan", "shapes-vqgan"), device)


def _clip_for(model: DALLE, clip: tuple[Any, Any] | None) -> tuple[Any, Any]:
    """``(clip_model, clip_tokenizer)`` for re-ranking: ``clip`` if given, else the shipped "shapes-tiny" (cached)."""
    if clip is not None:
        return clip
    clip_model, _, clip_tokenizer = shipped(clip_module.load, "shapes-tiny", model.text_pos_embed.device)
    return clip_model, clip_tokenizer


@functools.lru_cache(maxsize=1)
def _course_tokenizer() -> BPETokenizer:
    return BPETokenizer.course()


def tokenize(prompts: str | Sequence[str], model: DALLE, tokenizer: Any = None, truncate: bool = False) -> Tensor:
    """Prompts -> ``model``'s text ids (B, Lt): the course BPE (or ``tokenizer``), the padding id after [end];
    ``""`` is the null caption. A prompt longer than the model's ``text_length`` raises
    :class:`~mmcore.sampling.PromptTooLongError` unless ``truncate``."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    for p in prompts:
        if not isinstance(p, str):
            raise TypeError(f"prompts must be strings; got {type(p).__name__}")
    tokenizer = tokenizer if tokenizer is not None else _course_tokenizer()
    try:
        tokens = tokenizer(prompts, context_length=model.cfg.text_length, truncate=truncate)  # (B, Lt)
    except ContextLengthError as e:
        raise PromptTooLongError(
            f"prompt {e.text!r} has {e.n_tokens - 2} tokens, but this DALL-E model reads at most "
            f"{model.cfg.text_length - 2}. Shorten it (e.g. 'a red circle at the top'), or pass truncate=True "
            "to cut it.") from None
    return pad_after_end(tokens, model.cfg.eot_token, model.cfg.pad_token)


def _settings(model: DALLE, settings: dict[str, Any]) -> SampleConfig:
    unknown = set(settings) - set(asdict(model.sample_config))
    if unknown:
        raise TypeError(f"unknown sampling settings {sorted(unknown)}; use fields of SampleConfig")
    return SampleConfig.from_dict({**asdict(model.sample_config), **settings})


@torch.no_grad()
def score_samples(prompt: str, model: DALLE, images: Tensor, codes: Tensor, rerank_by: str = "clip",
                  clip: tuple[Any, Any] | None = None, tokenizer: Any = None) -> Tensor:
    """The re-ranking score (:func:`~mmcore.sampling.rerank_scores`) of one prompt's samples: images
    (n, 3, S, S) in [0, 1] and their codes (n, G, G) -> (n,) on the CPU. ``clip = (clip_model, clip_tokenizer)``
    (default: the shipped "shapes-tiny"); ``tokenizer``: the DALL-E model's own (for the likelihood)."""
    if rerank_by not in RERANK_BY:
        raise ValueError(f"rerank_by must be one of {RERANK_BY}; got {rerank_by!r}")
    clip_score = log_likelihood = None
    if "clip" in rerank_by:
        clip_model, clip_tokenizer = _clip_for(model, clip)
        clip_score = clip_scores(clip_model, clip_tokenizer, images, prompt)  # (n,)
    if "likelihood" in rerank_by:
        device = model.text_pos_embed.device
        text = tokenize(prompt, model, tokenizer, truncate=True).to(device).expand(len(codes), -1)  # (n, Lt)
        log_likelihood = model.code_log_likelihood(text, codes.to(device)).cpu()  # (n,)
    return rerank_scores(clip_score, log_likelihood, rerank_by)


@torch.no_grad()
def generate(prompt: str = "", model: DALLE | None = None, *, n: int = 8, seed: int = 0, rerank: int | None = None,
             truncate: bool = False, use_cache: bool = True, tokenizer: Any = None, vqgan: Any = None,
             clip: tuple[Any, Any] | None = None, **settings: Any) -> Generation:
    """``n`` pictures for ``prompt`` -> :class:`~mmcore.generation.Generation` (``.images``: PIL, ``.pixels``,
    ``.codes``; ``.scores`` when re-ranked).

    ``prompt``: English or Bengali (``"a red circle"``, ``"একটি লাল বৃত্ত"``); ``""`` samples unconditionally.
    ``model``: a :class:`DALLE` (default: the shipped "shapes-dalle", cached). ``rerank=k``: the tiny CLIP scores
    the ``n`` pictures and the best ``k`` come back, best first (``rerank_by="clip+likelihood"`` adds the model's
    own likelihood). ``settings``: :class:`SampleConfig` fields (``guidance_scale=3.0``, ``top_k=32``, ...), else
    the model's ``sample_config``. Helpers: ``tokenizer`` (the course BPE), ``vqgan`` (the one the card names),
    ``clip = (clip_model, clip_tokenizer)`` for re-ranking ("shapes-tiny"). The same ``seed`` gives the same
    pictures (on one device). A prompt longer than the model's text positions raises
    :class:`~mmcore.sampling.PromptTooLongError` unless ``truncate=True``.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string; got {type(prompt).__name__}")
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if rerank is not None and not 1 <= rerank <= n:
        raise ValueError(f"rerank must be None or between 1 and n={n}; got {rerank}")
    if rerank is not None and not prompt.strip():
        raise ValueError("rerank needs a prompt to score the images against; the empty prompt has none")
    model = model if model is not None else shipped(load, "shapes-dalle")
    cfg = _settings(model, settings)
    start = time.perf_counter()
    was_training = model.training
    model.eval()
    device = model.text_pos_embed.device
    text = tokenize(prompt, model, tokenizer, truncate).to(device)  # (1, Lt)
    scale = None if not prompt.strip() or cfg.guidance_scale == 1.0 else cfg.guidance_scale
    generator = torch.Generator().manual_seed(seed)
    codes = torch.cat([model.sample_codes(text.expand(min(cfg.batch_size, n - i), -1), scale, cfg.temperature,
                                          cfg.top_k, cfg.top_p, generator, use_cache)
                       for i in range(0, n, cfg.batch_size)])  # (n, G, G)
    model.train(was_training)
    vqgan = _vqgan_for(model, vqgan)
    images = vqgan.decode_indices(codes.to(next(vqgan.parameters()).device)).float().clamp(0, 1)  # (n, 3, S, S)
    scores = None
    if rerank is not None:
        scores = score_samples(prompt, model, images, codes, cfg.rerank_by, clip, tokenizer)  # (n,)
        order = scores.argsort(descending=True)[:rerank]  # (k,)
        images, codes, scores = images[order.to(images.device)], codes[order.to(codes.device)], scores[order]
    return Generation(prompt, images.cpu(), codes.cpu(), scores, time.perf_counter() - start)


# ------------------------------------------------------------------------------------ many prompts at once


@torch.no_grad()
def sample_pair_images(model: DALLE, pairs: Sequence[tuple[str, str]], n: int = 8, seed: int = 0,
                       langs: Sequence[str] = LANGS, batch_rows: int = 512, vqgan: Any = None,
                       **settings: Any) -> tuple[list[str], list[dict[str, str]], Tensor, Tensor]:
    """Sample ``n`` images for the :func:`mmcore.data.pair_prompt` of every (shape, colour) pair and language.

    ``settings``: :class:`mmcore.dalle.SampleConfig` fields (``guidance_scale`` 1: no guidance), else the model's.
    All prompts are sampled together, ``batch_rows`` rows at a time. Returns ``(prompts (P,), wanted (P,),
    images (P, n, 3, S, S) in [0, 1], codes (P, n, G, G))``, ``wanted`` the judge's ``{"shape", "color"}`` of each
    prompt."""
    cfg = _settings(model, settings)
    scale = None if cfg.guidance_scale == 1.0 else cfg.guidance_scale
    model.eval()
    device = model.text_pos_embed.device
    prompts = [pair_prompt(s, c, lang) for s, c in pairs for lang in langs]
    wanted = [{"shape": s, "color": c} for s, c in pairs for _ in langs]
    text = tokenize(prompts, model).to(device).repeat_interleave(n, dim=0)  # (P * n, Lt)
    generator = torch.Generator().manual_seed(seed)
    codes = torch.cat([model.sample_codes(text[i : i + batch_rows], scale, cfg.temperature, cfg.top_k, cfg.top_p,
                                          generator) for i in range(0, len(text), batch_rows)])  # (P * n, G, G)
    vqgan = _vqgan_for(model, vqgan)
    images = torch.cat([vqgan.decode_indices(codes[i : i + batch_rows]).float().clamp(0, 1)
                        for i in range(0, len(codes), batch_rows)])  # (P * n, 3, S, S)
    G = model.cfg.grid_size
    return prompts, wanted, images.view(len(prompts), n, *images.shape[1:]), codes.view(len(prompts), n, G, G)


@torch.no_grad()
def rerank_images(model: DALLE, prompts: Sequence[str], images: Tensor, codes: Tensor, k: int,
                  rerank_by: str = "clip", clip: tuple[Any, Any] | None = None) -> Tensor:
    """The ``k`` best images of each prompt's group (P, n, 3, S, S) with their codes (P, n, G, G), by
    :func:`score_samples` -> (P, k, 3, S, S), best first."""
    kept = []
    for prompt, group, group_codes in zip(prompts, images, codes):
        order = score_samples(prompt, model, group, group_codes, rerank_by, clip).argsort(descending=True)[:k]
        kept.append(group[order.to(group.device)])  # (k, 3, S, S)
    return torch.stack(kept)


# ----------------------------------------------------------------------------------------------------- loading


def available_models() -> list[str]:
    """Names :func:`load` knows without a path."""
    return ["shapes-dalle"]


def load(name_or_path: str | os.PathLike = "shapes-dalle", device: str | torch.device | None = None) -> DALLE:
    """The shipped ``"shapes-dalle"`` (``data/checkpoints/``, no network) or a checkpoint path -> :class:`DALLE`
    in eval mode, float32, on ``device`` (default: :func:`mmcore.get_device`). Reading safetensors runs no code."""
    path = resolve_checkpoint(name_or_path, "shapes-dalle", SHAPES_DALLE, "DALL-E model",
                              f"`{TRAIN_COMMAND}` (a few minutes on a GPU; see mmcore/train_dalle.py)")
    device = torch.device(device) if device is not None else get_device()
    return DALLE.from_checkpoint(path).to(device=device, dtype=torch.float32).eval()
