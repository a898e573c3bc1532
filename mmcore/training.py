"""The pieces every training loop of the course shares: learning-rate schedule, weight-decay groups, mixed
precision on CUDA only, CPU thread control, the progress bar, and command-line options made from a config
dataclass. Kept apart from the model-specific loops (:mod:`mmcore.train_clip`
for CLIP, :mod:`mmcore.train_vqgan`, :mod:`mmcore.train_judge`) so that none of them imports another's model.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import os
import re
import shlex
import time
from dataclasses import fields
from datetime import datetime, timezone
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import get_device

__all__ = [
    "cosine_schedule", "SPEED_MARK", "budget_steps", "TimeBudget", "warmup_for", "decays", "parameter_groups", "autocast", "default_threads", "cpu_threads", "progress_bar",
    "distributed", "from_rank0", "process_device", "run_command", "field_comments", "add_config_arguments", "config_from_args", "print_summary",
]


def cosine_schedule(step: int, total_steps: int, warmup_steps: int, min_ratio: float = 0.0) -> float:
    """Learning-rate multiplier at ``step``: linear warm-up to 1, then a half cosine down to ``min_ratio``.

    >>> cosine_schedule(0, 100, 10), cosine_schedule(10, 100, 10), cosine_schedule(100, 100, 10, 0.1)
    (0.1, 1.0, 0.1)
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))  # 0 -> 1
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


SPEED_MARK = 10  # steps a budgeted run takes before it measures its speed (the first ones compile and warm caches)


def budget_steps(step: int, elapsed: float, budget: float, max_steps: int, mark: tuple[int, float] | None) -> int:
    """The length of the cosine schedule of a run that must stop after ``budget`` seconds (``--max-minutes``).

    The steps done so far plus the measured speed times the time left, at least ``step + 1`` and at most
    ``max_steps``. The speed is measured from ``mark = (step, seconds)``, taken once the first :data:`SPEED_MARK`
    steps are done; before that (``mark`` None, or no time since) the plan stays ``max_steps``.

    >>> budget_steps(20, 10.0, 60.0, 1000, mark=(10, 5.0))  # 2 steps/s since the mark, 50 s left: 20 + 100
    120
    """
    if mark is None or step <= mark[0] or elapsed <= mark[1]:
        return max_steps
    rate = (step - mark[0]) / (elapsed - mark[1])  # steps per second after the warm-up steps
    return min(max_steps, max(step + 1, round(step + rate * (budget - elapsed))))


class TimeBudget:
    """A training loop's clock against its wall-time budget (``--max-minutes``), and the schedule it allows.

    ``plan(step)``: the cosine schedule's length for a run now at ``step`` (:func:`budget_steps`, the speed measured
    from :data:`SPEED_MARK` steps after ``start_step``; ``max_steps`` without a budget), or None once the budget is
    spent. ``seconds()``: wall time since the loop started."""

    def __init__(self, max_minutes: float | None, max_steps: int, start_step: int = 0):
        self.budget = max_minutes * 60 if max_minutes else None  # seconds, or None: no budget
        self.max_steps, self.start_step = max_steps, start_step
        self.mark: tuple[int, float] | None = None  # (step, seconds) where the speed measurement starts
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.t0

    def plan(self, step: int) -> int | None:
        if self.budget is None:
            return self.max_steps
        elapsed = self.seconds()
        if elapsed >= self.budget:
            return None
        if self.mark is None and step - self.start_step >= SPEED_MARK:
            self.mark = (step, elapsed)
        return budget_steps(step, elapsed, self.budget, self.max_steps, self.mark)

    def agreed_plan(self, step: int, device: torch.device) -> int | None:
        """:meth:`plan` as process 0 sees it, on every DDP process (each measures its own clock, but all must stop at
        the same step and use the same learning rate); None once the budget is spent."""
        planned = self.plan(step)
        if self.budget is None:
            return planned
        over, agreed = from_rank0(float(planned is None), planned or 0, device=device)
        return None if over else int(agreed)

    def lr_factor(self, step: int, planned: int, warmup_steps: int, min_ratio: float) -> float:
        """The learning-rate multiplier at ``step`` of a ``planned``-step cosine schedule; with a budget the warm-up
        is at most a fifth of the planned run (:func:`warmup_for`: short runs, short warm-up)."""
        warmup = warmup_for(planned, warmup_steps) if self.budget is not None else warmup_steps
        return cosine_schedule(step, planned, warmup, min_ratio)


