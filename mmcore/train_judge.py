"""Training the judge (:mod:`mmcore.judge`): a small supervised CNN that names a Shapes image's attributes.

Unlike CLIP, the judge learns from labels: every training image is a fresh :func:`mmcore.data.render` of
attributes drawn uniformly from *all* 6 x 8 (shape, colour) compositions - the ``"heldout"`` ones included.
The judge is the referee of the course, not a student of compositional generalisation: it must recognise a
green heart even though the tiny CLIP never saw one. Each sample is a pure function of (seed, step, index).

To make it robust to what generators produce, each image may be degraded in ways that keep its labels
valid (:func:`judge_batch`, :func:`augment`): rendered at 64 px and resized (like a 64-px generator's
output), JPEG-compressed, blurred, slightly colour-jittered, and noisy.

One step: cross-entropy summed over the four heads (shape, colour, size, position), AdamW, the cosine
learning-rate schedule of :func:`mmcore.train.cosine_schedule`. At the end the run

1. measures accuracy per attribute on ``"test"`` and ``"heldout"`` images of a separate random stream,
2. calibrates the per-shape IoU thresholds of the cleanliness check on real renders (lowest IoU minus a
   margin, :func:`calibrate_iou`), then measures the clean rate on real images and the rejection rate on
   synthetic fakes (:func:`synthetic_fakes`: blobs, two objects, noise, half-drawn shapes, wrong colours, blank),
3. writes ``<out>`` (safetensors) and ``<out>.json`` (the card: command, config, time, metrics).

Command line (every :class:`JudgeTrainConfig` field is an option)::

    python -m mmcore.train_judge --steps 2000 --threads 1 --out data/checkpoints/shapes-judge.safetensors

This module imports :mod:`mmcore.train` only for its generic helpers (schedule, thread control); the judge
itself (:mod:`mmcore.judge`) imports no CLIP or generator code.
"""
from __future__ import annotations

import argparse
import io
import math
import random
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from . import quick_mode, set_seed
from .data import COLOR_RGB, COLORS, POSITIONS, SHAPES, SIZES, ShapesDataset, render, sample_attributes
from .judge import ATTRIBUTES, CleanThresholds, Judge, JudgeConfig, JudgeNet, to_batch
from .training import (TimeBudget, add_config_arguments, config_from_args, cosine_schedule, cpu_threads,
                       default_threads, progress_bar, warmup_for)

__all__ = [
    "JudgeTrainConfig",
    "judge_batch",
    "augment",
    "labels_of",
    "attribute_accuracy",
    "real_images",
    "synthetic_fakes",
    "FAKE_KINDS",
    "calibrate_iou",
    "evaluate_judge",
    "train_judge",
    "main",
]


@dataclass
class JudgeTrainConfig:
    """Everything a judge training run depends on. The defaults made the shipped judge."""

    steps: int = 2000  # optimisation steps (at most; max_minutes may stop earlier)
    max_minutes: float | None = None  # wall-time budget; the cosine schedule then spans the budget
    batch_size: int = 128  # images per step
    lr: float = 3e-3  # peak learning rate
    min_lr_ratio: float = 0.02  # final learning rate = lr * min_lr_ratio
    warmup_steps: int = 50  # linear warm-up
    weight_decay: float = 1e-4  # AdamW weight decay (all parameters: the net is small)
    p_large: float = 0.2  # probability that an image is rendered at 64 px and resized to 32
    p_jpeg: float = 0.2  # probability of JPEG compression (quality 25 to 90)
    p_blur: float = 0.3  # probability of a Gaussian blur (sigma 0.3 to 0.9 px)
    p_jitter: float = 0.5  # probability of a colour jitter (brightness +-0.05, contrast and channel gain +-5 %)
    p_noise: float = 0.4  # probability of Gaussian noise (std up to 0.04)
    seed: int = 0  # initialisation and data stream
    eval_every: int = 200  # accuracy on a small fixed set every this many steps (0: only at the end)
    eval_test: int = 1000  # final evaluation: "test" images (training compositions)
    eval_heldout: int = 600  # final evaluation: "heldout" images
    eval_fakes: int = 100  # final evaluation: synthetic fakes per kind
    calibrate: int = 3000  # real renders used to calibrate the per-shape IoU thresholds (0: keep the defaults)
    out: str | None = None  # checkpoint path (.safetensors); None: do not save
    threads: int | None = None  # torch CPU threads (None: all cores but one)
    progress: bool = True  # tqdm progress bar

    def quick(self) -> "JudgeTrainConfig":
        """What ``MMCORE_QUICK=1`` (CI) runs: a few steps, small evaluations."""
        return JudgeTrainConfig(**{**asdict(self), "steps": min(self.steps, 5), "batch_size": min(self.batch_size, 32),
                                   "warmup_steps": 1, "eval_every": 0, "eval_test": 64, "eval_heldout": 64,
                                   "eval_fakes": 8, "calibrate": 0})


