"""Teaching an English-only CLIP a new language by distillation (lesson 08).

The *teacher* is a CLIP that reads one language: ``shapes-english`` was trained like ``shapes-tiny`` but on English
captions only. Its image tower and its text tower stay frozen. A *student* text tower learns to put every caption of
the new language where the teacher's text tower puts the same caption in the teacher's language (multilingual
knowledge distillation, Reimers & Gurevych, EMNLP 2020; M-CLIP, Carlsson et al., LREC 2022)::

    loss = mean over pairs (s, t) of  || student(t) - teacher(s) ||^2  (+ || student(s) - teacher(s) ||^2)

``s`` is a caption in the teacher's language, ``t`` the same caption in the new one (:func:`mmcore.data.parallel_captions`);
the second term (``keep_source``) keeps the student reading the teacher's language too. No picture is needed. The
student then sits beside the teacher's *unchanged* image tower (:func:`mmcore.clip.with_text_tower`): one ordinary
CLIP, so zero-shot classification and image search work in the new language with an image tower that never saw it.

One step: draw a batch of caption pairs (a pure function of ``seed`` and the step), embed the target (and source)
captions with the student, compare with the teacher's embeddings of the source captions (computed once, at the
start), backward, clip, one AdamW step on the cosine schedule. Use it from Python
(``train_distill(DistillConfig(max_minutes=3))``) or from the command line (every :class:`DistillConfig` field is an
option)::

    python -m mmcore.train distill --max-minutes 3 --out runs/shapes-distilled.safetensors
    torchrun --nproc_per_node=2 -m mmcore.train_distill ...   # DDP: each process takes a slice of every batch
"""
from __future__ import annotations

import argparse
import copy
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from . import quick_mode, set_seed
from .clip import CLIP, SHIPPED, TextTransformer, load, with_text_tower
from .data import LANGS, WATCH_SEED, parallel_captions
from .training import (TimeBudget, add_config_arguments, config_from_args, cpu_threads, default_threads, distributed,
                       parameter_groups, process_device, progress_bar, run_card, run_command)
from .weights import sha256_file
from .zeroshot import class_accuracies, eval_set, shapes_classifier, shapes_report

__all__ = ["DistillConfig", "DistillHistory", "DistillResult", "distill_loss", "pair_batch", "train_distill", "main"]


@dataclass
class DistillConfig:
    """Everything a distillation run depends on. The defaults teach ``shapes-english`` Bengali in about 3 minutes."""

    teacher: str = "shapes-english"  # the frozen teacher CLIP: a shipped name or a checkpoint path
    source: str = "en"  # the language the teacher reads
    target: str = "bn"  # the language the student learns
    pairs: int | None = None  # parallel caption pairs to learn from (None: all of mmcore.data.parallel_captions)
    keep_source: bool = True  # the student also learns the teacher's own captions (so it reads both languages)
    init: str = "teacher"  # the student text tower starts as a copy of the teacher's ("teacher") or fresh ("random")
    steps: int = 800  # optimisation steps (at most; max_minutes may stop earlier)
    max_minutes: float | None = None  # wall-time budget; the cosine schedule then spans the budget
    batch_size: int = 128  # caption pairs per step (global: split evenly across DDP processes)
    lr: float = 1e-3  # peak learning rate (reached after warm-up)
    min_lr_ratio: float = 0.02  # final learning rate = lr * min_lr_ratio (end of the cosine)
    warmup_steps: int = 50  # steps of linear warm-up from 0 to lr (with max_minutes: at most a fifth of the run)
    weight_decay: float = 0.01  # AdamW decay of the weight matrices (never of gains, biases, embeddings)
    grad_clip: float = 1.0  # clip the global gradient norm to this (0: off)
    seed: int = 0  # the pair sample, the batch order and a fresh student's initialisation
    eval_every: int = 100  # held-out zero-shot in both languages every this many steps (0: only at the end)
    eval_images: int = 480  # held-out images in that evaluation
    final_eval: bool = True  # at the end: zero-shot and text -> image recall in both languages, stored in the card
    out: str | None = None  # checkpoint path (.safetensors): the teacher's image tower + the student; None: no file
    threads: int | None = None  # torch CPU threads during training (None: all cores but one; restored afterwards)
    progress: bool = True  # show a tqdm progress bar

    def quick(self) -> "DistillConfig":
        """A few steps on a small batch: what ``MMCORE_QUICK=1`` (CI) runs instead."""
        return DistillConfig(**{**asdict(self), "steps": min(self.steps, 5), "batch_size": min(self.batch_size, 32),
                                "warmup_steps": 1, "eval_every": 0, "eval_images": 48})


