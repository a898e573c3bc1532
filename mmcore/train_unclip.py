"""Training the course's unCLIP on Shapes: the embedding pool, the two loops, the judge's evaluation, the command line.

Before the first step an *embedding pool* is built once: ``pool_size`` fresh "train"-split Shapes images are rendered
(the same image stream as :mod:`mmcore.train_dalle`) and passed through the two frozen models unCLIP sits between:

* the tiny CLIP gives each image its unit **image embedding** (128 numbers), and a table holds the unit **text
  embedding** of every training caption (480 attribute combinations x every training template, English and Bengali);
* the VQGAN gives each image its 8 x 8 **codes**.

Then two small diffusion models are trained, one after the other (:mod:`mmcore.unclip`):

1. **the prior** learns text embedding -> image embedding: draw images, a random caption template each, noise the
   image embedding to a random time, predict the clean one (mean squared error); the caption is dropped to the
   null embedding 10% of the time (for guidance);
2. **the decoder** learns image embedding -> codes: noise the image's code vectors, predict its codes
   (cross-entropy); the image embedding is dropped 10% of the time.

Both use AdamW with a warm-up and cosine decay. With ``max_minutes`` the decoder's schedule is re-planned from the
measured speed so that it ends with the budget (the prior is fast: a fixed number of steps). At the end the whole
pipeline is judged (:func:`judge_unclip`): "a {colour} {shape}" prompts in English and Bengali, seen and held-out
compositions, with and without the prior, and image variations.

    python -m mmcore.train_unclip --max-minutes 30 --threads 2 --out data/checkpoints/shapes-unclip.safetensors

``--init-from CHECKPOINT`` continues an unCLIP checkpoint instead of starting fresh (the model sizes then come from
the checkpoint); with ``--prior-steps 0`` only the decoder trains, e.g. on a new pool (``--seed 1``) with a lower
learning rate::

    python -m mmcore.train_unclip --init-from data/checkpoints/shapes-unclip.safetensors --prior-steps 0 --seed 1 \
        --decoder-lr 3e-4 --warmup-steps 50 --max-minutes 30 --threads 2 --out runs/unclip-more.safetensors

Under ``MMCORE_QUICK=1`` only a few steps run (:meth:`UnCLIPTrainConfig.quick`).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from . import clip as clip_module
from . import get_device, judge as judge_module, quick_mode, set_seed
from . import vqgan as vqgan_module
from .data import HELDOUT, LANGS, ShapesDataset, WATCH_SEED, seen_pairs
from .pools import EmbeddingPool, build_embedding_pool, draw_prior_batch, text_embedding_table
from .training import (TimeBudget, add_config_arguments, config_from_args, cosine_schedule, cpu_threads,
                       default_threads, parameter_groups, print_summary, progress_bar, run_card, warmup_for)
from .unclip import (CodeDecoder, DecoderConfig, DiffusionPrior, PriorConfig, UnCLIP, UnCLIPSampleConfig, decode,
                     image_embeddings, sample_pair_images)

__all__ = [
    "UnCLIPTrainConfig",
    "UnCLIPHistory",
    "UnCLIPTrainResult",
    "evaluate_decoder",
    "judge_unclip",
    "judge_variations",
    "train_unclip",
    "main",
]


# ------------------------------------------------------------------------------------------------------ config


@dataclass
class UnCLIPTrainConfig:
    """Everything an unCLIP training run depends on. The defaults are the shipped model's recipe (a CPU run)."""

    prior_width: int = 256  # the prior's residual MLP width
    prior_depth: int = 4  # the prior's residual blocks
    decoder_width: int = 128  # the decoder transformer's width
    decoder_layers: int = 4  # the decoder transformer's blocks
    decoder_heads: int = 4  # the decoder transformer's attention heads
    pool_size: int = 100_000  # images in the embedding pool
    prior_steps: int = 4000  # prior optimisation steps
    prior_batch_size: int = 512  # prior: embeddings per step
    prior_lr: float = 1e-3  # prior: peak learning rate
    decoder_steps: int = 100_000  # decoder optimisation steps (at most; max_minutes usually stops earlier)
    decoder_batch_size: int = 128  # decoder: images per step
    decoder_lr: float = 1e-3  # decoder: peak learning rate
    max_minutes: float | None = None  # wall-time budget of the decoder loop; its cosine schedule ends with it
    min_lr_ratio: float = 0.05  # final learning rate = lr * min_lr_ratio
    warmup_steps: int = 200  # linear warm-up (at most a fifth of the planned run)
    weight_decay: float = 0.01  # AdamW decay of the weight matrices
    grad_clip: float = 1.0  # clip the gradient norm to this (0: off)
    drop_prob: float = 0.1  # probability that the condition is replaced by the null embedding (for guidance)
    prior_guidance: float = 2.0  # the checkpoint's default prior guidance scale
    decoder_guidance: float = 3.0  # the checkpoint's default decoder guidance scale
    seed: int = 0  # initialisation, the pool and the batch stream
    init_from: str | None = None  # continue training this unCLIP checkpoint instead of fresh models (see main doc)
    eval_images: int = 512  # images per evaluation split ("test", "heldout")
    eval_every: int = 500  # decoder loss on the evaluation images every this many steps (0: only at the end)
    final_eval_samples: int = 4  # judge fidelity at the end: images per prompt and language (0: skip the judge)
    history_every: int = 25  # keep every this many steps of the loss history
    device: str | None = None  # "cpu", "cuda", ... (None: mmcore.get_device())
    out: str | None = None  # checkpoint path (.safetensors, float16 weights); None: do not save
    threads: int | None = None  # torch CPU threads (None: all cores but one; restored afterwards)
    progress: bool = True  # show tqdm progress bars

    def quick(self) -> "UnCLIPTrainConfig":
        """A few steps of small models on a small pool: what ``MMCORE_QUICK=1`` (CI) runs instead."""
        return UnCLIPTrainConfig(**{**asdict(self), "prior_width": 64, "prior_depth": 1, "decoder_width": 32,
                                    "decoder_layers": 1, "decoder_heads": 2, "pool_size": 64,
                                    "prior_steps": min(self.prior_steps, 6), "decoder_steps": min(self.decoder_steps, 6),
                                    "prior_batch_size": 16, "decoder_batch_size": 8, "warmup_steps": 1,
                                    "eval_images": 16, "eval_every": 0, "final_eval_samples": 0, "max_minutes": None})