# ---------------------------------------------------------------------------------------------------- data


def labels_of(attributes: Sequence[dict[str, str]]) -> Tensor:
    """Class indices (B, 4) in :data:`mmcore.judge.ATTRIBUTES` order (shape, colour, size, position)."""
    return torch.tensor([[ATTRIBUTES[k].index(a[k]) for k in ATTRIBUTES] for a in attributes], dtype=torch.long)


def _any_composition(rng: random.Random) -> dict[str, str]:
    """Attributes drawn uniformly over every composition, held-out ones included."""
    return {"shape": rng.choice(list(SHAPES)), "color": rng.choice(list(COLORS)), "size": rng.choice(list(SIZES)),
            "position": rng.choice(list(POSITIONS))}


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def judge_batch(cfg: JudgeTrainConfig, step: int, n: int, image_size: int = 32) -> tuple[list[Image.Image], Tensor]:
    """Training sample ``i`` of ``step``: a fresh render (maybe at 64 px, maybe JPEG'd) and its labels (n, 4)."""
    images, attributes = [], []
    for i in range(n):
        rng = random.Random(f"judge:{cfg.seed}:{step}:{i}")
        attrs = _any_composition(rng)
        large = rng.random() < cfg.p_large
        image = render(attrs, 2 * image_size if large else image_size, rng)
        if large:
            image = image.resize((image_size, image_size), rng.choice([Image.BILINEAR, Image.BOX, Image.LANCZOS]))
        if rng.random() < cfg.p_jpeg:
            image = _jpeg(image, rng.randint(25, 90))
        images.append(image)
        attributes.append(attrs)
    return images, labels_of(attributes)


