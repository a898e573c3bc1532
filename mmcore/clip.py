"""CLIP from scratch: two transformers that map images and texts into one embedding space.

An **image tower** (a Vision Transformer) turns an image into a vector; a **text tower** (a causal transformer,
like GPT-2) turns a caption into a vector of the same size. Training pulls the vectors of matching
(image, caption) pairs together and pushes all other pairs in the batch apart (:func:`clip_loss`). Afterwards,
classifying an image "zero-shot" is just asking which caption ("a photo of a dog", ...) lies closest
(:func:`zero_shot_classifier`).

Pieces, in reading order:

* :class:`CLIPConfig` - every size in one dataclass, with presets (``tiny()``, ``vit_b_32()``, ...).
* :class:`VisionTransformer`, :class:`TextTransformer` - the towers; :class:`CLIP` - both + a temperature.
* :func:`clip_loss`, :func:`zero_shot_classifier`, :class:`Preprocess` (OpenAI's image preprocessing).
* weight conversion: ``CLIP.from_openai_state_dict`` (OpenAI / open_clip names), ``CLIP.from_hf_state_dict``
  (Hugging Face names), and :func:`load` (``"ViT-B/32"``, ``"shapes-tiny"``, or a file path).

Shapes: ``B`` batch, ``N`` image patches, ``T`` text tokens, ``W`` tower width, ``E`` embedding size.
The model is always float32 (OpenAI's float16 files are converted on load); on CUDA wrap calls in
``torch.autocast("cuda")`` for speed.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .images import OPENAI_MEAN, OPENAI_STD, normalize, to_tensor
from .transformer import Transformer, init_transformer_
from .weights import (CHECKPOINT_DIR, DictConfig, check_kind, check_tensors, download, load_checkpoint, read_state_dict,
                      save_checkpoint)

__all__ = [
    "CLIPConfig",
    "VisionTransformer",
    "TextTransformer",
    "CLIP",
    "CLIPOutput",
    "clip_loss",
    "eot_positions",
    "with_text_tower",
    "zero_shot_classifier",
    "Preprocess",
    "normalize_pixels",
    "OPENAI_MEAN",
    "OPENAI_STD",
    "OPENAI_MODELS",
    "available_models",
    "convert_openai_state_dict",
    "convert_hf_state_dict",
    "load",
]

# OPENAI_MEAN, OPENAI_STD (per-channel RGB mean and standard deviation of OpenAI's training images) live in
# mmcore.images with every other pixel conversion; they are re-exported here, where OpenAI's clip package has them.

# OpenAI's published checkpoints (TorchScript archives, float16). The SHA-256 of each file is the second-last
# component of its URL.
OPENAI_MODELS: dict[str, str] = {
    "ViT-B/32": "https://openaipublic.azureedge.net/clip/models/"
    "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/"
    "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L/14": "https://openaipublic.azureedge.net/clip/models/"
    "b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
    "ViT-L/14@336px": "https://openaipublic.azureedge.net/clip/models/"
    "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}

SHAPES_TINY = CHECKPOINT_DIR / "shapes-tiny.safetensors"
#: The course's shipped CLIPs: ``shapes-tiny`` (lessons 01-06), ``shapes-negclip``, ``shapes-tiny`` fine-tuned with
#: two-object pictures and hard negatives (lesson 07, ``data/checkpoints/shapes-negclip.md``), and ``shapes-english``,
#: the same recipe as ``shapes-tiny`` with English captions only (lesson 08's teacher).
SHIPPED = {"shapes-tiny": SHAPES_TINY, "shapes-negclip": CHECKPOINT_DIR / "shapes-negclip.safetensors",
           "shapes-english": CHECKPOINT_DIR / "shapes-english.safetensors"}
KIND = "mmcore.clip.CLIP"  # the "model" of its checkpoint cards


# ------------------------------------------------------------------------------------------------------ config


@dataclass
class CLIPConfig(DictConfig):
    """All sizes of a CLIP model. Use a preset (``CLIPConfig.vit_b_32()``) and ``dataclasses.replace`` to vary it."""

    embed_dim: int = 512  # E: size of the shared image/text embedding space
    # image tower (Vision Transformer)
    image_size: int = 224  # input images are image_size x image_size pixels
    patch_size: int = 32  # each patch_size x patch_size square becomes one token
    vision_width: int = 768  # W of the image transformer
    vision_layers: int = 12  # residual blocks in the image transformer
    vision_heads: int = 12  # attention heads (head width = vision_width // vision_heads)
    # text tower (causal transformer)
    vocab_size: int = 49408  # token ids are 0 .. vocab_size - 1
    context_length: int = 77  # the longest token sequence (text positions)
    text_width: int = 512  # W of the text transformer
    text_layers: int = 12  # residual blocks in the text transformer
    text_heads: int = 8  # attention heads of the text transformer
    eot_token: int = 49407  # end-of-text id: the text embedding is read at its (first) position
    # shared
    mlp_ratio: float = 4.0  # MLP hidden width = mlp_ratio * width
    activation: str = "quick_gelu"  # "quick_gelu" (OpenAI) or "gelu" (exact; open_clip's non-OpenAI models)
    norm_eps: float = 1e-5  # LayerNorm epsilon
    logit_scale_init: float = math.log(1 / 0.07)  # log of the initial inverse temperature (1 / 0.07)
    logit_scale_max: float = 100.0  # the inverse temperature is clamped to at most this

    @property
    def grid_size(self) -> int:
        """Patches per image side (7 for ViT-B/32 at 224 px)."""
        return self.image_size // self.patch_size

    @classmethod
    def tiny(cls, **overrides: Any) -> "CLIPConfig":
        """The course's Shapes model: 32 px images in 16 patches, 3 + 3 layers of width 128.

        The vocabulary defaults to 4,096 ids with ``eot_token`` the last one (OpenAI's convention; what the tests'
        random models use); the shipped ``shapes-tiny`` passes the course tokenizer's ids
        (``vocab_size=tokenizer.vocab_size`` = 2,954, ``eot_token=tokenizer.eot_token``), as :mod:`mmcore.train_clip` does.
        """
        cfg = cls(
            embed_dim=128, image_size=32, patch_size=8, vision_width=128, vision_layers=3, vision_heads=4,
            vocab_size=4096, context_length=32, text_width=128, text_layers=3, text_heads=4, eot_token=4095,
        )  # fmt: skip
        return replace(cfg, **overrides)

    @classmethod
    def vit_b_32(cls, **overrides: Any) -> "CLIPConfig":
        """OpenAI's ViT-B/32 (151 M parameters, 88 M in the image tower)."""
        return replace(cls(), **overrides)

    @classmethod
    def vit_b_16(cls, **overrides: Any) -> "CLIPConfig":
        """OpenAI's ViT-B/16: ViT-B/32 with 16 px patches (196 image tokens instead of 49)."""
        return replace(cls(patch_size=16), **overrides)

    @classmethod
    def vit_l_14(cls, **overrides: Any) -> "CLIPConfig":
        """OpenAI's ViT-L/14 (428 M parameters): 24 layers of width 1024 on 14 px patches; 768-d embeddings."""
        cfg = cls(
            embed_dim=768, patch_size=14, vision_width=1024, vision_layers=24, vision_heads=16,
            text_width=768, text_heads=12,
        )  # fmt: skip
        return replace(cfg, **overrides)


