"""mmcore: the small PyTorch package behind the multimodal course.

Every model of the course (CLIP, VQGAN, DALL-E, unCLIP) is built from scratch in this package; the lessons in
``lessons/en`` and ``lessons/bn`` import it. Submodules are imported on demand (``import mmcore.data``) so that
``import mmcore`` stays fast.
"""
from __future__ import annotations

import os
import random

__version__ = "0.1.0"
__all__ = ["get_device", "set_seed", "quick_mode", "__version__"]


def get_device(prefer: str | None = None):
    """The best available ``torch.device``: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` (or the ``MMCORE_DEVICE`` environment variable) forces one, e.g. ``"cpu"``.
    """
    import torch

    choice = prefer or os.environ.get("MMCORE_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int = 0) -> None:
    """Seed Python's, NumPy's and PyTorch's random generators (all devices) for a reproducible run."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def quick_mode() -> bool:
    """True when ``MMCORE_QUICK`` is set to a true value: CI sets it so that training loops run only a few steps."""
    return os.environ.get("MMCORE_QUICK", "").strip().lower() in {"1", "true", "yes", "on"}
