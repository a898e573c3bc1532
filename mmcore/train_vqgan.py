"""Training the course's VQGAN on Shapes images: the loop, its evaluation, and the command line.

One training step, in words:

1. draw a batch of fresh training images (image *i* of step *s* is a pure function of (seed, *s*, *i*): the
   data never repeats, and no data loader is needed) as float tensors in [0, 1];
2. **generator step**: encode, quantise, decode; the loss is L1 reconstruction + the quantiser's loss, and -
   after the delayed start - ``disc_weight * lambda * hinge_g(D(x_hat))`` with the adaptive weight ``lambda``
   (:mod:`mmcore.vqgan_losses`); one Adam step on the encoder and decoder (an EMA codebook moves by itself);
3. **discriminator step** (only once the adversarial term is on): hinge loss on real images vs the (detached)
   reconstructions; one Adam step on the patch discriminator.

``disc_weight=0`` trains the same model *without* the adversarial loss (a VQ-VAE): lesson 03 trains a short run
of each and shows them side by side. ``disc_start`` is a fraction of the run: with 0.5 the first half is a plain
VQ-VAE, then the discriminator joins.

Use it from Python (``train_vqgan(VQGANTrainConfig(steps=300))``) or from the command line (every
:class:`VQGANTrainConfig` field is an option)::

    python -m mmcore.train_vqgan --steps 3000 --out runs/vqgan.safetensors

The shipped ``data/checkpoints/shapes-vqgan.safetensors`` came from the command in its card
(``data/checkpoints/shapes-vqgan.md``). At the end the run measures reconstruction PSNR and codebook usage on
1,000 ``"test"`` images (:func:`mmcore.vqgan.evaluate_vqgan`) and stores them in the checkpoint's card. Under
``MMCORE_QUICK=1`` only a few steps run (:meth:`VQGANTrainConfig.quick`).
"""
from __future__ import annotations

import argparse
import random
import shlex
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from . import get_device, quick_mode, set_seed
from .data import WATCH_SEED, dataset_images, render, sample_attributes
from .images import to_tensor
from .training import (TimeBudget, add_config_arguments, autocast, config_from_args, cosine_schedule, cpu_threads,
                       default_threads, print_summary, progress_bar, run_card, warmup_for)
from .vqgan import VQGAN, VQGANConfig, evaluate_vqgan
from .vqgan_losses import generator_loss, hinge_d_loss

__all__ = [
    "VQGANTrainConfig",
    "VQGANHistory",
    "VQGANTrainResult",
    "train_images",
    "train_vqgan",
    "main",
]


# ------------------------------------------------------------------------------------------------------ config


@dataclass
class VQGANTrainConfig:
    """Everything a VQGAN training run depends on. The defaults are the shipped model's recipe."""

    preset: str = "tiny"  # VQGANConfig preset (a classmethod name)
    steps: int = 3000  # optimisation steps (at most; max_minutes may stop earlier)
    max_minutes: float | None = None  # safety stop after this many minutes (the schedule still assumes `steps`)
    batch_size: int = 32  # images per step
    lr: float = 1e-3  # peak learning rate of the generator (encoder + decoder, + codebook without EMA)
    min_lr_ratio: float = 0.05  # final learning rate = lr * min_lr_ratio (end of the cosine)
    warmup_steps: int = 100  # linear warm-up from 0 to lr
    betas: tuple[float, float] = (0.5, 0.9)  # Adam moment decay rates (the usual GAN setting)
    grad_clip: float = 1.0  # clip the generator's gradient norm to this (0: off)
    disc_weight: float = 0.1  # weight of the adversarial term (0: no discriminator, a plain VQ-VAE)
    disc_start: float = 0.5  # the adversarial term (and discriminator training) starts at this fraction of the run
    disc_lr: float = 2e-4  # learning rate of the discriminator (constant)
    adaptive: bool = True  # scale the adversarial gradient by the adaptive weight (gradient-norm ratio)
    seed: int = 0  # model initialisation and the data stream
    eval_every: int = 500  # PSNR and usage on eval_images test images every this many steps (0: only at the end)
    eval_images: int = 200  # test images in that evaluation
    final_eval_images: int = 1000  # test images in the final evaluation (stored in the card)
    channels_last: bool = True  # channels-last memory format (faster convolutions on CPU)
    history_every: int = 10  # keep every this many steps of the loss history in the card
    out: str | None = None  # checkpoint path (.safetensors); None: do not save
    threads: int | None = None  # torch CPU threads during training (None: all cores but one; restored afterwards)
    progress: bool = True  # show a tqdm progress bar

    def quick(self) -> "VQGANTrainConfig":
        """A few steps on a small batch: what ``MMCORE_QUICK=1`` (CI) runs instead."""
        return VQGANTrainConfig(**{**asdict(self), "steps": min(self.steps, 6), "batch_size": min(self.batch_size, 8),
                                   "warmup_steps": 1, "eval_every": 0, "eval_images": 16, "final_eval_images": 48,
                                   "max_minutes": None})