# ------------------------------------------------------------------------------------------------------ towers


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images (B, C, H, W) into non-overlapping patches, each flattened: (B, N, C * p * p), row by row.

    Followed by a linear layer this *is* ViT's "patchify convolution" (kernel = stride = p), computed as one
    matrix multiply, which is faster than a convolution on CPUs.
    """
    B, C, H, W = images.shape
    p = patch_size
    x = images.reshape(B, C, H // p, p, W // p, p)  # (B, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C p p)


class VisionTransformer(nn.Module):
    """Image tower: patches -> tokens, a class token in front, transformer, and the class token's output.

    ``patch_weight`` (W, 3, p, p) is laid out like a convolution kernel (as in OpenAI's ``conv1``), no bias.
    """

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}")
        W = cfg.vision_width
        self.image_size, self.patch_size = cfg.image_size, cfg.patch_size
        self.patch_weight = nn.Parameter(torch.empty(W, 3, cfg.patch_size, cfg.patch_size))  # (W, 3, p, p)
        self.class_token = nn.Parameter(torch.empty(W))  # (W,)
        self.pos_embed = nn.Parameter(torch.empty(cfg.grid_size**2 + 1, W))  # (1 + N, W)
        self.norm_pre = nn.LayerNorm(W, eps=cfg.norm_eps)
        self.transformer = Transformer(
            W, cfg.vision_layers, cfg.vision_heads, cfg.mlp_ratio, cfg.activation, cfg.norm_eps
        )
        self.norm_post = nn.LayerNorm(W, eps=cfg.norm_eps)
        self.proj = nn.Parameter(torch.empty(W, cfg.embed_dim))  # (W, E)

    def tokens(self, images: Tensor) -> Tensor:
        """Images (B, 3, S, S) -> the transformer's input tokens (B, 1 + N, W), class token first."""
        B, _, H, W_img = images.shape
        if H != self.image_size or W_img != self.image_size:
            raise ValueError(f"expected {self.image_size}x{self.image_size} images, got {H}x{W_img}")
        patches = patchify(images, self.patch_size)  # (B, N, 3 p p)
        x = F.linear(patches, self.patch_weight.flatten(1))  # (B, N, W)
        cls = self.class_token.to(x.dtype).expand(B, 1, -1)  # (B, 1, W)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.to(x.dtype)  # (B, 1 + N, W)
        return self.norm_pre(x)

    def forward(self, images: Tensor) -> Tensor:
        """Images (B, 3, S, S), normalised like :class:`Preprocess` makes them -> embeddings (B, E)."""
        x = self.tokens(images)  # (B, 1 + N, W)
        cls_index = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)  # (B,): the class token is first
        x = self.transformer(x, output_index=cls_index)  # (B, W): the class token speaks for the image
        return self.norm_post(x) @ self.proj  # (B, E)


