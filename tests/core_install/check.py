"""The course in a core-only install, as Colab and plain `pip install -e .` users get it (`make test-core`).

Run with the core environment's Python (no test extras installed; see the Makefile's `test-core`):

1. checks that the environment really is core-only (no pytest, nbval, open_clip, clip, transformers, faiss);
2. the real-weights path with no internet: a small random CLIP saved in OpenAI's TorchScript format is served
   from 127.0.0.1 under a test URL and its SHA-256, loaded through ``mmcore.clip.load("ViT-B/32")`` with OpenAI's
   tokenizer (shipped with the course), and used for zero-shot on scikit-image's photos in both languages
   (the numbers are meaningless: random weights; the path is the point);
3. executes every lesson and solution (quick mode, MMCORE_QUICK=1) with nbclient, which comes with JupyterLab.

Exits non-zero, naming the notebook and cell, on the first failure.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # openai_fakes
TEST_ONLY = ("pytest", "nbval", "hypothesis", "open_clip", "clip", "transformers", "faiss")


def check_core_only() -> None:
    extra = [name for name in TEST_ONLY if importlib.util.find_spec(name) is not None]
    if extra:
        sys.exit(f"not a core-only environment: {extra} are installed (test extras); use a fresh venv with `pip install -e .`")
    print(f"core-only: none of {', '.join(TEST_ONLY)} is installed")


def check_real_weights_path() -> None:
    import torch

    import mmcore.clip
    from mmcore import data
    from openai_fakes import local_server, random_openai_archive

    warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", FutureWarning)  # the fake file is made so
    with tempfile.TemporaryDirectory() as tmp, local_server() as server:
        archive = Path(tmp) / "ViT-B-32.pt"
        reference = random_openai_archive(archive)
        body = archive.read_bytes()
        sha = hashlib.sha256(body).hexdigest()
        server.files[f"/clip/models/{sha}/ViT-B-32.pt"] = body
        mmcore.clip.OPENAI_MODELS["ViT-B/32"] = server.url(f"/clip/models/{sha}/ViT-B-32.pt")
        os.environ["MMCORE_CACHE"] = str(Path(tmp) / "cache")

        model, preprocess, tokenizer = mmcore.clip.load("ViT-B/32", device="cpu")
        assert (Path(tmp) / "cache" / "ViT-B-32.pt").is_file(), "the download did not land in the cache"
        assert tokenizer.vocab_size == 49408, f"expected OpenAI's tokenizer, got {tokenizer!r}"
        photos = data.sample_photos()
        labels = {"en": ["a photo of a cat", "a photo of a dog", "a photo of a person"],
                  "bn": ["একটি বিড়ালের ছবি", "একটি কুকুরের ছবি", "একজন মানুষের ছবি"]}
        with torch.inference_mode():
            pixels = torch.stack([preprocess(p.image) for p in photos])  # (P, 3, 64, 64)
            image_emb = model.encode_image(pixels, normalize=True)
            torch.testing.assert_close(image_emb, reference.encode_image(pixels, normalize=True), atol=0, rtol=0)
            for lang, texts in labels.items():
                tokens = tokenizer(texts)  # (3, 77)
                text_emb = model.encode_text(tokens, normalize=True)
                torch.testing.assert_close(text_emb, reference.encode_text(tokens, normalize=True), atol=0, rtol=0)
                probs = (model.temperature_scale() * image_emb @ text_emb.T).softmax(-1)  # (P, 3)
                assert torch.isfinite(probs).all() and torch.allclose(probs.sum(-1), torch.ones(len(photos)))
                print(f"zero-shot ({lang}) on {len(photos)} photos, first row:", [round(v, 3) for v in probs[0].tolist()])
        mmcore.clip.load("ViT-B/32", device="cpu")  # the second load comes from the cache
        assert len(server.requests) == 1, f"expected one download, saw {server.requests}"
    print("real-weights path: download from 127.0.0.1, SHA-256 check, cache, OpenAI tokenizer, zero-shot: ok")


def notebooks() -> list[Path]:
    return sorted(p for kind in ("lessons", "solutions") for p in (ROOT / kind).glob("*/*.ipynb"))


def check_kernel_is_this_environment() -> None:
    """The notebooks' kernel ("python3") must run this environment's Python, not another one on the machine."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.prefix)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    prefix = nb.cells[0].outputs[0]["text"].strip()
    if Path(prefix).resolve() != Path(sys.prefix).resolve():
        sys.exit(f"the python3 kernel runs {prefix}, not this environment ({sys.prefix}): "
                 "install this environment's kernel with `python -m ipykernel install --sys-prefix --name python3`")


def run_notebooks() -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    os.environ["MMCORE_QUICK"] = "1"  # the kernel inherits it
    check_kernel_is_this_environment()
    total = time.perf_counter()
    for path in notebooks():
        start = time.perf_counter()
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
        except CellExecutionError as error:
            sys.exit(f"FAILED {path.relative_to(ROOT)} in a core-only install:\n{str(error)[-3000:]}")
        print(f"ok {path.relative_to(ROOT)} ({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"{len(notebooks())} notebooks ran in a core-only install in {time.perf_counter() - total:.0f} s")


def main() -> None:
    os.environ.setdefault("JUPYTER_PREFER_ENV_PATH", "1")  # this environment's kernel spec before the user's
    start = time.perf_counter()
    check_core_only()
    check_real_weights_path()
    if "--no-notebooks" not in sys.argv:
        run_notebooks()
    print(f"core-install check passed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
