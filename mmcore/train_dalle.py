"""Training the course's DALL-E on Shapes: the code pool, the loop, the judge's evaluation, and the command line.

Before the first step, a *code pool* is built once: ``pool_size`` fresh "train"-split Shapes images (image *i* is a
pure function of (seed, *i*)) are rendered and encoded by the frozen VQGAN into 8 x 8 codes (on the GPU when
training there). Only the codes and each image's attributes are kept: a few bytes per image. A caption table holds
the tokens of every training template (:data:`mmcore.data.TRAIN_TEMPLATES`, 20 English and their 20 Bengali twins)
for every attribute combination, so captions cost
nothing per step. One training step, in words:

1. draw ``batch_size`` pool entries and, for each, one of the 40 caption templates at random (so the same image
   is described in both languages and with or without its size and position);
2. with probability ``null_caption_prob`` replace the caption by the null caption (``[start] [end]``): the same
   network learns to draw without a caption, which classifier-free guidance needs at sampling time;
3. teacher forcing through the causal transformer; :func:`mmcore.dalle.dalle_loss` weights the text loss 1 and the
   image loss 7 (the DALL-E paper's 1 : 7);
4. backward, clip the gradient norm, one AdamW step (weight decay on weight matrices only) with a cosine schedule.
   On CUDA the forward runs in bfloat16 autocast and matrix multiplies may use TF32.

Every ``eval_every`` steps the image loss is measured on fixed "test" (seen compositions) and "heldout" images.
At the end :func:`judge_fidelity` samples images for "a {colour} {shape}" prompts and asks the independent judge
(:mod:`mmcore.judge`) whether they show what was asked; the numbers go into the checkpoint's card.

Use it from Python (``train_dalle(DALLETrainConfig(max_minutes=2))``) or from the command line (every
:class:`DALLETrainConfig` field is an option)::

    python -m mmcore.train_dalle --device cuda --max-minutes 2.5 --final-eval-samples 0 --eval-every 1000 \\
        --out data/checkpoints/shapes-dalle.safetensors --no-progress    # the shipped model (make checkpoints)
    python -m mmcore.train_dalle --device cpu --threads 1 --preset small --batch-size 32 --pool-size 20000 \\
        --max-minutes 3 --out runs/dalle-cpu.safetensors          # a laptop try: the loss falls, samples are poor

Measured (``tiny`` preset, the shipped size, 5.6 M parameters): on one H200, 60 steps/s at batch 512 (bfloat16, no compile) and
about 30 s to build the 2 M-image pool; a 2.5-minute run reached an image loss of 0.98 nats per code on "test"
images (1.02 on held-out compositions) and a judge fidelity above 90% on both. On a 2-core laptop CPU (one
thread, batch 32) it makes 0.6 steps/s: enough to watch the loss fall, not to train the shipped model.

With ``max_minutes`` the cosine schedule is re-planned from the measured speed so that it ends when the budget
does. Under ``MMCORE_QUICK=1`` only a few steps run (:meth:`DALLETrainConfig.quick`).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor, nn

from . import dalle as dalle_module
from . import get_device, judge as judge_module, quick_mode, set_seed
from . import vqgan as vqgan_module
from .dalle import DALLE, DALLEConfig, SampleConfig, dalle_loss, rerank_images, sample_pair_images
from .data import HELDOUT, LANGS, TRAIN_TEMPLATES, WATCH_SEED, seen_pairs
from .pools import CodePool, build_code_pool, caption_table, draw_code_batch
from .tokenizer import BPETokenizer
from .training import (TimeBudget, add_config_arguments, autocast, config_from_args, cosine_schedule, cpu_threads,
                       default_threads, parameter_groups, print_summary, progress_bar, run_card, warmup_for)

__all__ = [
    "DALLETrainConfig",
    "DALLEHistory",
    "DALLETrainResult",
    "evaluate_loss",
    "judge_fidelity",
    "train_dalle",
    "main",
]


# ------------------------------------------------------------------------------------------------------ config


@dataclass
class DALLETrainConfig:
    """Everything a DALL-E training run depends on. The defaults are the shipped model's recipe (a CUDA run)."""

    preset: str = "tiny"  # DALLEConfig preset (a classmethod name: tiny = the shipped size, small, toy)
    text_length: int = 16  # text positions of the model ([start] + up to 14 tokens + [end])
    steps: int = 100_000  # optimisation steps (at most; max_minutes usually stops earlier)
    max_minutes: float | None = None  # wall-time budget of the loop; the cosine schedule then ends with the budget
    batch_size: int = 512  # sequences per step (on a CPU use 32-64)
    lr: float = 1e-3  # peak learning rate
    min_lr_ratio: float = 0.05  # final learning rate = lr * min_lr_ratio
    warmup_steps: int = 200  # linear warm-up from 0 to lr (at most a fifth of the planned run)
    weight_decay: float = 0.05  # AdamW decay of the weight matrices (not of embeddings, gains, biases)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW moment decay rates (GPT-style)
    grad_clip: float = 1.0  # clip the gradient norm to this (0: off)
    text_weight: float = 1.0  # weight of the text loss (the paper: 1 ...)
    image_weight: float = 7.0  # ... to 7 for the image loss
    null_caption_prob: float = 0.15  # probability that a caption is replaced by the null caption (for guidance)
    framed_captions: int = 0  # per attribute combination, this many extra captions with everyday words around them
    pool_size: int | None = None  # images in the code pool (None: 2,000,000 on CUDA, 20,000 elsewhere)
    pool_batch: int = 1024  # images encoded by the VQGAN at once while building the pool
    render_workers: int = 0  # processes that render the pool's images (0: all cores but one, at most 16; 1: none)
    seed: int = 0  # model initialisation, the pool and the batch stream
    init_from: str | None = None  # fine-tune: start from this DALL-E checkpoint ("shapes-dalle" or a path)
    eval_every: int = 500  # image loss on the evaluation images every this many steps (0: only at the end)
    eval_images: int = 512  # images per evaluation split ("test" and "heldout")
    final_eval_samples: int = 8  # judge fidelity at the end: images per prompt (0: skip the judge)
    guidance_scale: float = 1.5  # the checkpoint's default guidance scale for sampling (and the final evaluation)
    top_k: int = 32  # the checkpoint's default top-k for sampling (0: none)
    rerank_by: str = "clip+likelihood"  # the checkpoint's default re-ranking score (mmcore.dalle.rerank_scores)
    compile: bool = False  # torch.compile the model (CUDA: faster steps after about a minute of compiling)
    history_every: int = 25  # keep every this many steps of the loss history (also: how often the loss is read)
    device: str | None = None  # "cpu", "cuda", ... (None: mmcore.get_device())
    out: str | None = None  # checkpoint path (.safetensors, float16 weights); None: do not save
    threads: int | None = None  # torch CPU threads during training (None: all cores but one; restored afterwards)
    progress: bool = True  # show a tqdm progress bar

    def quick(self) -> "DALLETrainConfig":
        """A few steps of a tiny model on a small pool: what ``MMCORE_QUICK=1`` (CI) runs instead."""
        return DALLETrainConfig(**{**asdict(self), "preset": "toy", "steps": min(self.steps, 6),
                                   "batch_size": min(self.batch_size, 8), "warmup_steps": 1, "pool_size": 64,
                                   "eval_every": 0, "eval_images": 16, "final_eval_samples": 0, "max_minutes": None,
                                   "compile": False})


