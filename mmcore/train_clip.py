"""Training CLIP on the Shapes world: the loop, its schedule, checkpoints, and multi-GPU (DDP) training.

One training step, in words:

1. draw a batch of fresh (image, caption) pairs - every sample is a pure function of (seed, step, index), so
   the data never repeats and a run is reproducible (and resumable) without any data-loader state;
   each caption is English or Bengali at random (:func:`shapes_batch`);
2. embed the images and the captions, normalise, and score every image against every caption;
3. :func:`mmcore.clip.clip_loss`: each image must pick its own caption, and each caption its own image;
4. backward, clip the gradient norm, one AdamW step with the learning rate of :func:`cosine_schedule`.

Every ``eval_every`` steps the model classifies the *held-out* compositions zero-shot (a green heart was never
seen in training, but green things and hearts were: :mod:`mmcore.zeroshot`).

Use it from Python (``train_clip(CLIPTrainConfig(max_minutes=5))``: with a time budget the cosine schedule ends
when the budget does) or from the command line (every :class:`CLIPTrainConfig` field is an option)::

    python -m mmcore.train_clip --max-minutes 5 --out runs/clip.safetensors   # or: python -m mmcore.train clip ...
    torchrun --nproc_per_node=2 -m mmcore.train_clip ...      # DDP: one process per GPU (or CPU, with gloo)

The shipped ``data/checkpoints/shapes-tiny.safetensors`` came from (see ``data/checkpoints/shapes-tiny.md``)::

    python -m mmcore.train clip --preset tiny --steps 1500 --batch-size 256 --lr 1e-3 --seed 0 --threads 1 \
        --no-save-optimizer --out data/checkpoints/shapes-tiny.safetensors

With several processes the *global* batch is split across them. CLIP's loss compares every image with every
caption of the whole batch, so each process gathers the others' embeddings (with their gradients,
:func:`gather_with_grad`) and computes the full-batch loss: the result is the same as one process's.

A checkpoint is a safetensors file written by :meth:`mmcore.clip.CLIP.save` with a JSON card (the training
config, the command, seed, time, metrics, loss history); the optimizer state goes to ``<name>.optim.safetensors``
(tensors) with its settings as JSON metadata - no pickle anywhere - so ``resume=`` continues a run exactly.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import quick_mode, set_seed
from .clip import CLIP, CLIPConfig, clip_loss
from .data import (BASE_TEMPLATES, LANGS, RELATION_TEMPLATES, TRAIN_TEMPLATES, WATCH_SEED, caption, frame_caption,
                   hard_negative, render, sample_attributes)
from .images import normalize, to_tensor
from .tokenizer import BPETokenizer
from .training import (TimeBudget, add_config_arguments, autocast, config_from_args, cpu_threads, default_threads,
                       distributed, parameter_groups, process_device, progress_bar, run_card, run_command)
from .weights import load_checkpoint, resolve_checkpoint, sha256_file
from .zeroshot import eval_set, evaluate_zero_shot, shapes_report

__all__ = [
    "CLIPTrainConfig",
    "CLIPHistory",
    "CLIPTrainResult",
    "caption_templates",
    "ShapesBatch",
    "shapes_batch",
    "gather_with_grad",
    "contrastive_loss",
    "train_step",
    "save_optimizer_state",
    "load_optimizer_state",
    "train_clip",
    "main",
]


# ------------------------------------------------------------------------------------------------------ config


@dataclass
class CLIPTrainConfig:
    """Everything a CLIP training run depends on. The defaults train the lesson's tiny CLIP on a laptop CPU."""

    preset: str = "tiny"  # CLIPConfig preset (a classmethod name: "tiny", "vit_b_32", ...)
    steps: int = 1500  # optimisation steps (at most; max_minutes may stop earlier)
    max_minutes: float | None = None  # wall-time budget; the cosine schedule then spans the budget
    batch_size: int = 256  # global batch: pairs per step, split evenly across DDP processes
    lr: float = 1e-3  # peak learning rate (reached after warm-up)
    min_lr_ratio: float = 0.02  # final learning rate = lr * min_lr_ratio (end of the cosine)
    warmup_steps: int = 100  # steps of linear warm-up from 0 to lr (with max_minutes: at most a fifth of the run)
    weight_decay: float = 0.1  # AdamW decay of the weight matrices (never of gains, biases, embeddings, temperature)
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW moment decay rates (CLIP's beta2 = 0.98)
    eps: float = 1e-6  # AdamW epsilon
    grad_clip: float = 1.0  # clip the global gradient norm to this (0: off)
    langs: tuple[str, ...] = LANGS  # caption languages: each sample draws one at random
    templates: str = "all"  # caption templates: "all" of TRAIN_TEMPLATES, or "base" (the first BASE_TEMPLATES)
    frame_prob: float = 0.0  # probability that a caption gets everyday words around it (mmcore.data.frame_caption)
    relation_prob: float = 0.0  # probability that a sample is a two-object picture with a relation caption (lesson 07)
    hard_negatives: bool = False  # each caption also brings a near-miss as an extra negative (NegCLIP; lesson 07)
    init_from: str | None = None  # fine-tune: start from this checkpoint's weights (a path or "shapes-tiny")
    freeze_image: bool = False  # train only the text tower and the temperature (image embeddings stay as they are)
    seed: int = 0  # model initialisation and the data stream
    eval_every: int = 100  # zero-shot evaluation on the held-out compositions every this many steps (0: only at the end)
    eval_images: int = 480  # held-out images in that evaluation
    final_eval: bool = True  # at the end: zero-shot (en, bn) and text -> image recall, stored in the card
    out: str | None = None  # checkpoint path (.safetensors); None: do not save
    save_every: int = 0  # also save every this many steps (0: only at the end)
    save_optimizer: bool = True  # write <out>.optim.safetensors too (needed to resume, not to use the model)
    resume: str | None = None  # continue the run saved in this checkpoint (needs its .optim.safetensors)
    threads: int | None = None  # torch CPU threads during training (None: all cores but one; restored afterwards)
    progress: bool = True  # show a tqdm progress bar

    def quick(self) -> "CLIPTrainConfig":
        """A few steps on a small batch: what ``MMCORE_QUICK=1`` (CI) runs instead."""
        return CLIPTrainConfig(**{**asdict(self), "steps": min(self.steps, 5), "batch_size": min(self.batch_size, 32),
                              "warmup_steps": 1, "eval_every": 0, "eval_images": 48, "save_every": 0})


@dataclass
class CLIPHistory:
    """What a notebook plots: one entry per step for the loss, one per evaluation for the accuracies."""

    step: list[int] = field(default_factory=list)  # step number of each loss entry
    loss: list[float] = field(default_factory=list)  # full-batch CLIP loss
    lr: list[float] = field(default_factory=list)  # learning rate used at that step
    logit_scale: list[float] = field(default_factory=list)  # the learned inverse temperature exp(logit_scale)
    seconds: list[float] = field(default_factory=list)  # wall time since the start of the run
    eval_step: list[int] = field(default_factory=list)  # step number of each evaluation
    zero_shot: list[float] = field(default_factory=list)  # held-out joint (shape x colour) zero-shot accuracy, English prompts
    zero_shot_bn: list[float] = field(default_factory=list)  # the same with Bengali prompts


class ShapesBatch(NamedTuple):
    images: list  # PIL images
    captions: list[str]  # the matching captions
    negatives: list[str] | None  # per sample a caption that is close but wrong (hard_negatives), else None


class CLIPTrainResult(NamedTuple):
    model: CLIP  # the trained model (unwrapped, in eval mode)
    history: CLIPHistory
    metrics: dict[str, float]  # the final evaluation (empty when final_eval is off)
    path: Path | None  # where the checkpoint was saved, if anywhere


# ------------------------------------------------------------------------------------------- the pure pieces


def caption_templates(lang: str, templates: str = "all") -> list[str]:
    """The training templates of ``lang``: ``"all"`` of :data:`mmcore.data.TRAIN_TEMPLATES` or ``"base"``, the
    first :data:`mmcore.data.BASE_TEMPLATES` (what the first 1,500 steps of shapes-tiny were trained on)."""
    if templates not in ("all", "base"):
        raise ValueError(f"templates must be 'all' or 'base'; got {templates!r}")
    return TRAIN_TEMPLATES[lang] if templates == "all" else TRAIN_TEMPLATES[lang][:BASE_TEMPLATES]


def shapes_batch(seed: int, step: int, indices: Sequence[int], image_size: int = 32,
                 langs: Sequence[str] = LANGS, templates: str = "all", frame_prob: float = 0.0,
                 relation_prob: float = 0.0, hard_negatives: bool = False) -> ShapesBatch:
    """Samples ``indices`` of training step ``step`` -> :class:`ShapesBatch` (PIL images, captions, near misses).

    Sample i of step s is a pure function of (seed, s, i): fresh training compositions, a random caption
    language and training template (:func:`caption_templates`), with probability ``frame_prob`` everyday words
    around the caption (:func:`mmcore.data.frame_caption`), and a freshly rendered image. With probability
    ``relation_prob`` the picture holds two objects and the caption says how they sit (a
    :data:`mmcore.data.RELATION_TEMPLATES` caption). ``hard_negatives``: every sample also gets a caption in the
    same template that is close but wrong (:func:`mmcore.data.hard_negative`: colours swapped, relation mirrored, or
    another colour). DDP processes each draw their own slice of the same global batch.
    """
    images, captions, negatives = [], [], []
    for i in indices:
        rng = random.Random(f"train:{seed}:{step}:{i}")
        # (a draw only when an option is on: the streams of the shipped runs stay as they were)
        relation = bool(relation_prob) and rng.random() < relation_prob
        attrs = sample_attributes(rng, "train", relation=relation)
        lang = rng.choice(list(langs))
        template = rng.choice(RELATION_TEMPLATES[lang] if relation else caption_templates(lang, templates))
        text = caption(attrs, lang, template=template)
        if frame_prob:
            text = frame_caption(text, lang, rng) if rng.random() < frame_prob else text
        captions.append(text)
        if hard_negatives:
            negatives.append(caption(hard_negative(attrs, rng), lang, template=template))
        images.append(render(attrs, image_size, rng))
    return ShapesBatch(images, captions, negatives if hard_negatives else None)


class _AllGather(torch.autograd.Function):
    """All-gather that passes gradients back: forward stacks every process's rows, backward returns to each
    process the gradient of *all* processes' losses with respect to its own rows (a sum over processes)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)  # (world * b, E)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        grad = grad.contiguous().clone()  # (world * b, E)
        dist.all_reduce(grad)  # every process's loss used our rows: add up their gradients
        b = grad.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return grad[rank * b : (rank + 1) * b]  # (b, E): the part for this process's rows


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (b, E) of every DDP process, in rank order -> (world * b, E), keeping the gradient path.

    A plain ``dist.all_gather`` would cut the graph: the other processes' rows would be constants, and each
    process would miss the gradient its rows get through the others' losses. Without a process group (or with a
    single process) it returns ``x`` itself.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    return _AllGather.apply(x)


def contrastive_loss(image_emb: Tensor, text_emb: Tensor, scale: Tensor, negative_emb: Tensor | None = None) -> Tensor:
    """CLIP's loss from unit embeddings (B, E) of matching pairs and the logit scale (a scalar).

    ``negative_emb`` (M, E): extra captions that match no image (hard negatives, NegCLIP, Yuksekgonul et al., 2023):
    each image must also beat them; the caption-to-image direction is unchanged."""
    logits_per_image = scale * image_emb @ text_emb.t()  # (B, B): image i against every caption
    if negative_emb is None:
        return clip_loss(logits_per_image)
    near_misses = scale * image_emb @ negative_emb.t()  # (B, M)
    return clip_loss(torch.cat([logits_per_image, near_misses], dim=1), logits_per_image.t())  # (B, B + M), (B, B)


class _Embedder(nn.Module):
    """``(images, tokens) -> (unit image embeddings, unit text embeddings, logit scale)``.

    DDP synchronises gradients only for computation that runs through its wrapped module's ``forward``; CLIP's
    own ``forward`` returns logits of the *local* batch, so DDP wraps this instead.
    """

    def __init__(self, model: CLIP):
        super().__init__()
        self.model = model

    def forward(self, images: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        image_emb = self.model.encode_image(images, normalize=True)  # (b, E)
        text_emb = self.model.encode_text(tokens, normalize=True)  # (b, E)
        return image_emb, text_emb, self.model.temperature_scale()


def train_step(net: nn.Module, optimizer: torch.optim.Optimizer, images: Tensor, tokens: Tensor,
               grad_clip: float = 0.0, negative_tokens: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """One optimisation step on this process's pairs ``images`` (b, 3, S, S), ``tokens`` (b, T), and optionally
    one hard-negative caption per pair, ``negative_tokens`` (b, T).

    ``net`` maps (images, tokens) to (unit image embeddings, unit text embeddings, logit scale), like
    :class:`_Embedder` (possibly DDP-wrapped). Returns the full-batch loss and the logit scale (detached).
    """
    b = tokens.shape[0]
    if negative_tokens is not None:
        tokens = torch.cat([tokens, negative_tokens])  # (2b, T): one pass through the text tower for both
    with autocast(images.device):
        image_emb, text_emb, scale = net(images, tokens)  # (b, E), (b or 2b, E), ()
    image_emb = gather_with_grad(image_emb.float())  # (B, E): every process's images, in rank order
    negative_emb = gather_with_grad(text_emb[b:].float()) if negative_tokens is not None else None  # (B, E)
    text_emb = gather_with_grad(text_emb[:b].float())  # (B, E)
    loss = contrastive_loss(image_emb, text_emb, scale.float(), negative_emb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # under DDP this also averages the gradients of all processes
    if grad_clip:
        nn.utils.clip_grad_norm_(net.parameters(), grad_clip)
    optimizer.step()
    return loss.detach(), scale.detach()


# ---------------------------------------------------------------------------------------------- checkpoints


def save_optimizer_state(path: str | os.PathLike, optimizer: torch.optim.Optimizer, names: Sequence[str]) -> Path:
    """Write the optimizer's tensors as safetensors ``"<param name>/<key>"``, its settings as JSON metadata.

    ``names`` are the parameter names in the optimizer's order (``optimizer.state_dict()`` numbers them).
    """
    import json

    from safetensors.torch import save_file

    state = optimizer.state_dict()
    tensors = {f"{names[i]}/{key}": value.detach().cpu().contiguous()
               for i, per_param in state["state"].items() for key, value in per_param.items()}
    groups = [{**{k: v for k, v in group.items() if k != "params"}, "params": [names[i] for i in group["params"]]}
              for group in state["param_groups"]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"param_groups": json.dumps(groups)})
    return path


def load_optimizer_state(path: str | os.PathLike, optimizer: torch.optim.Optimizer, names: Sequence[str]) -> None:
    """Restore what :func:`save_optimizer_state` wrote into ``optimizer`` (built over the same parameters)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    index = {name: i for i, name in enumerate(names)}
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in tensors.items():
        name, _, what = key.rpartition("/")
        state.setdefault(index[name], {})[what] = value
    for group in groups:
        group["params"] = [index[name] for name in group["params"]]
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _optimizer_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".optim.safetensors")


