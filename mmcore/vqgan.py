"""VQGAN: an image autoencoder whose bottleneck is a grid of discrete codes, sharpened by a discriminator.

    image (B, 3, 32, 32) --Encoder--> z (B, D, 8, 8) --VectorQuantizer--> z_q, indices (B, 8, 8)
          --Decoder--> reconstruction (B, 3, 32, 32)

* The **encoder** is a small convolutional network: a convolution, then at each resolution residual blocks
  followed by a stride-2 convolution that halves the side and widens the channels; a final convolution maps to
  the code dimension D. Each of the 8 x 8 output vectors describes a 4 x 4 pixel patch (and its surroundings).
* The **quantiser** (:mod:`mmcore.vq`) snaps each vector to its nearest codebook entry: the image becomes 64
  integers, the "image tokens" that DALL-E's transformer writes and VQGAN+CLIP searches over.
* The **decoder** mirrors the encoder: residual blocks, then nearest-neighbour upsampling + convolution.
  Optionally one self-attention block at the lowest resolution lets every code see every other (at 8 x 8 it
  costs little; at 32 px the convolutions' receptive field already covers the image, so the tiny preset skips it).
* The **patch discriminator** (:class:`PatchDiscriminator`, "PatchGAN") is a small convolutional classifier
  that scores every overlapping patch of an image as real or reconstructed. Training the decoder to fool it
  (:mod:`mmcore.vqgan_losses`) puts back the sharp edges an L1 loss alone averages away.

Residual block: ``x + conv(silu(norm(conv(silu(norm(x))))))``; GroupNorm because batch statistics of tiny
batches are noisy. Inside the network images live in [-1, 1]; at the interface they are float tensors in
**[0, 1]** (B, 3, H, W). :func:`check_images` refuses anything else with a clear message: a tensor that is not
4-d, not 3 channels, not floating point, whose sides are not a multiple of the downsampling factor (4 in the tiny
preset), or whose values lie outside [0, 1] (an error, not a warning: 0-255 images or CLIP-normalised images are
the usual mistake, and a silent wrong reconstruction is worse). The network is fully convolutional, so any
multiple of the factor works, although the shipped model only saw 32 px images.

``mmcore.vqgan.load("shapes-vqgan")`` loads the course's shipped model (``data/checkpoints/shapes-vqgan.*``,
trained by :mod:`mmcore.train_vqgan`). The losses live in :mod:`mmcore.vqgan_losses`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import EVAL_SEED, dataset_images
from .vq import Quantized, VectorQuantizer, code_histogram, perplexity
from .vqgan_losses import psnr
from .weights import (CHECKPOINT_DIR, DictConfig, check_kind, check_tensors, load_checkpoint, resolve_checkpoint,
                      save_checkpoint)

__all__ = [
    "VQGANConfig",
    "evaluate_vqgan",
    "ResBlock",
    "AttentionBlock",
    "Encoder",
    "Decoder",
    "PatchDiscriminator",
    "Encoded",
    "VQGANOutput",
    "VQGAN",
    "check_images",
    "available_models",
    "load",
    "SHAPES_VQGAN",
]

SHAPES_VQGAN = CHECKPOINT_DIR / "shapes-vqgan.safetensors"
KIND = "mmcore.vqgan.VQGAN"  # the "model" of its checkpoint cards


# ------------------------------------------------------------------------------------------------------ config


@dataclass
class VQGANConfig(DictConfig):
    """All sizes of a VQGAN. Use a preset (``VQGANConfig.tiny()``) and ``dataclasses.replace`` to vary it."""

    image_size: int = 32  # side of the (square) training images, in pixels
    in_channels: int = 3  # RGB
    channels: tuple[int, ...] = (16, 32, 64)  # width at each resolution; len - 1 halvings (32 px -> 8 x 8 codes)
    res_blocks: int = 1  # residual blocks per resolution, in the encoder and in the decoder
    decoder_res_blocks: int | None = None  # the decoder's residual blocks per resolution (None: res_blocks)
    attention: bool = False  # one self-attention block at the lowest resolution (encoder and decoder)
    norm_groups: int = 8  # GroupNorm groups (each width must be a multiple)
    code_dim: int = 32  # D: size of each code vector (the encoder's output channels)
    num_codes: int = 256  # K: codebook entries; an image becomes (image_size / factor)^2 indices in [0, K)
    beta: float = 0.25  # commitment loss weight
    ema: bool = True  # EMA codebook (k-means by moving averages) instead of the codebook loss
    ema_decay: float = 0.99  # EMA decay of the codebook
    restart_every: int = 10  # restart dead codes every this many training steps (0: never)
    restart_threshold: float = 0.03  # a code is dead when its running usage is below this many vectors per batch
    disc_channels: int = 32  # width of the discriminator's first layer (doubles each layer)
    disc_layers: int = 2  # stride-2 layers of the discriminator (its patch size grows with them)

    @classmethod
    def tiny(cls, **overrides: Any) -> "VQGANConfig":
        """The course's Shapes VQGAN: 32 px -> 8 x 8 codes from 256 entries, narrow channels (CPU convolutions are slow)."""
        return cls(**{**dict(image_size=32, channels=(16, 32, 64), res_blocks=1, decoder_res_blocks=2,
                             code_dim=32, num_codes=256), **overrides})

    @property
    def factor(self) -> int:
        """Downsampling factor: image side / code grid side (4 for three resolutions)."""
        return 2 ** (len(self.channels) - 1)

    @property
    def grid_size(self) -> int:
        """Side of the code grid for ``image_size`` images (8 for the tiny preset)."""
        return self.image_size // self.factor