@dataclass
class DALLEHistory:
    """What a notebook plots: one entry per ``history_every`` steps for the losses, one per evaluation."""

    step: list[int] = field(default_factory=list)  # step number of each entry
    loss: list[float] = field(default_factory=list)  # weighted total loss (mean over the last history_every steps)
    text: list[float] = field(default_factory=list)  # text cross-entropy (same averaging)
    image: list[float] = field(default_factory=list)  # image cross-entropy, nats per code (same averaging)
    lr: list[float] = field(default_factory=list)  # learning rate at that step
    seconds: list[float] = field(default_factory=list)  # wall time since the start of the loop
    eval_step: list[int] = field(default_factory=list)  # step number of each evaluation
    eval_test: list[float] = field(default_factory=list)  # image loss on "test" images (seen compositions)
    eval_heldout: list[float] = field(default_factory=list)  # image loss on "heldout" images


class DALLETrainResult(NamedTuple):
    model: DALLE  # the trained model (eval mode)
    history: DALLEHistory
    metrics: dict[str, float]  # the final evaluation
    path: Path | None  # where the checkpoint was saved, if anywhere


# ------------------------------------------------------------------------------------------------------- data

@torch.no_grad()
def evaluate_loss(model: DALLE, pool: CodePool, table: Tensor, batch_size: int = 256) -> float:
    """Mean image cross-entropy (nats per code) over a pool, each image captioned with template ``i % T``."""
    was_training = model.training
    model.eval()
    device = pool.codes.device
    total, count = 0.0, 0
    for i in range(0, len(pool.codes), batch_size):
        codes = pool.codes[i : i + batch_size].long()  # (b, G*G)
        template = torch.arange(i, i + len(codes), device=device) % table.shape[1]  # (b,)
        text = table[pool.combos[i : i + batch_size], template]  # (b, Lt)
        with autocast(device):
            loss = model.loss(text, codes)
        total += loss.image.item() * len(codes)
        count += len(codes)
    model.train(was_training)
    return total / max(1, count)


# ------------------------------------------------------------------------------------------------- evaluation