def warmup_for(planned: int, warmup_steps: int) -> int:
    """The warm-up of a ``planned``-step schedule: ``warmup_steps``, but at most a fifth of the run (at least 1)."""
    return min(warmup_steps, max(1, planned // 5))


def decays(name: str, parameter: Tensor) -> bool:
    """Weight decay only for weight matrices: not for gains, biases, the class token, the temperature (all 1-d
    or scalars), nor for the token / position embeddings."""
    return parameter.ndim >= 2 and "embed" not in name


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two AdamW groups: the decayed weight matrices and everything else (decay 0)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    return [
        {"params": [p for n, p in named if decays(n, p)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if not decays(n, p)], "weight_decay": 0.0},
    ]


def autocast(device: torch.device) -> Any:
    """Mixed precision (bfloat16) on CUDA only; on other devices a context that does nothing (fp32)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def default_threads() -> int:
    """All CPU cores but one (at least one). On a small machine shared with other work (the notebook, another
    process) this is often *faster* than all cores: a step waits for its slowest thread, and a thread that
    has to wait for a busy core stalls the whole step (measured: 0.4 s/step with one thread, 4.8 s with two)."""
    return max(1, (os.cpu_count() or 1) - 1)


@contextlib.contextmanager
def cpu_threads(n: int) -> Any:
    """Use ``n`` torch CPU threads inside the ``with`` block, and the previous number again afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def distributed() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def from_rank0(*values: float, device: torch.device) -> list[float]:
    """Process 0's ``values`` on every process: with a time budget each process measures its own clock, but
    all must stop at the same step and use the same learning rate."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    flags = torch.tensor(values, dtype=torch.float64, device=device)
    dist.broadcast(flags, src=0)
    return flags.tolist()


def process_device(device: str | torch.device | None, rank: int, world: int) -> torch.device:
    """The device this process trains on: ``device`` (default :func:`mmcore.get_device`); under DDP on CUDA, the
    GPU of this process's ``LOCAL_RANK``."""
    device = torch.device(device) if device is not None else get_device()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    return device


def run_command(entry: str, argv: list[str], config: Any, train: Any) -> Any:
    """What every training command's ``main`` does once its options are parsed into ``config``: under ``torchrun``
    (``WORLD_SIZE`` > 1) start and end the process group around ``train(config, command=...)``; the command recorded
    in the card is the one as typed; process 0 prints the summary. Returns ``train``'s result."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    launcher = f"torchrun --nproc_per_node={world} -m {entry}" if world > 1 else f"python -m {entry}"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = distributed()[0]
    try:
        result = train(config, command=f"{launcher} {shlex.join(argv)}")
    finally:
        if world > 1:
            dist.destroy_process_group()
    print_summary(result.metrics if rank == 0 else None, result.path)
    return result


def progress_bar(total: int, enabled: bool, desc: str) -> Any:
    """A tqdm bar of ``total`` steps labelled ``desc`` (notebook-aware), or None when ``enabled`` is False."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)


def field_comments(config_cls: type) -> dict[str, str]:
    """Each dataclass field's comment (the text after ``#`` on its line): the command-line option's help."""
    source = inspect.getsource(config_cls)
    return dict(re.findall(r"^\s+(\w+): [^#\n]*#\s*(.+)$", source, flags=re.M))


def add_config_arguments(parser: argparse.ArgumentParser, config_cls: type,
                         optional_types: dict[str, type] | None = None) -> argparse.ArgumentParser:
    """One ``--flag`` per field of the dataclass ``config_cls``, with its default and its comment as help.

    Booleans become ``--flag / --no-flag``, tuples take several values; ``optional_types`` gives the type of the
    fields whose default is None (e.g. ``{"out": str}``).
    """
    comments = field_comments(config_cls)
    for f in fields(config_cls):
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{comments.get(f.name, '')} (default: {f.default!r})".replace("%", "%%")
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text)
        elif isinstance(f.default, tuple):
            parser.add_argument(flag, nargs="+", type=type(f.default[0]), default=f.default, help=help_text)
        else:
            kind = (optional_types or {}).get(f.name, type(f.default))
            parser.add_argument(flag, type=kind, default=f.default, help=help_text)
    return parser


def config_from_args(config_cls: type, args: dict[str, Any]) -> Any:
    """The dataclass ``config_cls`` from parsed options (lists of values become tuples)."""
    return config_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in args.items()})


def run_card(training: dict[str, Any], command: str, seconds: float, metrics: dict[str, float],
             history: dict[str, list] | None = None, **fields_: Any) -> dict[str, Any]:
    """What every training command writes into its checkpoint's card: the config (``training``), the command that
    reproduces the run, its seed, ``fields_`` (step, parameters, device, ...), the training time, the date, the torch
    version, the final metrics (4 decimals) and the loss history (5 decimals)."""
    card = {"training": training, "command": command, "seed": training.get("seed"), **fields_,
            "train_seconds": round(seconds, 1),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "metrics": {k: round(v, 4) for k, v in metrics.items()}}
    if history is not None:
        card["history"] = {k: [round(x, 5) if isinstance(x, float) else x for x in v] for k, v in history.items()}
    return card


def print_summary(metrics: dict[str, float] | None, path: Any = None) -> None:
    """What a training command prints at the end: one ``name: value`` line per metric, then where it saved."""
    if metrics:
        print("\n".join(f"{k}: {v:.4f}" for k, v in metrics.items()))
    if path is not None:
        print(f"saved {path}")