def eot_positions(tokens: Tensor, eot_token: int) -> Tensor:
    """Index of the first ``eot_token`` in each row of ``tokens`` (B, T) -> (B,). Raises if a row has none."""
    is_eot = tokens == eot_token  # (B, T)
    found = is_eot.any(dim=1)  # (B,)
    if not bool(found.all()):
        rows = torch.nonzero(~found).flatten().tolist()
        raise ValueError(
            f"rows {rows[:10]} of the token batch contain no end-of-text token {eot_token}: "
            "tokenize with the model's tokenizer (it appends one), or pass truncate=True for long texts"
        )
    return is_eot.to(torch.uint8).argmax(dim=1)  # argmax returns the first maximum: the first eot


class TextTransformer(nn.Module):
    """Text tower: token + position embeddings, a causal transformer, and the output at the end-of-text token.

    Causal attention means position t sees only tokens 0..t, so the end-of-text token is the first position
    that has read the whole caption - and whatever padding follows it cannot change it. That also lets
    :meth:`forward` drop the padding columns before running the transformer (same result, less work).
    """

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        W = cfg.text_width
        self.context_length, self.eot_token = cfg.context_length, cfg.eot_token
        self.token_embed = nn.Embedding(cfg.vocab_size, W)
        self.pos_embed = nn.Parameter(torch.empty(cfg.context_length, W))  # (T_max, W)
        self.transformer = Transformer(W, cfg.text_layers, cfg.text_heads, cfg.mlp_ratio, cfg.activation, cfg.norm_eps)
        self.norm_final = nn.LayerNorm(W, eps=cfg.norm_eps)
        self.proj = nn.Parameter(torch.empty(W, cfg.embed_dim))  # (W, E)

    def forward(self, tokens: Tensor) -> Tensor:
        """Token ids (B, T), T <= context_length, each row with an end-of-text token -> embeddings (B, E)."""
        B, T = tokens.shape
        if T > self.context_length:
            raise ValueError(f"{T} tokens per row, but the model's context_length is {self.context_length}")
        if B == 0:  # no texts: no embeddings (as encode_image does for no images)
            return self.proj.new_zeros(0, self.proj.shape[1])  # (0, E)
        eot = eot_positions(tokens, self.eot_token)  # (B,)
        T = int(eot.max()) + 1  # columns after the last eot cannot influence any eot output: skip them
        x = self.token_embed(tokens[:, :T]) + self.pos_embed[:T]  # (B, T, W)
        x = self.transformer(x, is_causal=True, output_index=eot)  # (B, W): the end-of-text token of each row
        return self.norm_final(x) @ self.proj  # (B, E)


# ------------------------------------------------------------------------------------------------------- model


class CLIPOutput(NamedTuple):
    logits_per_image: Tensor  # (B_img, B_txt): scaled cosine similarity of each image with each text
    logits_per_text: Tensor  # (B_txt, B_img): its transpose