def _blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Gaussian blur of each image (B, 3, S, S) with its own ``sigma`` (B,) in pixels (5 x 5 kernel)."""
    b, c, s, _ = x.shape
    offsets = torch.arange(-2, 3, dtype=torch.float32)  # (5,)
    k1 = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None] ** 2))  # (B, 5)
    k1 = k1 / k1.sum(1, keepdim=True)
    k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, 0)[:, None]  # (B*3, 1, 5, 5)
    padded = F.pad(x.reshape(1, b * c, s, s), (2, 2, 2, 2), mode="replicate")
    return F.conv2d(padded, k2, groups=b * c).reshape(b, c, s, s)


def augment(x: Tensor, cfg: JudgeTrainConfig, generator: torch.Generator) -> Tensor:
    """Label-preserving degradations of a batch (B, 3, S, S) in [0, 1]: blur, colour jitter, noise."""
    b = x.shape[0]

    def chosen(p: float) -> Tensor:
        return (torch.rand(b, generator=generator) < p).float()[:, None, None, None]  # (B, 1, 1, 1)

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(b, *shape, generator=generator)

    blurred = _blur(x, uniform(0.3, 0.9))
    x = x + chosen(cfg.p_blur) * (blurred - x)
    gain = uniform(0.95, 1.05, 3)[:, :, None, None]  # (B, 3, 1, 1) per channel
    contrast = uniform(0.95, 1.05)[:, None, None, None]
    shift = uniform(-0.05, 0.05)[:, None, None, None]
    mean = x.mean((1, 2, 3), keepdim=True)
    jittered = ((x - mean) * contrast + mean) * gain + shift
    x = x + chosen(cfg.p_jitter) * (jittered - x)
    noise = torch.randn(x.shape, generator=generator) * uniform(0.0, 0.04)[:, None, None, None]
    x = x + chosen(cfg.p_noise) * noise
    return x.clamp(0, 1)


def real_images(split: str, n: int, seed: int, image_size: int = 32) -> tuple[list[Image.Image], list[dict[str, str]]]:
    """``n`` real renders of ``split`` from :class:`mmcore.data.ShapesDataset` (its own stream for ``seed``)."""
    ds = ShapesDataset(split, n=n, image_size=image_size, seed=seed)
    return [ds[i][0] for i in range(n)], ds.attributes


# -------------------------------------------------------------------------------------------- synthetic fakes


def _blank_background(rng: random.Random, s: int) -> np.ndarray:
    """A light Shapes-like background (S, S, 3) float: a tint plus a little grain."""
    level = rng.uniform(212, 242)
    tint = np.array([level + rng.uniform(-10, 10) for _ in range(3)])
    grain = np.random.default_rng(rng.randrange(2**32)).uniform(-3, 3, (s, s, 1))
    return np.clip(tint + grain, 0, 255)


def _background_colour(img: np.ndarray) -> np.ndarray:
    return np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]), axis=0)  # (3,)


def _alpha(img: np.ndarray, rgb: Sequence[float]) -> np.ndarray:
    """The object's coverage (S, S) in a rendered image of colour ``rgb`` (same idea as :func:`mmcore.judge.coverage`)."""
    bg = _background_colour(img)
    d = np.asarray(rgb, float) - bg
    return np.clip(((img - bg) * d).sum(-1) / (d**2).sum(), 0, 1)


def _half_plane(alpha: np.ndarray, angle: float) -> np.ndarray:
    """Boolean (S, S): the pixels on one side of a line through the object's centre of mass."""
    s = alpha.shape[0]
    yy, xx = np.mgrid[0:s, 0:s]
    cx, cy = (alpha * xx).sum() / alpha.sum(), (alpha * yy).sum() / alpha.sum()
    return (math.cos(angle) * (xx - cx) + math.sin(angle) * (yy - cy)) > 0


def _fake_blob(rng: random.Random, s: int) -> tuple[Image.Image, str]:
    bg, color = _blank_background(rng, s), rng.choice(list(COLORS))
    cx, cy, sigma = rng.uniform(0.3, 0.7) * s, rng.uniform(0.3, 0.7) * s, rng.uniform(0.08, 0.16) * s
    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    a = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))[..., None]
    a = np.clip(a * rng.uniform(1.0, 1.6), 0, 1)  # a flat top, then a soft fall-off
    return Image.fromarray((a * np.array(COLOR_RGB[color]) + (1 - a) * bg).astype(np.uint8)), color


def _fake_blank(rng: random.Random, s: int) -> tuple[Image.Image, str]:
    return Image.fromarray(_blank_background(rng, s).astype(np.uint8)), ""


def _fake_noise(rng: random.Random, s: int) -> tuple[Image.Image, str]:
    return Image.fromarray(np.random.default_rng(rng.randrange(2**32)).integers(0, 256, (s, s, 3), dtype=np.uint8)), ""


def _fake_two_objects(rng: random.Random, s: int) -> tuple[Image.Image, str]:
    attrs = sample_attributes(rng, "train", relation=True)
    return render(attrs, s, rng), attrs["color"]


def _fake_half_drawn(rng: random.Random, s: int) -> tuple[Image.Image, str]:
    # A large shape with half of it erased by a horizontal or vertical cut through its centre. (Not the
    # triangle: cut across, its top part is itself a smaller triangle.)
    attrs = {"shape": rng.choice(["circle", "square", "star", "heart", "cross"]), "color": rng.choice(list(COLORS)),
             "size": "large", "position": rng.choice(list(POSITIONS))}
    img = np.asarray(render(attrs, s, rng)).astype(float)
    cut = _half_plane(_alpha(img, COLOR_RGB[attrs["color"]]), rng.choice([0, 0.5, 1, 1.5]) * math.pi)
    img[cut] = _background_colour(img)
    return Image.fromarray(img.astype(np.uint8)), attrs["color"]