@dataclass
class UnCLIPHistory:
    """What a notebook plots: one entry per ``history_every`` steps of each loop, one per evaluation."""

    prior_step: list[int] = field(default_factory=list)
    prior_loss: list[float] = field(default_factory=list)  # mean squared error (mean over the window)
    decoder_step: list[int] = field(default_factory=list)
    decoder_loss: list[float] = field(default_factory=list)  # cross-entropy, nats per code (mean over the window)
    decoder_seconds: list[float] = field(default_factory=list)  # wall time since the decoder loop started
    eval_step: list[int] = field(default_factory=list)
    eval_test: list[float] = field(default_factory=list)  # decoder loss on "test" images
    eval_heldout: list[float] = field(default_factory=list)  # decoder loss on "heldout" images


class UnCLIPTrainResult(NamedTuple):
    model: UnCLIP  # the trained model (eval mode)
    history: UnCLIPHistory
    metrics: dict[str, float]
    path: Path | None


# ------------------------------------------------------------------------------------------------------- data


@torch.no_grad()
def evaluate_decoder(decoder: CodeDecoder, pool: EmbeddingPool, batch_size: int = 256, seed: int = 0) -> float:
    """Mean decoder cross-entropy (nats per code) over a pool, with fixed noise and times (no dropping)."""
    was_training = decoder.training
    decoder.eval()
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    for i in range(0, len(pool.codes), batch_size):
        codes = pool.codes[i : i + batch_size].long()  # (b, G*G)
        total += decoder.loss(codes, pool.image_emb[i : i + batch_size], 0.0, generator).item() * len(codes)
        count += len(codes)
    decoder.train(was_training)
    return total / max(1, count)


# ------------------------------------------------------------------------------------------------- evaluation


def judge_unclip(model: UnCLIP, judge: Any, pairs: Sequence[tuple[str, str]], n: int = 4, seed: int = 0,
                 langs: Sequence[str] = LANGS, use_prior: bool = True, **settings: Any) -> dict[str, float]:
    """Sample (:func:`mmcore.unclip.sample_pair_images`; ``settings`` may name the ``clip``, ``tokenizer`` and
    ``vqgan`` to use) and let ``judge`` referee (:meth:`mmcore.judge.Judge.report`)."""
    _, wanted, images = sample_pair_images(model, pairs, n, seed, langs, use_prior, **settings)
    return judge.report(images, wanted)


def judge_variations(model: UnCLIP, judge: Any, split: str, n_images: int = 24, per_image: int = 2,
                     seed: int = 77, clip: Any = None, vqgan: Any = None) -> dict[str, float]:
    """Make ``per_image`` variations of ``n_images`` Shapes pictures of ``split`` and let ``judge`` referee them
    against the source's shape and colour (:meth:`mmcore.judge.Judge.report`). ``clip``, ``vqgan``: default the
    shipped ones the card names."""
    data = ShapesDataset(split, n=n_images, image_size=32, seed=seed)
    images = [data[i][0] for i in range(n_images)]
    clip = clip if clip is not None else clip_module.load(model.card.get("clip", "shapes-tiny"), device=model.device)[0]
    emb = image_embeddings(images, clip).repeat_interleave(per_image, dim=0)  # (n * k, E)
    out = decode(emb, model, seed=0, vqgan=vqgan).pixels.view(n_images, per_image, 3, 32, 32)
    wanted = [{"shape": data.attributes[i]["shape"], "color": data.attributes[i]["color"]} for i in range(n_images)]
    return judge.report(out, wanted)