# ------------------------------------------------------------------------------------------------ building blocks


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels, eps=1e-6)


class ResBlock(nn.Module):
    """``x + f(x)`` with ``f`` = norm, SiLU, 3x3 conv, norm, SiLU, 3x3 conv; a 1x1 conv on the skip path when the
    width changes. The second conv starts at zero, so a fresh block is the identity (stable deep training)."""

    def __init__(self, in_channels: int, out_channels: int | None = None, groups: int = 8) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C_out, H, W)
        h = self.conv2(F.silu(self.norm2(h)))  # (B, C_out, H, W)
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over all positions of a feature map, with a residual connection."""

    def __init__(self, channels: int, groups: int = 8) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(B, 3, C, H * W).unbind(1)  # (B, 3C, H, W) -> 3 x (B, C, HW)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))  # (B, HW, C)
        return x + self.proj(out.transpose(1, 2).reshape(B, C, H, W))  # (B, HW, C) -> (B, C, H, W)


class Encoder(nn.Module):
    """Image in [-1, 1] (B, 3, S, S) -> continuous latents z (B, D, S/f, S/f), f = ``cfg.factor``."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        ch, g = cfg.channels, cfg.norm_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        layers: list[nn.Module] = []
        for i, c in enumerate(ch):
            layers += [ResBlock(c, groups=g) for _ in range(cfg.res_blocks)]
            if i < len(ch) - 1:
                layers.append(nn.Conv2d(c, ch[i + 1], 3, stride=2, padding=1))  # halve the side, widen
        if cfg.attention:
            layers += [AttentionBlock(ch[-1], g), ResBlock(ch[-1], groups=g)]
        self.body = nn.Sequential(*layers)
        self.norm_out = _norm(ch[-1], g)
        self.conv_out = nn.Conv2d(ch[-1], cfg.code_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.body(self.conv_in(x))  # (B, C_last, S/f, S/f)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, D, S/f, S/f)


class Decoder(nn.Module):
    """Quantised latents (B, D, h, w) -> image in [-1, 1] (approximately; not clamped) (B, 3, h*f, w*f)."""

    def __init__(self, cfg: VQGANConfig) -> None:
        super().__init__()
        ch, g = cfg.channels[::-1], cfg.norm_groups  # widest (lowest resolution) first
        blocks = cfg.decoder_res_blocks if cfg.decoder_res_blocks is not None else cfg.res_blocks
        self.conv_in = nn.Conv2d(cfg.code_dim, ch[0], 3, padding=1)
        layers: list[nn.Module] = []
        if cfg.attention:
            layers += [ResBlock(ch[0], groups=g), AttentionBlock(ch[0], g)]
        for i, c in enumerate(ch):
            layers += [ResBlock(c, groups=g) for _ in range(blocks)]
            if i < len(ch) - 1:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c, ch[i + 1], 3, padding=1)]
        self.body = nn.Sequential(*layers)
        self.norm_out = _norm(ch[-1], g)
        self.conv_out = nn.Conv2d(ch[-1], cfg.in_channels, 3, padding=1)

    def forward(self, z_q: Tensor) -> Tensor:
        h = self.body(self.conv_in(z_q))  # (B, C_first, h*f, w*f)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 3, h*f, w*f)