def judge_fidelity(model: DALLE, judge: Any, pairs: Sequence[tuple[str, str]], n: int = 8, rerank: int | None = None,
                   seed: int = 0, langs: Sequence[str] = LANGS, rerank_by: str = "clip",
                   **settings: Any) -> dict[str, float]:
    """Sample ``n`` images per (shape, colour) prompt and language (:func:`sample_pair_images`; ``settings`` may
    name the ``vqgan``), keep the best
    ``rerank`` by ``rerank_by`` if given (:func:`rerank_images`), and let ``judge`` referee them
    (:meth:`mmcore.judge.Judge.report`)."""
    prompts, wanted, images, codes = sample_pair_images(model, pairs, n, seed, langs, **settings)
    if rerank is not None:
        images = rerank_images(model, prompts, images, codes, rerank, rerank_by)
    return judge.report(images, wanted)


# ------------------------------------------------------------------------------------------------- training


def train_dalle(cfg: DALLETrainConfig | None = None, model: DALLE | None = None, vqgan: Any = None,
                command: str | None = None) -> DALLETrainResult:
    """Train a DALL-E on Shapes with ``cfg`` (default :class:`DALLETrainConfig`); returns model, history, metrics, path.

    ``cfg.init_from``: fine-tune a saved checkpoint (e.g. on the phrasings added to the caption templates).
    ``model``: continue training this model instead of a fresh ``DALLEConfig.<preset>()`` one. ``vqgan``: the image
    tokenizer (default: the shipped ``"shapes-vqgan"``). Under ``MMCORE_QUICK=1`` only a few steps run. On the CPU
    a run with a fixed ``seed``, thread count and no ``max_minutes`` is deterministic.
    """
    cfg = cfg or DALLETrainConfig()
    if quick_mode():
        cfg = cfg.quick()
    with cpu_threads(cfg.threads or default_threads()):
        return _train_dalle(cfg, model, vqgan, command)


