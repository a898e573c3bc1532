"""mmcore: the small PyTorch package behind the multimodal course.

Every model of the course (CLIP, VQGAN, DALL-E, unCLIP) is built from scratch in this package; the lessons in
``lessons/en`` and ``lessons/bn`` import it. Submodules are imported on demand (``import mmcore.data``) so that
``import mmcore`` stays fast.

One vocabulary for every model (``clip``, ``vqgan``, ``dalle``, ``unclip``, ``judge``):

* ``<module>.load(name_or_path="<shipped name>", device=None)``: the shipped checkpoint (``"shapes-tiny"``,
  ``"shapes-vqgan"``, ``"shapes-dalle"``, ``"shapes-unclip"``, ``"shapes-judge"``; no network) or a file path, in
  eval mode, float32, on ``device`` (default :func:`get_device`). ``<module>.available_models()`` lists the names.
  (``clip.load`` returns ``(model, preprocess, tokenizer)`` like OpenAI's ``clip`` package, and also reads OpenAI's
  weights.) Safetensors only: reading a checkpoint never runs code.
* ``model.save(path, dtype=None)``: safetensors weights (floats cast to ``dtype`` if given) and a JSON card, in the
  file and beside it, whose ``"model"`` is the class's full name (``"mmcore.dalle.DALLE"``) and which holds the
  config and, for a training run, the command, metrics and history (:func:`mmcore.training.run_card`).
* Configs are dataclasses with a comment per field and named presets, one naming rule for all: ``tiny()`` is the size
  of the shipped course model (``CLIPConfig.tiny()`` for ``shapes-tiny``, ``VQGANConfig.tiny()``,
  ``DALLEConfig.tiny()``, ``JudgeConfig.tiny()``), ``toy()`` a smaller one for tests and quick live runs (where one
  is needed), real models by their own names (``CLIPConfig.vit_b_32()``); ``to_dict`` / ``from_dict`` come from
  :class:`mmcore.weights.DictConfig`.
* Models map tensors to tensors (images as floats in [0, 1], shape comments everywhere). The three text-to-picture
  pipelines are module functions that take the models they use (the shipped ones when left out) and return one
  result type, :class:`mmcore.generation.Generation` (``.images`` as PIL, ``.pixels``, ``.codes``, ``.scores``,
  ``.seconds``)::

      guided.generate("a red circle", clip=None, vqgan=None, seed=0)        # lesson 04 (+ frames, losses)
      dalle.generate("a red circle", model=None, n=8, rerank=None)          # lesson 05
      unclip.generate("a red circle", model=None, n=8)                      # lesson 06 (+ embeddings)
      unclip.variations(picture, model=None, n=8); unclip.interpolate(a, b, model=None, steps=6)

  Conversions between PIL
  images and tensors, and CLIP's normalisation, live in :mod:`mmcore.images`; the sampling maths the generators
  share (top-k / top-p, guidance, re-ranking) in :mod:`mmcore.sampling`; the Shapes world (pictures, captions,
  attribute combinations, prompts) in :mod:`mmcore.data`; the generators' pre-encoded training data in
  :mod:`mmcore.pools`; what every training command shares (the schedule fitted to a time budget, the CLI builder,
  run cards) in :mod:`mmcore.training`.
* ``python -m mmcore.train {clip,vqgan,dalle,unclip,judge,distill} [options]`` trains each model (the modules
  ``train_clip``, ``train_vqgan``, ``train_dalle``, ``train_unclip``, ``train_judge``, each with a
  ``<Model>TrainConfig`` whose fields are the options, and ``train_distill`` with its ``DistillConfig``: a text tower
  for a new language, distilled from a frozen teacher and paired with its image tower by
  ``clip.with_text_tower``); a lesson's live run calls the training function with its config.
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