class PatchDiscriminator(nn.Module):
    """PatchGAN: a convolutional classifier whose output is a *grid* of logits, one per overlapping patch.

    Image in [0, 1] (B, 3, S, S) -> logits (B, 1, P, P) (P = 6 for 32 px and two stride-2 layers); positive means
    "looks real". Layers: 4x4 convs with stride 2 (``disc_layers`` of them), then two with stride 1; LeakyReLU
    and BatchNorm as in pix2pix.
    """

    def __init__(self, in_channels: int = 3, channels: int = 32, layers: int = 2) -> None:
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        c = channels
        for i in range(1, layers + 1):
            stride = 2 if i < layers else 1
            seq += [nn.Conv2d(c, 2 * c, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(2 * c),
                    nn.LeakyReLU(0.2)]
            c *= 2
        seq.append(nn.Conv2d(c, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*seq)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images * 2.0 - 1.0)  # (B, 1, P, P)


# ------------------------------------------------------------------------------------------------------ the model


class Encoded(NamedTuple):
    """What :meth:`VQGAN.encode` returns."""

    z_q: Tensor  # (B, D, h, w) quantised latents (straight-through gradient to the encoder)
    indices: Tensor  # (B, h, w) LongTensor: the image as code indices


class VQGANOutput(NamedTuple):
    """What :meth:`VQGAN.forward` returns (one training step needs all of it)."""

    reconstruction: Tensor  # (B, 3, H, W) in about [0, 1], NOT clamped (the loss needs gradients everywhere)
    indices: Tensor  # (B, h, w) chosen codes
    vq_loss: Tensor  # scalar: quantiser loss (codebook + commitment, or commitment only with EMA)
    perplexity: Tensor  # scalar: effective number of codes used in the batch
    usage: float  # fraction of the codebook used in the batch


def check_images(x: Any, factor: int = 1, in_channels: int = 3) -> Tensor:
    """Raise a clear error unless ``x`` is a float tensor (B, C, H, W) in [0, 1] with sides a multiple of ``factor``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a float tensor (B, {in_channels}, H, W) in [0, 1]; got {type(x).__name__} "
                        "(convert PIL images with mmcore.images.to_tensor)")
    if x.ndim == 3:
        raise ValueError(f"expected a batch (B, {in_channels}, H, W); got one image {tuple(x.shape)}: use x[None]")
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"expected images of shape (B, {in_channels}, H, W); got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"expected floating-point images in [0, 1]; got {x.dtype} (divide uint8 images by 255)")
    H, W = x.shape[-2:]
    if H % factor or W % factor or H == 0 or W == 0:
        raise ValueError(f"image sides must be positive multiples of {factor} (the downsampling factor); got {H} x {W}")
    if x.numel():
        lo, hi = x.min().item(), x.max().item()
        if not (lo >= -1e-3 and hi <= 1 + 1e-3):  # also catches NaN
            raise ValueError(f"image values must lie in [0, 1]; got [{lo:.3g}, {hi:.3g}] (0-255 images? divide by "
                             "255; CLIP-normalised images? undo the normalisation)")
    return x


class VQGAN(nn.Module):
    """Encoder + vector quantiser + decoder (+ the patch discriminator used in training). Images in [0, 1]."""

    def __init__(self, cfg: VQGANConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or VQGANConfig.tiny()
        for c in cfg.channels:
            if c % min(cfg.norm_groups, c):
                raise ValueError(f"every width in channels={cfg.channels} must be a multiple of norm_groups={cfg.norm_groups}")
        self.encoder = Encoder(cfg)
        self.quantizer = VectorQuantizer(cfg.num_codes, cfg.code_dim, cfg.beta, cfg.ema, cfg.ema_decay,
                                         cfg.restart_every, cfg.restart_threshold)
        self.decoder = Decoder(cfg)
        self.discriminator = PatchDiscriminator(cfg.in_channels, cfg.disc_channels, cfg.disc_layers)
        self.card: dict[str, Any] = {}  # a loaded checkpoint's card (command, metrics, history); {} when fresh

    # ---- the autoencoder

    def encode_continuous(self, x: Tensor) -> Tensor:
        """Images (B, 3, H, W) in [0, 1] -> encoder outputs before quantisation z (B, D, H/f, W/f)."""
        check_images(x, self.cfg.factor, self.cfg.in_channels)
        return self.encoder(x * 2.0 - 1.0)  # the network works on [-1, 1]

    def quantize(self, z: Tensor) -> Quantized:
        """Continuous latents z (B, D, h, w) -> :class:`mmcore.vq.Quantized` (z_q, indices, loss, statistics)."""
        return self.quantizer(z)

    def encode(self, x: Tensor) -> Encoded:
        """Images (B, 3, H, W) in [0, 1] -> ``Encoded(z_q (B, D, h, w), indices (B, h, w))``."""
        q = self.quantize(self.encode_continuous(x))
        return Encoded(q.z_q, q.indices)

    def decode_raw(self, z_q: Tensor) -> Tensor:
        """Latents (B, D, h, w) -> reconstruction (B, 3, h*f, w*f) in about [0, 1], *not* clamped."""
        if z_q.ndim != 4 or z_q.shape[1] != self.cfg.code_dim:
            raise ValueError(f"expected latents (B, {self.cfg.code_dim}, h, w); got {tuple(z_q.shape)}")
        return (self.decoder(z_q) + 1.0) * 0.5  # [-1, 1] -> [0, 1]

    def decode(self, z_q: Tensor) -> Tensor:
        """Latents (B, D, h, w) -> images (B, 3, h*f, w*f) clamped to [0, 1]."""
        return self.decode_raw(z_q).clamp(0.0, 1.0)

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Code indices (B, h, w) -> images (B, 3, h*f, w*f) in [0, 1]: how DALL-E's tokens become pixels."""
        return self.decode(self.quantizer.lookup(indices))

    def forward(self, x: Tensor) -> VQGANOutput:
        """Reconstruct ``x`` (B, 3, H, W) in [0, 1]; returns what a training step needs (:class:`VQGANOutput`)."""
        q = self.quantize(self.encode_continuous(x))
        return VQGANOutput(self.decode_raw(q.z_q), q.indices, q.loss, q.perplexity, q.usage)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, batch_size: int = 256) -> Tensor:
        """Encode and decode ``x`` in batches, without gradients -> images in [0, 1] (same shape as ``x``)."""
        return torch.cat([self.decode(self.encode(x[i : i + batch_size]).z_q) for i in range(0, len(x), batch_size)])

    # ---- helpers for training and saving

    @property
    def last_layer(self) -> Tensor:
        """The weight of the decoder's output convolution: where :func:`mmcore.vqgan_losses.adaptive_weight`
        compares the reconstruction and adversarial gradients."""
        return self.decoder.conv_out.weight

    def generator_parameters(self) -> Iterator[nn.Parameter]:
        """Encoder, quantiser (when it learns by gradient) and decoder parameters: what the generator optimises."""
        for module in (self.encoder, self.quantizer, self.decoder):
            yield from (p for p in module.parameters() if p.requires_grad)

    def num_parameters(self, discriminator: bool = False) -> int:
        """Parameter count of the autoencoder (and the discriminator, if asked)."""
        n = sum(p.numel() for m in (self.encoder, self.quantizer, self.decoder) for p in m.parameters())
        return n + (sum(p.numel() for p in self.discriminator.parameters()) if discriminator else 0)

    def save(self, path: str | os.PathLike, dtype: torch.dtype | None = None, **card: Any) -> Path:
        """Save as safetensors (floating tensors cast to ``dtype`` if given) with a JSON card holding the config
        (+ any ``card`` fields: command, metrics, ...)."""
        card = {"model": KIND, "config": self.cfg.to_dict(), **card}
        return save_checkpoint(path, self.state_dict(), card, dtype)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike) -> "VQGAN":
        """Load a file written by :meth:`save` (fp32, eval mode, on the CPU); its card is in ``model.card``."""
        sd, card = load_checkpoint(path)
        check_kind(card, path, KIND, "VQGAN")
        if "config" not in card:
            raise ValueError(f"{path} has no 'config' in its card: was it written by VQGAN.save?")
        model = cls(VQGANConfig.from_dict(card["config"]))
        check_tensors(sd, model.state_dict(), path)
        model.load_state_dict(sd)
        model.card = card
        return model.float().eval()