def _train_dalle(cfg: DALLETrainConfig, model: DALLE | None, vqgan: Any, command: str | None) -> DALLETrainResult:
    device = torch.device(cfg.device) if cfg.device else get_device()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    command = command or ("mmcore.train_dalle.train_dalle("
                          + ", ".join(f"{k}={v!r}" for k, v in asdict(cfg).items()) + ")")
    set_seed(cfg.seed)
    t_setup = time.perf_counter()
    vqgan = (vqgan if vqgan is not None else vqgan_module.load("shapes-vqgan", device=device)).to(device).eval()
    tokenizer = BPETokenizer.course()
    if model is None and cfg.init_from:
        model = dalle_module.load(cfg.init_from, device="cpu")  # its config wins over preset and text_length
    if model is None:
        model = DALLE(getattr(DALLEConfig, cfg.preset)(
            text_vocab_size=tokenizer.vocab_size, text_length=cfg.text_length, sot_token=tokenizer.sot_token,
            eot_token=tokenizer.eot_token, num_codes=vqgan.cfg.num_codes, grid_size=vqgan.cfg.grid_size))
    model.sample_config = SampleConfig(guidance_scale=cfg.guidance_scale, top_k=cfg.top_k or None,
                                       rerank_by=cfg.rerank_by)
    model = model.to(device).train()
    mcfg = model.cfg

    workers = cfg.render_workers or min(16, max(1, (os.cpu_count() or 1) - 1))
    # a 5-minute CUDA run sees ~9 M sequences: a 200 k pool was seen 45 times and over-fitted (test loss rose again
    # after a third of the run while the training loss kept falling); 2 M images (~6 passes) take ~30 s to build
    pool_size = cfg.pool_size or (2_000_000 if device.type == "cuda" else 20_000)
    pool = build_code_pool(vqgan, pool_size, cfg.seed, "train", cfg.pool_batch, workers, device)
    eval_pools = {split: build_code_pool(vqgan, cfg.eval_images, WATCH_SEED, split, cfg.pool_batch, 1, device)
                  for split in ("test", "heldout")}
    table = caption_table(tokenizer, mcfg.text_length, mcfg.pad_token, cfg.framed_captions,
                          cfg.seed).to(device)  # (480, T + F, Lt)
    eval_table = table[:, : sum(len(ts) for ts in TRAIN_TEMPLATES.values())]  # the plain templates: comparable runs
    null_text = model.null_text(1, device)[0]  # (Lt,)
    setup_seconds = time.perf_counter() - t_setup

    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, **fused)
    step_model = torch.compile(model) if cfg.compile else model
    generator = torch.Generator(device=device).manual_seed(cfg.seed)

    history = DALLEHistory()
    bar = progress_bar(cfg.steps, cfg.progress, "DALL-E")
    sums = torch.zeros(3, device=device)  # running sums of (total, text, image) since the last history entry
    clock = TimeBudget(cfg.max_minutes, cfg.steps)  # the schedule's length is re-planned from the measured speed
    step = 0
    while step < cfg.steps:
        planned = clock.plan(step)
        if planned is None:  # the time budget is spent
            break
        warmup = warmup_for(planned, cfg.warmup_steps)
        lr = cfg.lr * cosine_schedule(step, planned, warmup, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr

        text, codes = draw_code_batch(pool, table, cfg.batch_size, null_text, cfg.null_caption_prob, generator)
        with autocast(device):
            out = step_model(text, codes)
        loss = dalle_loss(out.text_logits, text[:, 1:], out.image_logits, codes, cfg.text_weight, cfg.image_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        sums += torch.stack([loss.total.detach(), loss.text.detach(), loss.image.detach()])
        step += 1

        if step % cfg.history_every == 0 or step == cfg.steps:
            n = step - (history.step[-1] if history.step else 0)
            total, text_l, image_l = (sums / n).tolist()  # one device sync per history entry
            sums.zero_()
            history.step.append(step)
            history.loss.append(total)
            history.text.append(text_l)
            history.image.append(image_l)
            history.lr.append(lr)
            history.seconds.append(clock.seconds())
            if bar is not None:
                bar.set_postfix({"loss": f"{total:.3f}", "img": f"{image_l:.3f}"}, refresh=False)
        if cfg.eval_every and step % cfg.eval_every == 0:
            history.eval_step.append(step)
            history.eval_test.append(evaluate_loss(model, eval_pools["test"], eval_table))
            history.eval_heldout.append(evaluate_loss(model, eval_pools["heldout"], eval_table))
            if bar is not None:
                bar.set_postfix({"loss": f"{history.loss[-1]:.3f}" if history.loss else "-",
                                 "test": f"{history.eval_test[-1]:.3f}"}, refresh=False)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    seconds = clock.seconds()
    if history.step and history.step[-1] != step and step > history.step[-1]:  # the last partial window
        n = step - history.step[-1]
        total, text_l, image_l = (sums / n).tolist()
        history.step.append(step)
        history.loss.append(total)
        history.text.append(text_l)
        history.image.append(image_l)
        history.lr.append(lr)
        history.seconds.append(seconds)
    model.eval()
    metrics: dict[str, float] = {
        "test_image_loss": evaluate_loss(model, eval_pools["test"], eval_table),
        "heldout_image_loss": evaluate_loss(model, eval_pools["heldout"], eval_table),
        "steps": float(step),
        "train_minutes": seconds / 60,
        "setup_seconds": setup_seconds,
        "steps_per_second": step / max(seconds, 1e-9),
    }
    if cfg.final_eval_samples:
        referee = judge_module.load()
        for name, pairs in (("seen", seen_pairs(12)), ("heldout", sorted(HELDOUT))):
            prompts, wanted, images, codes = sample_pair_images(model, pairs, cfg.final_eval_samples, seed=cfg.seed,
                                                                vqgan=vqgan)
            metrics[f"{name}_fidelity"] = referee.report(images, wanted)["fidelity"]
            for rerank_by in ("clip", "clip+likelihood"):
                best = rerank_images(model, prompts, images, codes, 1, rerank_by)
                metrics[f"{name}_fidelity_rerank1_{rerank_by.replace('+', '_')}"] = referee.report(best,
                                                                                                 wanted)["fidelity"]
    path = None
    if cfg.out:
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        card = run_card(asdict(cfg), command, seconds, metrics, asdict(history), step=step, device=device_name,
                        parameters=model.num_parameters())
        path = model.save(cfg.out, dtype=torch.float16, **card)  # float16 halves the file
    return DALLETrainResult(model, history, metrics, path)


# ---------------------------------------------------------------------------------------------- command line

_OPTIONAL_TYPES = {"max_minutes": float, "out": str, "threads": int, "pool_size": int, "device": str,
                   "init_from": str}


def _parser(entry: str = "mmcore.train_dalle") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {entry}", description=__doc__.split("\n\n")[0])
    return add_config_arguments(parser, DALLETrainConfig, _OPTIONAL_TYPES)


def main(argv: Sequence[str] | None = None, entry: str = "mmcore.train_dalle") -> DALLETrainResult:
    """``python -m mmcore.train_dalle [--option value ...]`` (``entry``: how it was invoked,
    ``"mmcore.train dalle"`` through :mod:`mmcore.train`; the card records the command as typed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = vars(_parser(entry).parse_args(argv))
    cfg = config_from_args(DALLETrainConfig, args)
    result = train_dalle(cfg, command=f"python -m {entry} {shlex.join(argv)}")
    print(f"parameters: {result.model.num_parameters():,}")
    print_summary(result.metrics, result.path)
    return result


if __name__ == "__main__":
    main()