_OFF_PALETTE = [(0, 160, 160), (140, 80, 30), (128, 128, 128), (150, 220, 60), (90, 200, 240)]  # teal, brown, grey, lime, sky


def _mixes(min_distance: float = 60.0) -> list[tuple[float, float, float]]:
    """Even mixes of two palette colours that are far (> ``min_distance``, 0-255 units) from every palette
    colour: red + yellow is simply orange, but red + blue is no colour of the palette."""
    rgb = [np.array(COLOR_RGB[c], float) for c in COLORS]
    mixes = [(a + b) / 2 for i, a in enumerate(rgb) for b in rgb[i + 1 :]]
    return [tuple(float(v) for v in m) for m in mixes if min(np.linalg.norm(m - c) for c in rgb) > min_distance]


def _recolor(img: np.ndarray, old: Sequence[float], new: np.ndarray) -> np.ndarray:
    """Swap the object's colour ``old`` for ``new``, keeping its antialiased edge and the background."""
    a = _alpha(img, old)[..., None]  # (S, S, 1)
    return np.clip(img + a * (new - np.asarray(old, float)), 0, 255)


def _fake_off_palette(rng: random.Random, s: int) -> tuple[Image.Image, str]:
    # A real shape recoloured with a colour outside the palette or an even mix of two palette colours.
    attrs = {**_any_composition(rng), "size": "large"}
    img = np.asarray(render(attrs, s, rng)).astype(float)
    new = np.array(rng.choice(_OFF_PALETTE + _mixes()), float)
    return Image.fromarray(_recolor(img, COLOR_RGB[attrs["color"]], new).astype(np.uint8)), ""


def _fake_two_tone(rng: random.Random, s: int) -> tuple[Image.Image, str]:
    # A real shape, one half recoloured with another palette colour.
    attrs = {**_any_composition(rng), "size": "large"}
    img = np.asarray(render(attrs, s, rng)).astype(float)
    old = COLOR_RGB[attrs["color"]]
    other = np.array(COLOR_RGB[rng.choice([c for c in COLORS if c != attrs["color"]])], float)
    half = _half_plane(_alpha(img, old), rng.uniform(0, 2 * math.pi))[..., None]
    out = np.where(half, _recolor(img, old, other), img)
    return Image.fromarray(out.astype(np.uint8)), attrs["color"]


#: kind -> maker ``(rng, image_size) -> (image, the main colour or "")``: images the judge must call not clean.
FAKE_KINDS: dict[str, Callable[[random.Random, int], tuple[Image.Image, str]]] = {
    "blob": _fake_blob,
    "two_objects": _fake_two_objects,
    "noise": _fake_noise,
    "half_drawn": _fake_half_drawn,
    "off_palette": _fake_off_palette,
    "two_tone": _fake_two_tone,
    "blank": _fake_blank,
}


def synthetic_fakes(kind: str, n: int, seed: int = 0, image_size: int = 32) -> list[Image.Image]:
    """``n`` synthetic images of ``kind`` (a :data:`FAKE_KINDS` key) that no Shapes render looks like."""
    if kind not in FAKE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(FAKE_KINDS)}; got {kind!r}")
    rng = random.Random(f"fakes:{kind}:{seed}")
    return [FAKE_KINDS[kind](rng, image_size)[0] for _ in range(n)]


# ---------------------------------------------------------------------------------------------- evaluation


def attribute_accuracy(predictions: Sequence[dict[str, Any]], attributes: Sequence[dict[str, str]]) -> dict[str, float]:
    """Fraction correct per attribute, and ``joint`` (shape, colour and position all right)."""
    n = len(attributes)
    acc = {k: sum(p[k] == a[k] for p, a in zip(predictions, attributes)) / n for k in ATTRIBUTES}
    acc["joint"] = sum(all(p[k] == a[k] for k in ("shape", "color", "position")) for p, a in zip(predictions, attributes)) / n
    return acc