# ----------------------------------------------------------------------------------------------------- loading


# ------------------------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate_vqgan(model: VQGAN, images: Tensor | None = None, n: int = 1000, split: str = "test",
                   seed: int = EVAL_SEED, batch_size: int = 250) -> dict[str, float]:
    """Reconstruction PSNR (dB, mean over images) and codebook statistics over a set of images.

    ``images`` (N, 3, S, S) in [0, 1], or ``n`` images of ``split`` (:func:`mmcore.data.dataset_images`). Returns ``psnr``,
    ``l1``, ``usage`` (fraction of the codebook used at least once over all images), ``perplexity``.
    The model is put in eval mode (and left there).
    """
    model.eval()
    device = next(model.parameters()).device
    if images is None:
        images = dataset_images(n, split, seed, model.cfg.image_size)
    # channels-last, the layout the shipped checkpoints' numbers were measured with (convolutions round differently)
    images = images.contiguous(memory_format=torch.channels_last)  # (N, 3, S, S)
    psnrs, l1, counts = [], 0.0, torch.zeros(model.cfg.num_codes, device=device)
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device)  # (b, 3, S, S)
        z_q, indices = model.encode(x)
        x_hat = model.decode(z_q)  # (b, 3, S, S) in [0, 1]
        psnrs.append(psnr(x, x_hat, reduction="none"))
        l1 += (x - x_hat).abs().mean(dim=(1, 2, 3)).sum().item()
        counts += code_histogram(indices, model.cfg.num_codes)
    return {
        "psnr": torch.cat(psnrs).mean().item(),
        "l1": l1 / len(images),
        "usage": (counts > 0).float().mean().item(),
        "perplexity": perplexity(counts).item(),
    }


def available_models() -> list[str]:
    """Names :func:`load` knows without a path: the shipped VQGAN and its twin trained without the discriminator."""
    return ["shapes-vqgan", "shapes-vqgan-nogan"]


def load(name_or_path: str | os.PathLike = "shapes-vqgan", device: str | torch.device | None = None) -> VQGAN:
    """A shipped checkpoint (:func:`available_models`: ``data/checkpoints/``, no network) or a checkpoint path ->
    VQGAN in eval mode, float32, on ``device`` (default: :func:`mmcore.get_device`). Reading safetensors runs no code."""
    from . import get_device

    name = str(name_or_path) if str(name_or_path) in available_models() else "shapes-vqgan"
    path = resolve_checkpoint(name_or_path, name, CHECKPOINT_DIR / f"{name}.safetensors", "VQGAN",
                              "`python -m mmcore.train_vqgan` (see data/checkpoints/shapes-vqgan.md)")
    device = torch.device(device) if device is not None else get_device()
    return VQGAN.from_checkpoint(path).to(device=device, dtype=torch.float32).eval()
