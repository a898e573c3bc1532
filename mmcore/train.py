"""One entry point for every training command: ``python -m mmcore.train <model> [--option value ...]``.

Each model has its own training module, readable top to bottom; this one only dispatches to it::

    python -m mmcore.train clip ...     # mmcore.train_clip   (CLIP on Shapes; under torchrun: DDP)
    python -m mmcore.train vqgan ...    # mmcore.train_vqgan  (the VQGAN of lesson 03)
    python -m mmcore.train dalle ...    # mmcore.train_dalle  (DALL-E, lesson 05)
    python -m mmcore.train unclip ...   # mmcore.train_unclip (unCLIP's prior and decoder, lesson 06)
    python -m mmcore.train judge ...    # mmcore.train_judge  (the independent judge)
    python -m mmcore.train distill ...  # mmcore.train_distill (a text tower for a new language, lesson 08)

``python -m mmcore.train <model> --help`` lists that model's options (every field of its config). Calling a module
directly (``python -m mmcore.train_vqgan ...``) does the same; the checkpoint's card records the command as typed.
"""
from __future__ import annotations

import importlib
import sys
from typing import Any, Sequence

__all__ = ["COMMANDS", "main"]

COMMANDS = {"clip": "train_clip", "vqgan": "train_vqgan", "dalle": "train_dalle", "unclip": "train_unclip",
            "judge": "train_judge", "distill": "train_distill"}  # the model's name on the command line -> its training module


def main(argv: Sequence[str] | None = None) -> Any:
    """Run ``mmcore.<COMMANDS[model]>.main`` with the rest of the arguments; returns what it returns."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        given = f"got {argv[0]!r}; " if argv and not argv[0].startswith("-") else ""
        sys.exit(f"usage: python -m mmcore.train {{{','.join(COMMANDS)}}} [--option value ...]\n"
                 f"{given}name the model to train first, e.g. `python -m mmcore.train clip --max-minutes 5`")
    module = importlib.import_module(f"mmcore.{COMMANDS[argv[0]]}")
    return module.main(argv[1:], entry=f"mmcore.train {argv[0]}")


if __name__ == "__main__":
    main()