@dataclass
class DistillHistory:
    """What a notebook plots: the loss per step, the held-out zero-shot accuracy per evaluation."""

    step: list[int] = field(default_factory=list)  # step number of each loss entry
    loss: list[float] = field(default_factory=list)  # distillation loss (mean squared error per number)
    lr: list[float] = field(default_factory=list)  # learning rate used at that step
    seconds: list[float] = field(default_factory=list)  # wall time since the start of the run
    eval_step: list[int] = field(default_factory=list)  # step number of each evaluation
    zero_shot_target: list[float] = field(default_factory=list)  # held-out joint zero-shot, prompts in the new language
    zero_shot_source: list[float] = field(default_factory=list)  # the same with prompts in the teacher's language


class DistillResult(NamedTuple):
    model: CLIP  # the teacher's image tower and temperature with the student's text tower (eval mode)
    history: DistillHistory
    metrics: dict[str, float]  # the final evaluation (empty when final_eval is off)
    path: Path | None  # where the checkpoint was saved, if anywhere


# ------------------------------------------------------------------------------------------- the pure pieces


def distill_loss(student_emb: Tensor, teacher_emb: Tensor) -> Tensor:
    """Mean squared error between the student's embeddings (B, E) and the teacher's (B, E) of the same captions.

    The raw embeddings, not unit vectors, as in Reimers & Gurevych: matching the teacher's vector matches its
    direction (all that CLIP's cosine uses) and its length."""
    if student_emb.shape != teacher_emb.shape:
        raise ValueError(f"student {tuple(student_emb.shape)} and teacher {tuple(teacher_emb.shape)} embeddings differ in shape")
    return F.mse_loss(student_emb, teacher_emb)


def pair_batch(seed: int, step: int, n_pairs: int, batch_size: int) -> list[int]:
    """The caption pairs of step ``step``: ``batch_size`` indices into ``n_pairs`` pairs, drawn with replacement.

    A pure function of (seed, step), like :func:`mmcore.train_clip.shapes_batch`: a run is reproducible without any
    loader state, and DDP processes take their slices of the same list."""
    rng = random.Random(f"distill:{seed}:{step}")
    return [rng.randrange(n_pairs) for _ in range(batch_size)]


@torch.no_grad()
def _teacher_embeddings(teacher: CLIP, tokens: Tensor, chunk: int = 1024) -> Tensor:
    """The frozen teacher's text embeddings (N, E) of token rows (N, T), computed once before training."""
    return torch.cat([teacher.encode_text(tokens[i : i + chunk]) for i in range(0, len(tokens), chunk)])


def _student(teacher: CLIP, init: str, seed: int) -> TextTransformer:
    if init == "teacher":  # a copy of the teacher's text tower: it already reads the teacher's language
        return copy.deepcopy(teacher.text)
    if init == "random":  # a fresh tower with CLIP's initialisation
        set_seed(seed)
        return CLIP(teacher.cfg).text
    raise ValueError(f"init must be 'teacher' or 'random'; got {init!r}")


# ------------------------------------------------------------------------------------------------- training


def train_distill(cfg: DistillConfig | None = None, teacher: CLIP | None = None, command: str | None = None,
            device: str | torch.device | None = None) -> DistillResult:
    """Distil a text tower for ``cfg.target`` from ``teacher`` (default: ``load(cfg.teacher)``) with ``cfg``.

    Returns the student as one CLIP (the teacher's image tower + the student's text tower), its history, the final
    metrics and the checkpoint path. The teacher itself is never changed. Under ``MMCORE_QUICK=1`` only a few steps
    run (:meth:`DistillConfig.quick`); inside a ``torch.distributed`` process group each process takes a slice of
    every batch. On the CPU a run with a fixed ``seed`` and no ``max_minutes`` is deterministic.
    """
    cfg = cfg or DistillConfig()
    if quick_mode():
        cfg = cfg.quick()
    for name in ("source", "target"):
        if getattr(cfg, name) not in LANGS:
            raise ValueError(f"{name} must be one of {LANGS}; got {getattr(cfg, name)!r}")
    if cfg.source == cfg.target:
        raise ValueError(f"source and target are both {cfg.source!r}: distillation teaches another language")
    with cpu_threads(cfg.threads or default_threads()):
        return _distill(cfg, teacher, command, device)