# ------------------------------------------------------------------------------------------------- training


def _loop(name: str, model: nn.Module, loss_fn: Any, steps: int, lr: float, cfg: UnCLIPTrainConfig,
          max_minutes: float | None, record: Any, after_step: Any = None) -> tuple[int, float]:
    """AdamW + warm-up + cosine over ``steps`` (re-planned to a wall-time budget if given); ``loss_fn(step)`` returns
    the loss of one batch; ``record(step, mean_loss, seconds)`` every ``history_every`` steps."""
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=lr, betas=(0.9, 0.99))
    clock = TimeBudget(max_minutes, steps)
    bar = progress_bar(steps, cfg.progress, name)
    window, step = 0.0, 0
    while step < steps:
        planned = clock.plan(step)
        if planned is None:  # the time budget is spent
            break
        current = lr * cosine_schedule(step, planned, warmup_for(planned, cfg.warmup_steps), cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = current
        loss = loss_fn(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        window += loss.item()
        step += 1
        if step % cfg.history_every == 0 or step == steps:
            k = step % cfg.history_every or min(step, cfg.history_every)
            record(step, window / k, clock.seconds())
            window = 0.0
            if bar is not None:
                bar.set_postfix({"loss": f"{loss.item():.3f}"}, refresh=False)
        if after_step is not None:
            after_step(step)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return step, clock.seconds()


def train_unclip(cfg: UnCLIPTrainConfig | None = None, clip: tuple[Any, Any] | None = None, vqgan: Any = None,
                 command: str | None = None) -> UnCLIPTrainResult:
    """Train an unCLIP prior and decoder on Shapes with ``cfg``; returns model, history, metrics, path.

    ``clip = (model, tokenizer)`` and ``vqgan``: the frozen models (default: the shipped "shapes-tiny" and
    "shapes-vqgan"). Under ``MMCORE_QUICK=1`` only a few steps run."""
    cfg = cfg or UnCLIPTrainConfig()
    if quick_mode():
        cfg = cfg.quick()
    with cpu_threads(cfg.threads or default_threads()):
        return _train_unclip(cfg, clip, vqgan, command)


def _train_unclip(cfg: UnCLIPTrainConfig, clip: tuple[Any, Any] | None, vqgan: Any,
                  command: str | None) -> UnCLIPTrainResult:
    device = torch.device(cfg.device) if cfg.device else get_device()
    command = command or ("mmcore.train_unclip.train_unclip("
                          + ", ".join(f"{k}={v!r}" for k, v in asdict(cfg).items()) + ")")
    set_seed(cfg.seed)
    t_setup = time.perf_counter()
    if clip is None:
        clip_model, _, clip_tokenizer = clip_module.load("shapes-tiny", device=device)
    else:
        clip_model, clip_tokenizer = clip
    clip_model = clip_model.to(device).eval()
    vqgan = (vqgan if vqgan is not None else vqgan_module.load("shapes-vqgan", device=device)).to(device).eval()
    E = clip_model.cfg.embed_dim
    codebook = vqgan.quantizer.codebook.detach().float()  # (K, D)
    if cfg.init_from:
        start = UnCLIP.from_checkpoint(cfg.init_from)
        prior, decoder = start.prior, start.decoder
        if prior.cfg.embed_dim != E or not torch.allclose(decoder.codebook, codebook.cpu(), atol=1e-2):
            raise ValueError(f"{cfg.init_from} was trained with another CLIP or VQGAN than the ones given here "
                             "(embedding size or codebook differ): it cannot continue with them")
    else:
        prior = DiffusionPrior(PriorConfig(embed_dim=E, width=cfg.prior_width, depth=cfg.prior_depth))
        decoder = CodeDecoder(DecoderConfig(embed_dim=E, num_codes=vqgan.cfg.num_codes, code_dim=vqgan.cfg.code_dim,
                                            grid_size=vqgan.cfg.grid_size, width=cfg.decoder_width,
                                            layers=cfg.decoder_layers, heads=cfg.decoder_heads,
                                            latent_scale=round(codebook.std().item(), 4)), codebook)
    model = UnCLIP(prior, decoder).to(device).train()
    model.sample_config = UnCLIPSampleConfig(prior_guidance=cfg.prior_guidance, decoder_guidance=cfg.decoder_guidance)

    pool = build_embedding_pool(clip_model, vqgan, cfg.pool_size, cfg.seed, "train")
    eval_pools = {split: build_embedding_pool(clip_model, vqgan, cfg.eval_images, WATCH_SEED, split)
                  for split in ("test", "heldout")}
    table = text_embedding_table(clip_model, clip_tokenizer)  # (480, T, E)
    setup_seconds = time.perf_counter() - t_setup
    history = UnCLIPHistory()
    generator = torch.Generator().manual_seed(cfg.seed)

    def prior_loss(step: int) -> Tensor:
        image, text = draw_prior_batch(pool, table, cfg.prior_batch_size, generator)
        return prior.loss(image, text, cfg.drop_prob)

    def prior_record(step: int, loss: float, seconds: float) -> None:
        history.prior_step.append(step)
        history.prior_loss.append(loss)

    prior_steps, prior_seconds = _loop("prior", prior, prior_loss, cfg.prior_steps, cfg.prior_lr, cfg, None,
                                       prior_record)

    def decoder_loss(step: int) -> Tensor:
        index = torch.randint(len(pool.codes), (cfg.decoder_batch_size,), generator=generator).to(device)
        return decoder.loss(pool.codes[index].long(), pool.image_emb[index], cfg.drop_prob)

    def decoder_record(step: int, loss: float, seconds: float) -> None:
        history.decoder_step.append(step)
        history.decoder_loss.append(loss)
        history.decoder_seconds.append(seconds)

    def decoder_eval(step: int) -> None:
        if cfg.eval_every and step % cfg.eval_every == 0:
            history.eval_step.append(step)
            history.eval_test.append(evaluate_decoder(decoder, eval_pools["test"]))
            history.eval_heldout.append(evaluate_decoder(decoder, eval_pools["heldout"]))

    decoder_steps, decoder_seconds = _loop("decoder", decoder, decoder_loss, cfg.decoder_steps, cfg.decoder_lr, cfg,
                                           cfg.max_minutes, decoder_record, decoder_eval)
    model.eval()
    metrics: dict[str, float] = {
        "test_decoder_loss": evaluate_decoder(decoder, eval_pools["test"]),
        "heldout_decoder_loss": evaluate_decoder(decoder, eval_pools["heldout"]),
        "prior_steps": float(prior_steps),
        "prior_minutes": prior_seconds / 60,
        "decoder_steps": float(decoder_steps),
        "decoder_minutes": decoder_seconds / 60,
        "setup_seconds": setup_seconds,
    }
    if cfg.final_eval_samples:
        referee = judge_module.load()
        helpers = {"clip": clip_model, "tokenizer": clip_tokenizer, "vqgan": vqgan}
        for name, pairs in (("seen", seen_pairs(12)), ("heldout", sorted(HELDOUT))):
            metrics[f"{name}_fidelity"] = judge_unclip(model, referee, pairs, cfg.final_eval_samples,
                                                       cfg.seed, **helpers)["fidelity"]
            metrics[f"{name}_fidelity_no_prior"] = judge_unclip(model, referee, pairs, cfg.final_eval_samples,
                                                                cfg.seed, use_prior=False, **helpers)["fidelity"]
        for split in ("test", "heldout"):
            metrics[f"{split}_variation_fidelity"] = judge_variations(model, referee, split, clip=clip_model,
                                                                      vqgan=vqgan)["fidelity"]
    path = None
    if cfg.out:
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        card = run_card(asdict(cfg), command, prior_seconds + decoder_seconds, metrics, asdict(history),
                        device=device_name, parameters=model.num_parameters())
        path = model.save(cfg.out, dtype=torch.float16, **card)  # float16 halves the file
    return UnCLIPTrainResult(model, history, metrics, path)


# ---------------------------------------------------------------------------------------------- command line

_OPTIONAL_TYPES = {"max_minutes": float, "out": str, "threads": int, "device": str, "init_from": str}


def _parser(entry: str = "mmcore.train_unclip") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {entry}", description=__doc__.split("\n\n")[0])
    return add_config_arguments(parser, UnCLIPTrainConfig, _OPTIONAL_TYPES)


def main(argv: Sequence[str] | None = None, entry: str = "mmcore.train_unclip") -> UnCLIPTrainResult:
    """``python -m mmcore.train_unclip [--option value ...]`` (``entry``: how it was invoked,
    ``"mmcore.train unclip"`` through :mod:`mmcore.train`; the card records the command as typed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = config_from_args(UnCLIPTrainConfig, vars(_parser(entry).parse_args(argv)))
    result = train_unclip(cfg, command=f"python -m {entry} {shlex.join(argv)}")
    print(f"parameters: {result.model.num_parameters():,}")
    print_summary(result.metrics, result.path)
    return result


if __name__ == "__main__":
    main()