class CLIP(nn.Module):
    """Both towers and a learnable temperature.

    ``logit_scale`` stores log(1 / temperature), initialised to log(1 / 0.07); ``forward`` uses
    ``exp(logit_scale)`` clamped at ``cfg.logit_scale_max`` (100), as in OpenAI's training.
    """

    def __init__(self, cfg: CLIPConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or CLIPConfig.vit_b_32()
        self.visual = VisionTransformer(cfg)
        self.text = TextTransformer(cfg)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.logit_scale_init)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """OpenAI's initialisation: small normal weights whose scale shrinks with width (and depth)."""
        v, t = self.visual, self.text
        v_scale, t_scale = v.proj.shape[0] ** -0.5, t.proj.shape[0] ** -0.5
        nn.init.normal_(v.patch_weight, std=(3 * v.patch_size**2) ** -0.5)
        nn.init.normal_(v.class_token, std=v_scale)
        nn.init.normal_(v.pos_embed, std=v_scale)
        nn.init.normal_(v.proj, std=v_scale)
        nn.init.normal_(t.token_embed.weight, std=0.02)
        nn.init.normal_(t.pos_embed, std=0.01)
        nn.init.normal_(t.proj, std=t_scale)
        for tower in (v, t):
            init_transformer_(tower.transformer)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            self.logit_scale.fill_(self.cfg.logit_scale_init)

    @property
    def context_length(self) -> int:
        return self.cfg.context_length

    def encode_image(self, images: Tensor, normalize: bool = False) -> Tensor:
        """Images (B, 3, S, S) -> embeddings (B, E); unit length if ``normalize``."""
        x = self.visual(images)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, tokens: Tensor, normalize: bool = False) -> Tensor:
        """Token ids (B, T) -> embeddings (B, E); unit length if ``normalize``."""
        x = self.text(tokens)
        return F.normalize(x, dim=-1) if normalize else x

    def temperature_scale(self) -> Tensor:
        """``exp(logit_scale)`` clamped to ``cfg.logit_scale_max``: multiplies the cosine similarities."""
        return self.logit_scale.exp().clamp(max=self.cfg.logit_scale_max)

    def forward(self, images: Tensor, tokens: Tensor) -> CLIPOutput:
        """Cosine similarity of every image with every text, times the learned scale."""
        img = self.encode_image(images, normalize=True)  # (B_img, E)
        txt = self.encode_text(tokens, normalize=True)  # (B_txt, E)
        logits = self.temperature_scale() * img @ txt.t()  # (B_img, B_txt)
        return CLIPOutput(logits, logits.t())

    # ---- weights from elsewhere

    @classmethod
    def from_openai_state_dict(cls, state_dict: dict[str, Tensor], **overrides: Any) -> "CLIP":
        """Build from an OpenAI (or open_clip) ViT state dict; sizes are read off the tensor shapes.

        ``overrides`` set config fields the shapes cannot tell, e.g. ``activation="gelu"`` for open_clip models
        trained without QuickGELU (open_clip's ``ViT-B-32``; the ``-quickgelu`` ones and OpenAI's use the default).
        Weights are converted to float32.
        """
        cfg, sd = convert_openai_state_dict(state_dict, **overrides)
        return cls._from_converted(cfg, sd)

    @classmethod
    def from_hf_state_dict(cls, state_dict: dict[str, Tensor], **overrides: Any) -> "CLIP":
        """Build from a Hugging Face ``transformers.CLIPModel`` state dict (sizes read off the shapes)."""
        cfg, sd = convert_hf_state_dict(state_dict, **overrides)
        return cls._from_converted(cfg, sd)

    @classmethod
    def _from_converted(cls, cfg: CLIPConfig, sd: dict[str, Tensor], where: str = "the state dict") -> "CLIP":
        with torch.device("meta"):
            model = cls(cfg)  # no memory, no random init: every tensor is replaced below
        check_tensors(sd, model.state_dict(), where)
        # float32 copies, contiguous, sharing no memory with the source (e.g. another model's parameters)
        sd = {k: v.detach().to(torch.float32, copy=True).contiguous() for k, v in sd.items()}
        model.load_state_dict(sd, strict=True, assign=True)
        return model.eval()

    def to_openai_state_dict(self) -> dict[str, Tensor]:
        """This model's weights under OpenAI's names (the inverse of :meth:`from_openai_state_dict`)."""
        ours = self.state_dict()
        return {theirs: ours[_rename_openai_key(theirs)] for theirs in _openai_keys(self.cfg)}

    # ---- our own checkpoints

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None, **card: Any) -> Path:
        """Save as safetensors (floating tensors cast to ``dtype`` if given) with a JSON card holding the config
        (+ any ``card`` fields, e.g. ``tokenizer=``)."""
        card = {"model": KIND, "config": self.cfg.to_dict(), **card}
        return save_checkpoint(path, self.state_dict(), card, dtype)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "CLIP":
        """Load a file written by :meth:`save`."""
        sd, card = load_checkpoint(path)
        check_kind(card, path, KIND, "CLIP")
        if "config" not in card:
            raise ValueError(f"{path} has no 'config' in its card: was it written by CLIP.save?")
        return cls._from_converted(CLIPConfig.from_dict(card["config"]), sd, path)


def with_text_tower(model: CLIP, text: TextTransformer) -> CLIP:
    """A CLIP that sees with ``model``'s image tower and temperature and reads with another text tower ``text``.

    Lesson 08's student: a text tower trained (by distillation) to put a new language where ``model``'s own text
    tower puts English. The result is an ordinary :class:`CLIP` (zero-shot, search and ``save`` accept it); its
    image tower is a copy, so training one model never changes the other. ``text`` must be built for ``model``'s
    config (same width, layers and embedding size), e.g. a copy of ``model.text``.
    """
    if not isinstance(text, TextTransformer):
        raise TypeError(f"text must be a TextTransformer (a CLIP's .text); got {type(text).__name__}")
    ours, theirs = text.state_dict(), model.text.state_dict()
    wrong = [k for k in theirs if k not in ours or ours[k].shape != theirs[k].shape]
    if wrong:
        raise ValueError(f"the text tower does not fit this CLIP: {wrong[0]!r} has "
                         f"another shape or is missing; build the student from the teacher's config "
                         "(TextTransformer(model.cfg) or copy.deepcopy(model.text))")
    check_tensors(ours, theirs, "the text tower")
    with torch.device("meta"):
        paired = CLIP(model.cfg)
    sd = {**{f"visual.{k}": v for k, v in model.visual.state_dict().items()},
          **{f"text.{k}": v for k, v in text.state_dict().items()}, "logit_scale": model.logit_scale.data}
    sd = {k: v.detach().to(torch.float32, copy=True).contiguous() for k, v in sd.items()}
    paired.load_state_dict(sd, strict=True, assign=True)
    return paired.to(model.logit_scale.device).eval()