def _distill(cfg: DistillConfig, teacher: CLIP | None, command: str | None,
             device: str | torch.device | None) -> DistillResult:
    rank, world = distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    device = process_device(device, rank, world)
    command = command or "mmcore.train_distill.train_distill(" + ", ".join(f"{k}={v!r}" for k, v in asdict(cfg).items()) + ")"

    loaded, _, tokenizer = load(cfg.teacher, device="cpu")  # and the tokenizer the teacher was trained with
    if teacher is None:  # the card records which file taught the student
        teacher = loaded
        base = {"teacher": cfg.teacher, "sha256": sha256_file(SHIPPED.get(cfg.teacher, Path(cfg.teacher)))}
    else:
        base = {"teacher": "a model passed to train_distill()"}
    teacher = teacher.to(device).eval().requires_grad_(False)

    pairs = parallel_captions(cfg.pairs, "train", cfg.source, cfg.target, seed=cfg.seed)
    source_tokens = tokenizer([s for s, _ in pairs]).to(device)  # (P, T)
    target_tokens = tokenizer([t for _, t in pairs]).to(device)  # (P, T)
    targets = _teacher_embeddings(teacher, source_tokens)  # (P, E): where the student must put both captions

    student = _student(teacher, cfg.init, cfg.seed).to(device).train().requires_grad_(True)
    groups = parameter_groups(student, cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)
    net: nn.Module = student
    if world > 1:
        net = nn.parallel.DistributedDataParallel(student, device_ids=[device.index] if device.type == "cuda" else None)

    history = DistillHistory()
    if rank == 0:  # the held-out pictures the loop watches, through the teacher's image tower: (N, E)
        eval_images, eval_attributes = eval_set("heldout", cfg.eval_images, WATCH_SEED, teacher.cfg.image_size)
        with torch.no_grad():
            eval_embeddings = teacher.encode_image(eval_images.to(device), normalize=True)
    local = cfg.batch_size // world
    bar = progress_bar(cfg.steps, cfg.progress and rank == 0, f"distil {cfg.source}->{cfg.target}")
    clock = TimeBudget(cfg.max_minutes, cfg.steps)
    step = 0

    def run_eval() -> None:  # the image tower is the frozen teacher's: its embeddings are computed once (above)
        paired = with_text_tower(teacher, student)
        history.eval_step.append(step)
        for lang, values in ((cfg.target, history.zero_shot_target), (cfg.source, history.zero_shot_source)):
            classes = shapes_classifier(paired, tokenizer, lang)  # (E, 48)
            values.append(class_accuracies(eval_embeddings, classes, eval_attributes)["joint"])

    while step < cfg.steps:
        planned = clock.agreed_plan(step, device)  # every process follows process 0's clock
        if planned is None:
            break
        if bar is not None and clock.budget is not None:
            bar.total = planned
        lr = cfg.lr * clock.lr_factor(step, planned, cfg.warmup_steps, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr

        index = torch.tensor(pair_batch(cfg.seed, step, len(pairs), cfg.batch_size)[rank * local : (rank + 1) * local])
        tokens, goal = target_tokens[index], targets[index]  # (b, T), (b, E)
        if cfg.keep_source:  # the teacher's own captions too, in the same pass: (2b, T), (2b, E)
            tokens, goal = torch.cat([tokens, source_tokens[index]]), torch.cat([goal, goal])
        loss = distill_loss(net(tokens), goal)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # under DDP this also averages the gradients of all processes
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        loss = loss.detach()
        if world > 1:  # each process's loss is the mean over its slice: the batch's loss is their mean
            dist.all_reduce(loss)
            loss /= world

        if rank == 0:
            history.step.append(step)
            history.loss.append(loss.item())
            history.lr.append(lr)
            history.seconds.append(clock.seconds())
            if cfg.eval_every and step % cfg.eval_every == 0:
                run_eval()
            if bar is not None:
                shown = {"loss": f"{loss.item():.4f}"}
                if history.zero_shot_target:
                    shown[cfg.target] = f"{history.zero_shot_target[-1]:.1%}"
                bar.set_postfix(shown, refresh=False)
                bar.update(1)

    if bar is not None:
        bar.close()
    seconds = clock.seconds()
    student.eval()
    model = with_text_tower(teacher, student)
    metrics: dict[str, float] = {}
    path = None
    if rank == 0:
        if not history.eval_step or history.eval_step[-1] != step:
            run_eval()
        if cfg.final_eval:
            metrics = shapes_report(model, tokenizer, n_heldout=cfg.eval_images if quick_mode() else 600,
                                    n_test=100 if quick_mode() else 1000, langs=(cfg.source, cfg.target))
        metrics["steps"] = float(step)
        metrics["train_minutes"] = seconds / 60
        if cfg.out:
            card = run_card(asdict(cfg), command, seconds, metrics, asdict(history), step=step, tokenizer="course",
                            base=base, pairs=len(pairs))
            path = model.save(cfg.out, **card)
    if world > 1:
        dist.barrier()
    return DistillResult(model, history, metrics, path)


# ---------------------------------------------------------------------------------------------- command line

_OPTIONAL_TYPES = {"max_minutes": float, "out": str, "threads": int, "pairs": int}  # fields whose default is None


def main(argv: Sequence[str] | None = None, entry: str = "mmcore.train_distill") -> DistillResult:
    """``python -m mmcore.train_distill [--option value ...]`` (also ``python -m mmcore.train distill ...``); under
    ``torchrun`` it trains with DDP."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog=f"python -m {entry}", description=__doc__.split("\n\n")[0])
    cfg = config_from_args(DistillConfig, vars(add_config_arguments(parser, DistillConfig, _OPTIONAL_TYPES).parse_args(argv)))
    return run_command(entry, argv, cfg, train_distill)


if __name__ == "__main__":
    main()