def _save(path: str | os.PathLike, model: CLIP, optimizer: torch.optim.Optimizer | None, names: Sequence[str],
          cfg: CLIPTrainConfig, step: int, history: CLIPHistory, metrics: dict[str, float], command: str,
          seconds: float, base: dict[str, Any] | None = None) -> Path:
    extra = {"base": base} if base else {}  # a fine-tune records the checkpoint it started from
    card = run_card({**asdict(cfg), "resume": None}, command, seconds, metrics, asdict(history), step=step,
                    tokenizer="course", **extra)  # mmcore.clip.load finds the course tokenizer by name
    path = model.save(path, **card)
    if optimizer is not None and cfg.save_optimizer:
        save_optimizer_state(_optimizer_path(path), optimizer, names)
    return path


# ------------------------------------------------------------------------------------------------- training


def train_clip(cfg: CLIPTrainConfig | None = None, model: CLIP | None = None, command: str | None = None,
               device: str | torch.device | None = None) -> CLIPTrainResult:
    """Train a CLIP on Shapes with ``cfg`` (default :class:`CLIPTrainConfig`); returns model, history, metrics, path.

    ``model``: start from this model instead of a fresh ``CLIPConfig.<preset>()`` one (sized for the course
    tokenizer). Under ``MMCORE_QUICK=1`` only a few steps run (:meth:`CLIPTrainConfig.quick`). Inside a
    ``torch.distributed`` process group (``torchrun``) each process trains on its slice of the global batch.
    On the CPU a run with a fixed ``seed`` and no ``max_minutes`` is deterministic.
    """
    cfg = cfg or CLIPTrainConfig()
    if quick_mode():
        cfg = cfg.quick()
    with cpu_threads(cfg.threads or default_threads()):
        return _train_clip(cfg, model, command, device)