@dataclass
class VQGANHistory:
    """What a notebook plots: one entry per step for the losses, one per evaluation for PSNR and usage."""

    step: list[int] = field(default_factory=list)  # step number of each entry
    reconstruction: list[float] = field(default_factory=list)  # L1 reconstruction loss
    vq: list[float] = field(default_factory=list)  # quantiser loss
    adversarial: list[float] = field(default_factory=list)  # generator hinge loss (0 before the start)
    adversarial_weight: list[float] = field(default_factory=list)  # disc_weight * adaptive weight actually applied
    discriminator: list[float] = field(default_factory=list)  # discriminator hinge loss (0 before the start)
    perplexity: list[float] = field(default_factory=list)  # effective number of codes in the batch
    usage: list[float] = field(default_factory=list)  # fraction of codes used in the batch
    lr: list[float] = field(default_factory=list)  # generator learning rate
    seconds: list[float] = field(default_factory=list)  # wall time since the start
    eval_step: list[int] = field(default_factory=list)  # step number of each evaluation
    eval_psnr: list[float] = field(default_factory=list)  # test PSNR (dB)
    eval_usage: list[float] = field(default_factory=list)  # codebook usage over the evaluation images

    def every(self, n: int) -> dict[str, list]:
        """The history with only every ``n``-th step entry (and the last one); evaluations all kept."""
        d = asdict(self)
        keep = [i for i in range(len(self.step)) if (i + 1) % n == 0 or i == len(self.step) - 1]
        for key in ("step", "reconstruction", "vq", "adversarial", "adversarial_weight", "discriminator",
                    "perplexity", "usage", "lr", "seconds"):
            d[key] = [d[key][i] for i in keep]
        return d


class VQGANTrainResult(NamedTuple):
    model: VQGAN  # the trained model (eval mode)
    history: VQGANHistory
    metrics: dict[str, float]  # the final evaluation
    path: Path | None  # where the checkpoint was saved, if anywhere


# ------------------------------------------------------------------------------------------------------ data


def train_images(seed: int, step: int, batch_size: int, image_size: int = 32) -> Tensor:
    """The training images of step ``step``: (batch_size, 3, S, S) in [0, 1] (channels-last), fresh "train"-split
    renders."""
    images = []
    for i in range(batch_size):
        rng = random.Random(f"vqgan:{seed}:{step}:{i}")
        images.append(render(sample_attributes(rng, "train"), image_size, rng))
    return to_tensor(images).contiguous(memory_format=torch.channels_last)  # (batch_size, 3, S, S)


# ------------------------------------------------------------------------------------------------- training


def train_vqgan(cfg: VQGANTrainConfig | None = None, model: VQGAN | None = None, command: str | None = None,
                device: str | torch.device | None = None) -> VQGANTrainResult:
    """Train a VQGAN on Shapes with ``cfg`` (default :class:`VQGANTrainConfig`); returns model, history, metrics, path.

    ``model``: continue training this model instead of a fresh ``VQGANConfig.<preset>()`` one. Under
    ``MMCORE_QUICK=1`` only a few steps run. On the CPU a run with a fixed ``seed``, thread count and no
    ``max_minutes`` is deterministic.
    """
    cfg = cfg or VQGANTrainConfig()
    if quick_mode():
        cfg = cfg.quick()
    with cpu_threads(cfg.threads or default_threads()):
        return _train_vqgan(cfg, model, command, device)