# ------------------------------------------------------------------------------------------------ loss, zero-shot


def clip_loss(logits_per_image: Tensor, logits_per_text: Tensor | None = None) -> Tensor:
    """Symmetric cross-entropy: image i should pick text i among all texts, and text i image i.

    ``logits_per_image`` (B, B), row i = image i against every text; the diagonal holds the true pairs.
    """
    if logits_per_text is None:
        logits_per_text = logits_per_image.t()
    target = torch.arange(logits_per_image.shape[0], device=logits_per_image.device)  # (B,)
    return 0.5 * (F.cross_entropy(logits_per_image, target) + F.cross_entropy(logits_per_text, target))


@torch.no_grad()
def _check_classes(classnames: Sequence[str], templates: Sequence[str]) -> None:
    """Clear errors for what would otherwise fail deep inside (or silently give identical classes)."""
    if isinstance(classnames, str) or isinstance(templates, str):
        raise TypeError("classnames and templates must be lists of strings, not one string: wrap it in [...]")
    if len(classnames) == 0:
        raise ValueError("no class names: zero-shot classification needs at least one class, e.g. ['cat', 'dog']")
    bad = [c for c in classnames if not isinstance(c, str) or not c.strip()]
    if bad:
        raise ValueError(f"every class name must be a non-empty string; got {bad[0]!r}")
    if len(templates) == 0:
        raise ValueError("no templates: pass at least one, e.g. ['a photo of a {}.']")
    for template in templates:
        if not isinstance(template, str) or template.count("{}") != 1:
            raise ValueError(f"each template needs exactly one '{{}}' where the class name goes; got {template!r} "
                             "(without it every class would get the same prompt)")


def zero_shot_classifier(
    model: CLIP,
    tokenizer: Callable[..., Tensor],
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    batch_size: int = 256,
) -> Tensor:
    """Zero-shot weights (E, C): one unit column per class, to use as ``image_emb_normalised @ weights``.

    Prompt ensembling: each class name is put into every template (``"a photo of a {}."``), each prompt embedded
    and normalised, the embeddings averaged over templates and the average normalised again.
    """
    _check_classes(classnames, templates)
    device = next(model.parameters()).device
    prompts = [template.format(name) for name in classnames for template in templates]  # C * K strings, class-major
    embeddings = []
    for start in range(0, len(prompts), batch_size):
        tokens = tokenizer(prompts[start : start + batch_size]).to(device)  # (b, T)
        embeddings.append(model.encode_text(tokens, normalize=True))  # (b, E)
    emb = torch.cat(embeddings).view(len(classnames), len(templates), -1)  # (C, K, E)
    return F.normalize(emb.mean(dim=1), dim=-1).t().contiguous()  # (E, C)


# --------------------------------------------------------------------------------------------- preprocessing


def normalize_pixels(images: Tensor, size: int) -> Tensor:
    """A float batch (B, 3, H, W) in [0, 1] -> CLIP's input (B, 3, size, size): bilinear resize (only if needed),
    then OpenAI's mean and std. The tensor twin of :class:`Preprocess`, for images a model generated."""
    if images.shape[-1] != size or images.shape[-2] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return normalize(images)  # (B, 3, size, size)


class Preprocess:
    """OpenAI's image preprocessing: bicubic resize of the short side to ``size``, centre crop, RGB, CLIP mean/std.

    ``Preprocess(224)(pil_image)`` -> float tensor (3, 224, 224), the same numbers as OpenAI's torchvision
    pipeline. ``mean``/``std`` can be overridden (e.g. ``(0.5,) * 3`` for a model trained that way).
    """

    def __init__(self, size: int, mean: Sequence[float] = OPENAI_MEAN, std: Sequence[float] = OPENAI_STD):
        self.size = size
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)  # (3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)  # (3, 1, 1)

    def __call__(self, image: Any) -> Tensor:
        """One PIL image -> (3, size, size) float32, normalised."""
        from PIL import Image

        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(self.size * long / short)  # like torchvision: truncate the long side
        new_w, new_h = (self.size, new_long) if w <= h else (new_long, self.size)
        if (new_w, new_h) != (w, h):
            image = image.resize((new_w, new_h), Image.BICUBIC)
        left = int(round((new_w - self.size) / 2.0))
        top = int(round((new_h - self.size) / 2.0))
        image = image.crop((left, top, left + self.size, top + self.size)).convert("RGB")
        return normalize(to_tensor(image)[0], self.mean, self.std)  # (3, S, S)

    def __repr__(self) -> str:
        return f"Preprocess(size={self.size})"