def _train_clip(cfg: CLIPTrainConfig, model: CLIP | None, command: str | None,
                device: str | torch.device | None) -> CLIPTrainResult:
    rank, world = distributed()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {world} processes")
    device = process_device(device, rank, world)
    command = command or "mmcore.train_clip.train_clip(" + ", ".join(f"{k}={v!r}" for k, v in asdict(cfg).items()) + ")"

    tokenizer = BPETokenizer.course()
    set_seed(cfg.seed)
    base: dict[str, Any] | None = None  # what a fine-tune started from, for its card
    if model is None and cfg.init_from:
        from .clip import SHAPES_TINY, load

        init_path = resolve_checkpoint(cfg.init_from, "shapes-tiny", SHAPES_TINY, "CLIP checkpoint", "python -m mmcore.train clip")
        model = load(init_path, device="cpu")[0]
        base_card = load_checkpoint(init_path)[1]
        base = {"sha256": sha256_file(init_path), "command": base_card.get("command"),
                "metrics": base_card.get("metrics"), "created": base_card.get("created")}
    if model is None:
        preset = getattr(CLIPConfig, cfg.preset)
        model = CLIP(preset(vocab_size=tokenizer.vocab_size, eot_token=tokenizer.eot_token,
                            context_length=tokenizer.context_length))
    model = model.to(device).train()
    if cfg.freeze_image:  # locked-image tuning (LiT): the image tower and its embeddings stay exactly as they are
        model.visual.requires_grad_(False)
    groups = parameter_groups(model, cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    name_of = {id(p): n for n, p in model.named_parameters()}
    names = [name_of[id(p)] for group in groups for p in group["params"]]  # in the optimizer's order

    history, start_step = CLIPHistory(), 0
    if cfg.resume:
        sd, card = load_checkpoint(cfg.resume)
        model.load_state_dict(sd)
        load_optimizer_state(_optimizer_path(cfg.resume), optimizer, names)
        start_step = int(card["step"])
        history = CLIPHistory(**card.get("history", {}))

    net: nn.Module = _Embedder(model)
    if world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    eval_images = eval_set("heldout", cfg.eval_images, WATCH_SEED, model.cfg.image_size) if rank == 0 else None
    local = cfg.batch_size // world
    my_slice = range(rank * local, (rank + 1) * local)  # this process's part of every global batch
    bar = progress_bar(cfg.steps - start_step, cfg.progress and rank == 0, "CLIP")
    clock = TimeBudget(cfg.max_minutes, cfg.steps, start_step)  # the schedule ends where the budget will
    step = start_step

    def run_eval() -> None:
        images, attributes = eval_images
        history.eval_step.append(step)
        for lang, values in (("en", history.zero_shot), ("bn", history.zero_shot_bn)):
            values.append(evaluate_zero_shot(model, tokenizer, images, attributes, lang)["joint"])

    while step < cfg.steps:
        planned = clock.agreed_plan(step, device)  # every process follows process 0's clock
        if planned is None:
            break
        if bar is not None and clock.budget is not None:
            bar.total = planned - start_step
        lr = cfg.lr * clock.lr_factor(step, planned, cfg.warmup_steps, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr

        batch = shapes_batch(cfg.seed, step, my_slice, model.cfg.image_size, cfg.langs, cfg.templates, cfg.frame_prob,
                             cfg.relation_prob, cfg.hard_negatives)
        images = normalize(to_tensor(batch.images, model.cfg.image_size)).to(device)  # (b, 3, S, S), as Preprocess
        tokens = tokenizer(batch.captions).to(device)  # (b, T)
        negatives = tokenizer(batch.negatives).to(device) if cfg.hard_negatives else None  # (b, T)
        loss, scale = train_step(net, optimizer, images, tokens, cfg.grad_clip, negatives)
        step += 1

        if rank == 0:
            history.step.append(step)
            history.loss.append(loss.item())
            history.lr.append(lr)
            history.logit_scale.append(scale.item())
            history.seconds.append(clock.seconds())
            if cfg.eval_every and step % cfg.eval_every == 0:
                run_eval()
            if bar is not None:
                shown = {"loss": f"{loss.item():.3f}", "lr": f"{lr:.1e}"}
                if history.zero_shot:
                    shown["heldout"] = f"{history.zero_shot[-1]:.1%}"
                bar.set_postfix(shown, refresh=False)
                bar.update(1)
            if cfg.out and cfg.save_every and step % cfg.save_every == 0:
                _save(cfg.out, model, optimizer, names, cfg, step, history, {}, command, clock.seconds(), base)

    if bar is not None:
        bar.close()
    seconds = clock.seconds()
    model.eval()
    metrics: dict[str, float] = {}
    path = None
    if rank == 0:
        if not history.eval_step or history.eval_step[-1] != step:
            run_eval()
        if cfg.final_eval:
            metrics = shapes_report(model, tokenizer, n_heldout=cfg.eval_images if quick_mode() else 600,
                               n_test=100 if quick_mode() else 1000, recall=True)
        metrics["steps"] = float(step)
        metrics["train_minutes"] = seconds / 60
        if cfg.out:
            path = _save(cfg.out, model, optimizer, names, cfg, step, history, metrics, command, seconds, base)
    if world > 1:
        dist.barrier()
    return CLIPTrainResult(model, history, metrics, path)


# ---------------------------------------------------------------------------------------------- command line

_OPTIONAL_TYPES = {"max_minutes": float, "out": str, "resume": str, "init_from": str, "threads": int}  # fields whose default is None


def _parser(entry: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {entry}", description=__doc__.split("\n\n")[0])
    return add_config_arguments(parser, CLIPTrainConfig, _OPTIONAL_TYPES)


def main(argv: Sequence[str] | None = None, entry: str = "mmcore.train_clip") -> CLIPTrainResult:
    """``python -m mmcore.train_clip [--option value ...]`` (also ``python -m mmcore.train clip ...``, whose
    ``entry`` is then ``"mmcore.train clip"``: the card records the command as it was typed); under ``torchrun`` it
    trains with DDP."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = config_from_args(CLIPTrainConfig, vars(_parser(entry).parse_args(argv)))
    return run_command(entry, argv, cfg, train_clip)


if __name__ == "__main__":
    main()