def _train_vqgan(cfg: VQGANTrainConfig, model: VQGAN | None, command: str | None,
                 device: str | torch.device | None) -> VQGANTrainResult:
    device = torch.device(device) if device is not None else get_device()
    command = command or "mmcore.train_vqgan.train_vqgan(" + ", ".join(f"{k}={v!r}" for k, v in asdict(cfg).items()) + ")"
    set_seed(cfg.seed)
    if model is None:
        model = VQGAN(getattr(VQGANConfig, cfg.preset)())
    model = model.to(device).train()
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    opt_g = torch.optim.Adam(list(model.generator_parameters()), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
    eval_set = dataset_images(cfg.eval_images, "test", WATCH_SEED, model.cfg.image_size) if cfg.eval_every else None

    history = VQGANHistory()
    bar = progress_bar(cfg.steps, cfg.progress, "VQGAN")
    clock = TimeBudget(cfg.max_minutes, cfg.steps)  # the schedule's length is re-planned from the measured speed
    step = 0
    while step < cfg.steps:
        planned = clock.plan(step)
        if planned is None:  # the time budget is spent
            break
        lr = cfg.lr * cosine_schedule(step, planned, warmup_for(planned, cfg.warmup_steps), cfg.min_lr_ratio)
        for group in opt_g.param_groups:
            group["lr"] = lr
        disc_weight = cfg.disc_weight if step >= int(cfg.disc_start * planned) else 0.0  # the delayed start

        x = train_images(cfg.seed, step, cfg.batch_size, model.cfg.image_size).to(device)  # (B, 3, S, S)
        x = x.contiguous(memory_format=memory_format)
        # generator step: reconstruction + quantiser (+ adversarial) loss
        model.discriminator.requires_grad_(False)  # its gradients are not needed here
        with autocast(device):
            out = model(x)
            logits_fake = model.discriminator(out.reconstruction) if disc_weight > 0 else None
        g = generator_loss(x, out.reconstruction.float(), out.vq_loss, None if logits_fake is None else logits_fake.float(),
                           model.last_layer if cfg.adaptive else None, disc_weight)
        opt_g.zero_grad(set_to_none=True)
        g.total.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.generator_parameters(), cfg.grad_clip)
        opt_g.step()
        # discriminator step: real images above +1, reconstructions below -1
        d_loss = torch.zeros(())
        if disc_weight > 0:
            model.discriminator.requires_grad_(True)
            with autocast(device):
                logits_real = model.discriminator(x)
                logits_fake = model.discriminator(out.reconstruction.detach())
            d_loss = hinge_d_loss(logits_real.float(), logits_fake.float())
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        step += 1

        history.step.append(step)
        history.reconstruction.append(g.reconstruction.item())
        history.vq.append(g.vq.item())
        history.adversarial.append(g.adversarial.item())
        history.adversarial_weight.append(float(g.adversarial_weight))
        history.discriminator.append(d_loss.item())
        history.perplexity.append(out.perplexity.item())
        history.usage.append(out.usage)
        history.lr.append(lr)
        history.seconds.append(clock.seconds())
        if eval_set is not None and cfg.eval_every and step % cfg.eval_every == 0:
            m = evaluate_vqgan(model, eval_set)
            model.train()
            history.eval_step.append(step)
            history.eval_psnr.append(m["psnr"])
            history.eval_usage.append(m["usage"])
        if bar is not None:
            shown = {"l1": f"{g.reconstruction.item():.4f}", "ppl": f"{out.perplexity.item():.0f}"}
            if disc_weight > 0:
                shown["d"] = f"{d_loss.item():.3f}"
            if history.eval_psnr:
                shown["psnr"] = f"{history.eval_psnr[-1]:.1f}"
            bar.set_postfix(shown, refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()
    seconds = clock.seconds()
    model = model.to(memory_format=torch.contiguous_format).eval()
    metrics = {f"test_{k}": v for k, v in evaluate_vqgan(model, n=cfg.final_eval_images).items()}
    if cfg.final_eval_images >= 100:
        heldout = evaluate_vqgan(model, n=cfg.final_eval_images // 2, split="heldout")
        metrics["heldout_psnr"] = heldout["psnr"]
    metrics["steps"] = float(step)
    metrics["train_minutes"] = seconds / 60
    path = None
    if cfg.out:
        card = run_card(asdict(cfg), command, seconds, metrics, history.every(max(1, cfg.history_every)), step=step,
                        parameters=model.num_parameters())
        path = model.save(cfg.out, **card)
    return VQGANTrainResult(model, history, metrics, path)


# ---------------------------------------------------------------------------------------------- command line

_OPTIONAL_TYPES = {"max_minutes": float, "out": str, "threads": int}  # fields whose default is None


def _parser(entry: str = "mmcore.train_vqgan") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {entry}", description=__doc__.split("\n\n")[0])
    return add_config_arguments(parser, VQGANTrainConfig, _OPTIONAL_TYPES)


def main(argv: Sequence[str] | None = None, entry: str = "mmcore.train_vqgan") -> VQGANTrainResult:
    """``python -m mmcore.train_vqgan [--option value ...]`` (``entry``: how it was invoked,
    ``"mmcore.train vqgan"`` through :mod:`mmcore.train`; the card records the command as typed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = vars(_parser(entry).parse_args(argv))
    cfg = config_from_args(VQGANTrainConfig, args)
    result = train_vqgan(cfg, command=f"python -m {entry} {shlex.join(argv)}")
    print_summary(result.metrics, result.path)
    return result


if __name__ == "__main__":
    main()