# ---------------------------------------------------------------------------------------- weight conversion

# (OpenAI/open_clip name pattern, our name); applied to every key with re.fullmatch.
_OPENAI_RENAMES: list[tuple[str, str]] = [
    (r"visual\.conv1\.weight", r"visual.patch_weight"),
    (r"visual\.class_embedding", r"visual.class_token"),
    (r"visual\.positional_embedding", r"visual.pos_embed"),
    (r"visual\.ln_pre\.(weight|bias)", r"visual.norm_pre.\1"),
    (r"visual\.ln_post\.(weight|bias)", r"visual.norm_post.\1"),
    (r"visual\.proj", r"visual.proj"),
    (r"token_embedding\.weight", r"text.token_embed.weight"),
    (r"positional_embedding", r"text.pos_embed"),
    (r"ln_final\.(weight|bias)", r"text.norm_final.\1"),
    (r"text_projection", r"text.proj"),
    (r"logit_scale", r"logit_scale"),
]
# inside each residual block: OpenAI name -> ours
_OPENAI_BLOCK = {
    "ln_1": "norm1",
    "attn.in_proj_weight": "attn.qkv.weight",
    "attn.in_proj_bias": "attn.qkv.bias",
    "attn.out_proj": "attn.out",
    "ln_2": "norm2",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
# keys OpenAI's / open_clip's files carry that are not weights (sizes, the causal mask, ...)
_OPENAI_IGNORED = re.compile(r"(input_resolution|context_length|vocab_size|attn_mask|.*\.attn_mask|logit_bias)")


def _count_blocks(keys: Sequence[str], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for k in keys if (m := pattern.match(k))})


def convert_openai_state_dict(sd: dict[str, Tensor], **overrides: Any) -> tuple[CLIPConfig, dict[str, Tensor]]:
    """OpenAI/open_clip ViT CLIP weights -> ``(config inferred from the shapes, state dict with our names)``.

    Heads are width // 64, as in all of OpenAI's models; ``overrides`` replace any inferred config field.
    """
    sd = {k.removeprefix("module."): v for k, v in sd.items()}  # DataParallel / DDP checkpoints
    if "visual.conv1.weight" not in sd:
        is_resnet = "visual.layer1.0.conv1.weight" in sd
        kind = "a ResNet (RN50-style) CLIP, which mmcore does not implement" if is_resnet else "not a ViT CLIP"
        raise ValueError(f"no 'visual.conv1.weight': {kind}")
    keys = list(sd)
    vision_width, _, patch, _ = sd["visual.conv1.weight"].shape  # (W, 3, p, p)
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)  # (1 + grid^2, W)
    text_width = sd["ln_final.weight"].shape[0]
    cfg = CLIPConfig(
        embed_dim=sd["text_projection"].shape[1],
        image_size=grid * patch,
        patch_size=patch,
        vision_width=vision_width,
        vision_layers=_count_blocks(keys, "visual.transformer.resblocks."),
        vision_heads=vision_width // 64,
        vocab_size=sd["token_embedding.weight"].shape[0],
        context_length=sd["positional_embedding"].shape[0],
        text_width=text_width,
        text_layers=_count_blocks(keys, "transformer.resblocks."),
        text_heads=text_width // 64,
        mlp_ratio=sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / vision_width,
    )
    cfg = replace(cfg, **overrides)

    out: dict[str, Tensor] = {}
    unknown = []
    for key, tensor in sd.items():
        new = _rename_openai_key(key)
        if new is not None:
            out[new] = tensor
        elif not _OPENAI_IGNORED.fullmatch(key):
            unknown.append(key)
    if unknown:
        raise ValueError(f"unexpected keys in the state dict (not a plain ViT CLIP?): {unknown[:8]}")
    if "logit_scale" not in out:
        out["logit_scale"] = torch.tensor(cfg.logit_scale_init)
    return cfg, out


def _rename_openai_key(key: str) -> str | None:
    m = re.fullmatch(r"(visual\.)?transformer\.resblocks\.(\d+)\.(.+)", key)
    if m:
        tower = "visual" if m.group(1) else "text"
        rest = m.group(3)
        for theirs, ours in _OPENAI_BLOCK.items():
            if rest == theirs or rest.startswith(theirs + "."):
                return f"{tower}.transformer.blocks.{m.group(2)}.{ours}{rest[len(theirs):]}"
        return None
    for pattern, ours in _OPENAI_RENAMES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, ours, key)
    return None