@torch.no_grad()
def calibrate_iou(judge: Judge, n: int = 3000, seed: int = 99, quantile: float = 0.002,
                  margin: float = 0.03) -> dict[str, float]:
    """Per-shape IoU thresholds: on ``n`` real renders (test and heldout splits), each shape's ``quantile``
    of the best-reference IoU, minus ``margin``, rounded down to 0.01."""
    images, attributes = real_images("test", n - n // 6, seed)
    more, more_attributes = real_images("heldout", n // 6, seed)
    predictions = _predict_in_chunks(judge, images + more)
    thresholds = {}
    for shape in SHAPES:
        ious = torch.tensor([p["measures"]["iou"] for p, a in zip(predictions, attributes + more_attributes)
                             if a["shape"] == shape and p["shape"] == shape])
        low = torch.quantile(ious, quantile).item() if len(ious) else judge.thresholds.min_iou[shape]
        thresholds[shape] = math.floor((low - margin) * 100) / 100
    return thresholds


def _predict_in_chunks(judge: Judge, images: Sequence[Image.Image], chunk: int = 500) -> list[dict[str, Any]]:
    return [p for i in range(0, len(images), chunk) for p in judge.predict(images[i : i + chunk])]


@torch.no_grad()
def evaluate_judge(judge: Judge, n_test: int = 1000, n_heldout: int = 600, n_fakes: int = 100,
                   seed: int = 2025) -> dict[str, float]:
    """Accuracy per attribute and clean rate on real images; rejection rate (not clean) per fake kind."""
    metrics: dict[str, float] = {}
    for split, n in (("test", n_test), ("heldout", n_heldout)):
        images, attributes = real_images(split, n, seed)
        predictions = _predict_in_chunks(judge, images)
        for k, v in attribute_accuracy(predictions, attributes).items():
            metrics[f"{split}_{k}"] = v
        metrics[f"{split}_clean"] = sum(p["clean"] for p in predictions) / n
    # real images after some damage: a slight blur (like a decoder's), JPEG at quality 90 and 75 (at 32 px
    # JPEG's halved colour resolution smears the colours: judge images before saving them as JPEG)
    images, _ = real_images("test", min(n_test, 500), seed + 1)
    for quality in (90, 75):
        judged = judge.predict([_jpeg(im, quality) for im in images])
        metrics[f"jpeg{quality}_clean"] = sum(p["clean"] for p in judged) / len(images)
    blurred = _blur(to_batch(images), torch.full((len(images),), 0.5))
    metrics["blur05_clean"] = sum(p["clean"] for p in judge.predict(blurred)) / len(images)
    rejected = []
    for kind in FAKE_KINDS:
        predictions = judge.predict(synthetic_fakes(kind, n_fakes, seed))
        metrics[f"fake_{kind}_rejected"] = sum(not p["clean"] for p in predictions) / n_fakes
        rejected.append(metrics[f"fake_{kind}_rejected"])
    metrics["fakes_rejected"] = sum(rejected) / len(rejected)
    return metrics


# ------------------------------------------------------------------------------------------------- training


def train_judge(cfg: JudgeTrainConfig | None = None, command: str | None = None,
                model_cfg: JudgeConfig | None = None) -> tuple[Judge, dict[str, float]]:
    """Train a judge with ``cfg``; returns the judge (calibrated) and its final metrics. Saves to ``cfg.out``."""
    cfg = cfg or JudgeTrainConfig()
    if quick_mode():
        cfg = cfg.quick()
    with cpu_threads(cfg.threads or default_threads()):
        return _train_judge(cfg, command, model_cfg or JudgeConfig.tiny())


def _train_judge(cfg: JudgeTrainConfig, command: str | None, model_cfg: JudgeConfig) -> tuple[Judge, dict[str, float]]:
    command = command or "mmcore.train_judge.train_judge(" + ", ".join(f"{k}={v!r}" for k, v in asdict(cfg).items()) + ")"
    set_seed(cfg.seed)
    net = JudgeNet(model_cfg).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    monitor_images, monitor_attributes = real_images("test", 300, 7)
    monitor = labels_of(monitor_attributes)
    monitor_x = to_batch(monitor_images, model_cfg.image_size)
    history: dict[str, list[float]] = {"step": [], "loss": [], "eval_step": [], "eval_accuracy": []}
    bar = progress_bar(cfg.steps, cfg.progress, "judge")
    clock, step = TimeBudget(cfg.max_minutes, cfg.steps), 0
    while step < cfg.steps:
        planned = clock.plan(step)
        if planned is None:  # the time budget is spent
            break
        if bar is not None and clock.budget is not None:
            bar.total = planned
        lr = cfg.lr * cosine_schedule(step, planned, warmup_for(planned, cfg.warmup_steps), cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, labels = judge_batch(cfg, step, cfg.batch_size, model_cfg.image_size)
        x = augment(to_batch(images, model_cfg.image_size), cfg, generator)  # (B, 3, S, S)
        logits = net.split(net(x.contiguous(memory_format=torch.channels_last)))
        loss = sum(F.cross_entropy(logits[k], labels[:, j]) for j, k in enumerate(ATTRIBUTES))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        history["step"].append(step)
        history["loss"].append(round(loss.item(), 5))
        if cfg.eval_every and step % cfg.eval_every == 0:
            net.eval()
            with torch.no_grad():
                out = net.split(net(monitor_x.contiguous(memory_format=torch.channels_last)))
            correct = torch.stack([out[k].argmax(-1) == monitor[:, j] for j, k in enumerate(ATTRIBUTES)]).all(0)
            history["eval_step"].append(step)
            history["eval_accuracy"].append(round(correct.float().mean().item(), 4))
            net.train()
        if bar is not None:
            shown = {"loss": f"{loss.item():.3f}", "lr": f"{lr:.1e}"}
            if history["eval_accuracy"]:
                shown["acc"] = f"{history['eval_accuracy'][-1]:.1%}"
            bar.set_postfix(shown, refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()
    seconds = clock.seconds()
    judge = Judge(net.eval(), CleanThresholds())
    t1 = time.perf_counter()
    if cfg.calibrate:
        judge.thresholds.min_iou = calibrate_iou(judge, cfg.calibrate)
    metrics = evaluate_judge(judge, cfg.eval_test, cfg.eval_heldout, cfg.eval_fakes)
    metrics["steps"] = float(step)
    metrics["train_minutes"] = seconds / 60
    metrics["eval_minutes"] = (time.perf_counter() - t1) / 60
    judge.card = {
        "command": command,
        "training": asdict(cfg),
        "seed": cfg.seed,
        "step": step,
        "train_seconds": round(seconds, 1),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "parameters": sum(p.numel() for p in net.parameters()),
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "history": history,
    }
    if cfg.out:
        judge.save(cfg.out, **judge.card)
        judge.card = {"config": asdict(net.cfg), "thresholds": asdict(judge.thresholds), **judge.card}
    return judge, metrics


# ---------------------------------------------------------------------------------------------- command line

_OPTIONAL_TYPES = {"max_minutes": float, "out": str, "threads": int}  # fields whose default is None


def _parser(entry: str = "mmcore.train_judge") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {entry}", description=__doc__.split("\n\n")[0])
    return add_config_arguments(parser, JudgeTrainConfig, _OPTIONAL_TYPES)


def main(argv: Sequence[str] | None = None, entry: str = "mmcore.train_judge") -> tuple[Judge, dict[str, float]]:
    """``python -m mmcore.train_judge [--option value ...]``: train, calibrate, evaluate, save (``entry``: how it
    was invoked, ``"mmcore.train judge"`` through :mod:`mmcore.train`; the card records the command as typed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = config_from_args(JudgeTrainConfig, vars(_parser(entry).parse_args(argv)))
    judge, metrics = train_judge(cfg, command=f"python -m {entry} {shlex.join(argv)}")
    print("\n".join(f"{k}: {v:.4f}" for k, v in metrics.items()))
    if cfg.out:
        print(f"saved {cfg.out}")
    return judge, metrics


if __name__ == "__main__":
    main()