def _openai_keys(cfg: CLIPConfig) -> list[str]:
    """Every weight name of an OpenAI ViT CLIP with this config (in no particular order)."""
    keys = ["visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding", "visual.proj",
            "token_embedding.weight", "positional_embedding", "text_projection", "logit_scale"]  # fmt: skip
    for ln in ("visual.ln_pre", "visual.ln_post", "ln_final"):
        keys += [f"{ln}.weight", f"{ln}.bias"]
    block = ["ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
             "attn.out_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
             "mlp.c_proj.weight", "mlp.c_proj.bias"]  # fmt: skip
    towers = (("visual.transformer.resblocks", cfg.vision_layers), ("transformer.resblocks", cfg.text_layers))
    for prefix, layers in towers:
        keys += [f"{prefix}.{i}.{name}" for i in range(layers) for name in block]
    return keys


def convert_hf_state_dict(sd: dict[str, Tensor], **overrides: Any) -> tuple[CLIPConfig, dict[str, Tensor]]:
    """Hugging Face ``CLIPModel`` weights -> ``(config, state dict with our names)``.

    HF keeps separate q/k/v projections (we stack them into one ``qkv``) and stores projections as ``nn.Linear``
    weights (E, W) (we keep (W, E): transposed). Heads default to width // 64 (true for all OpenAI models).
    """
    sd = {k.removeprefix("clip."): v for k, v in sd.items()}
    vision_width, _, patch, _ = sd["vision_model.embeddings.patch_embedding.weight"].shape  # (W, 3, p, p)
    grid = round((sd["vision_model.embeddings.position_embedding.weight"].shape[0] - 1) ** 0.5)
    text_width = sd["text_model.final_layer_norm.weight"].shape[0]
    keys = list(sd)
    cfg = CLIPConfig(
        embed_dim=sd["visual_projection.weight"].shape[0],
        image_size=grid * patch,
        patch_size=patch,
        vision_width=vision_width,
        vision_layers=_count_blocks(keys, "vision_model.encoder.layers."),
        vision_heads=vision_width // 64,
        vocab_size=sd["text_model.embeddings.token_embedding.weight"].shape[0],
        context_length=sd["text_model.embeddings.position_embedding.weight"].shape[0],
        text_width=text_width,
        text_layers=_count_blocks(keys, "text_model.encoder.layers."),
        text_heads=text_width // 64,
        mlp_ratio=sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0] / vision_width,
    )
    cfg = replace(cfg, **overrides)

    out = {
        "visual.patch_weight": sd["vision_model.embeddings.patch_embedding.weight"],
        "visual.class_token": sd["vision_model.embeddings.class_embedding"],
        "visual.pos_embed": sd["vision_model.embeddings.position_embedding.weight"],
        "visual.proj": sd["visual_projection.weight"].t(),  # (E, W) -> (W, E)
        "text.token_embed.weight": sd["text_model.embeddings.token_embedding.weight"],
        "text.pos_embed": sd["text_model.embeddings.position_embedding.weight"],
        "text.proj": sd["text_projection.weight"].t(),  # (E, W) -> (W, E)
        "logit_scale": sd.get("logit_scale", torch.tensor(cfg.logit_scale_init)),
    }
    norms = [("visual.norm_pre", "vision_model.pre_layrnorm"), ("visual.norm_post", "vision_model.post_layernorm"),
             ("text.norm_final", "text_model.final_layer_norm")]  # fmt: skip
    for ours, theirs in norms:
        for p in ("weight", "bias"):
            out[f"{ours}.{p}"] = sd[f"{theirs}.{p}"]
    towers = [("visual", "vision_model", cfg.vision_layers), ("text", "text_model", cfg.text_layers)]
    for tower, hf_tower, layers in towers:
        for i in range(layers):
            src, dst = f"{hf_tower}.encoder.layers.{i}.", f"{tower}.transformer.blocks.{i}."
            for p in ("weight", "bias"):
                qkv = [sd[src + f"self_attn.{n}_proj.{p}"] for n in "qkv"]  # 3 x (W, W) or (W,)
                out[dst + f"attn.qkv.{p}"] = torch.cat(qkv)  # (3W, W) or (3W,): rows [q; k; v]
                out[dst + f"attn.out.{p}"] = sd[src + f"self_attn.out_proj.{p}"]
                out[dst + f"norm1.{p}"] = sd[src + f"layer_norm1.{p}"]
                out[dst + f"norm2.{p}"] = sd[src + f"layer_norm2.{p}"]
                out[dst + f"mlp.fc1.{p}"] = sd[src + f"mlp.fc1.{p}"]
                out[dst + f"mlp.fc2.{p}"] = sd[src + f"mlp.fc2.{p}"]
    return cfg, out


# ------------------------------------------------------------------------------------------------------- load


def available_models() -> list[str]:
    """Names :func:`load` accepts besides file paths."""
    return [*SHIPPED, *OPENAI_MODELS]


def load(
    name_or_path: str | os.PathLike = "shapes-tiny", device: str | torch.device | None = None
) -> tuple[CLIP, Preprocess, Callable[..., Tensor]]:
    """``(model, preprocess, tokenizer)`` for a model name (:func:`available_models`) or a checkpoint file.

    * ``"ViT-B/32"``, ``"ViT-B/16"``, ``"ViT-L/14"``: OpenAI's weights, downloaded once into the cache (SHA-256
      checked, see :func:`mmcore.weights.download`), read without running their pickled code, converted to our
      model in float32; the tokenizer is ``BPETokenizer.openai()``.
    * ``"shapes-tiny"``, ``"shapes-negclip"``: the course's checkpoints in ``data/checkpoints`` (no network).
    * a path to a ``.safetensors`` (written by :meth:`CLIP.save`) or ``.pt`` (OpenAI / open_clip) file.

    The model comes back in eval mode, float32, on ``device`` (default: :func:`mmcore.get_device`).
    """
    from . import get_device

    device = torch.device(device) if device is not None else get_device()
    name = str(name_or_path)
    card: dict[str, Any] = {}
    checkpoint_dir = SHAPES_TINY.parent
    if name in OPENAI_MODELS:
        url = OPENAI_MODELS[name]
        path = download(url, sha256=url.split("/")[-2])
        model = CLIP.from_openai_state_dict(read_state_dict(path))
    elif name in SHIPPED:
        if not SHIPPED[name].is_file():
            raise FileNotFoundError(
                f"the course checkpoint {SHIPPED[name]} does not exist yet: `make checkpoints` trains it "
                "(or `git pull` the course repository, which ships it)"
            )
        model, card = _load_file(SHIPPED[name])
    elif Path(name).expanduser().is_file():
        path = Path(name).expanduser()
        checkpoint_dir = path.resolve().parent
        model, card = _load_file(path)
    else:
        raise ValueError(f"unknown model {name!r}: use one of {available_models()} or a path to a checkpoint file")
    model = model.to(device=device, dtype=torch.float32).eval()
    return model, Preprocess(model.cfg.image_size), _tokenizer_for(model.cfg, card, checkpoint_dir)


def _load_file(path: Path) -> tuple[CLIP, dict[str, Any]]:
    """A checkpoint file in any of the formats we know, told apart by its contents:

    * ours (``CLIP.save``): safetensors whose card holds the config;
    * OpenAI / open_clip names (``visual.conv1.weight``), in a ``.pt`` (TorchScript or ``torch.save``) or
      ``.safetensors`` file - assumed to use OpenAI's QuickGELU (for open_clip's GELU models call
      ``CLIP.from_openai_state_dict(read_state_dict(path), activation="gelu")``);
    * Hugging Face ``CLIPModel`` names (``vision_model.*``).
    """
    card: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        sd, card = load_checkpoint(path)
        if "model" in card:  # a card written by one of mmcore's models: it must be a CLIP's
            check_kind(card, path, KIND, "CLIP")
        if "config" in card:
            return CLIP._from_converted(CLIPConfig.from_dict(card["config"]), sd, path), card
    else:
        sd = read_state_dict(path)
    keys = {k.removeprefix("module.") for k in sd}
    if "visual.conv1.weight" in keys or "visual.layer1.0.conv1.weight" in keys:
        return CLIP.from_openai_state_dict(sd), card
    if any(k.startswith("vision_model.") for k in keys):
        return CLIP.from_hf_state_dict(sd), card
    raise ValueError(f"{path}: neither an mmcore checkpoint (no config in its card) nor OpenAI/open_clip/HF CLIP weights")


def _tokenizer_for(cfg: CLIPConfig, card: dict[str, Any], checkpoint_dir: Path) -> Callable[..., Tensor]:
    """OpenAI's BPE for OpenAI-sized vocabularies; else the tokenizer the checkpoint's card names: ``"course"`` (the
    course tokenizer, found wherever the checkpoint is), or a folder (relative to the checkpoint's folder; the
    shipped cards' ``"../tokenizer"`` also means the course tokenizer when the checkpoint was copied elsewhere)."""
    from . import tokenizer as tok  # imported here: mmcore.clip must not need it for anything else

    if cfg.vocab_size == 49408 and "tokenizer" not in card:
        return tok.BPETokenizer.openai()
    spec = card.get("tokenizer")
    if spec is None:
        raise ValueError("the checkpoint's card does not say which tokenizer it was trained with ('tokenizer')")
    if spec == "course":
        return tok.BPETokenizer.course()
    path = Path(spec)
    if not path.is_absolute():
        path = checkpoint_dir / path
    if not path.is_dir() and Path(spec).as_posix().rstrip("/") == "../tokenizer":
        # the shipped cards name the course tokenizer by its place beside data/checkpoints; a copied checkpoint
        # (somewhere else) still means the course tokenizer, which the package always finds
        return tok.BPETokenizer.course()
    return tok.BPETokenizer.load(path)
