"""Benchmark: mmcore's OpenAI-mode BPETokenizer against open_clip's SimpleTokenizer (not collected by pytest).

    python tests/benchmarks/bench_tokenizer.py [--n 10000] [--repeats 5]

Builds ``n`` varied captions (half Shapes captions in English and Bengali, half strings in the style of the parity
tests: mixed scripts, emoji, entities, mojibake, punctuation, numbers), checks that both tokenizers give identical
tensors, then times each (best of ``repeats``, the two interleaved, fresh tokenizer objects each time so that no cache
carries over between repeats, same process, same thread count) and prints texts/s and the speed-up.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mmcore.tokenizer import BPETokenizer  # noqa: E402
from test_tokenizer import varied_texts  # noqa: E402  (the parity tests' generator)


def captions(n: int, seed: int = 0) -> list[str]:
    half = n // 2
    try:
        from mmcore.data import caption_corpus

        shapes = caption_corpus(n=half, seed=seed)
    except ImportError:  # pragma: no cover
        shapes = varied_texts(half, seed + 1)
    # open_clip names its special tokens differently, so leave special-token strings out of the comparison
    other = [t for t in varied_texts(3 * (n - half), seed) if "<|" not in t][: n - half]
    texts = shapes + other
    random.Random(seed).shuffle(texts)
    return texts


def _run(make, texts: list[str]) -> tuple[float, float, torch.Tensor]:
    tok = make()  # a fresh object: caches start empty every time
    kwargs = {"truncate": True} if isinstance(tok, BPETokenizer) else {}  # open_clip always truncates silently
    wall, cpu = time.perf_counter(), time.process_time()
    out = tok(texts, context_length=77, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def compare(texts: list[str], repeats: int) -> dict:
    """Best-of-``repeats`` wall and CPU times of both tokenizers, runs interleaved so that load affects both."""
    from open_clip.tokenizer import SimpleTokenizer

    best = {"ref": [float("inf")] * 2, "ours": [float("inf")] * 2}
    outputs = {}
    for _ in range(repeats):
        for name, make in (("ref", SimpleTokenizer), ("ours", BPETokenizer.openai)):
            wall, cpu, outputs[name] = _run(make, texts)
            best[name] = [min(best[name][0], wall), min(best[name][1], cpu)]
    return {"identical": torch.equal(outputs["ref"], outputs["ours"]), **best}


def report(label: str, texts: list[str], result: dict) -> None:
    n = len(texts)
    (ref_wall, ref_cpu), (our_wall, our_cpu) = result["ref"], result["ours"]
    print(f"{label}: {n} texts ({len(set(texts))} distinct), identical output: {result['identical']}")
    print(f"  open_clip SimpleTokenizer: {n / ref_wall:8.0f} texts/s wall ({ref_wall:.3f} s), CPU {ref_cpu:.3f} s")
    print(f"  mmcore BPETokenizer      : {n / our_wall:8.0f} texts/s wall ({our_wall:.3f} s), CPU {our_cpu:.3f} s")
    print(f"  speed-up: {ref_wall / our_wall:.2f}x wall, {ref_cpu / our_cpu:.2f}x CPU")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"torch threads {torch.get_num_threads()}, best of {args.repeats}, interleaved")
    texts = captions(args.n)
    main_result = compare(texts, args.repeats)
    report("captions", texts, main_result)
    distinct = list(dict.fromkeys(texts))
    result = compare(distinct, args.repeats)
    report("distinct captions only", distinct, result)
    from mmcore.data import caption_corpus

    shapes = caption_corpus(n=args.n, seed=1)
    shapes_result = compare(shapes, args.repeats)
    report("Shapes captions only (en + bn)", shapes, shapes_result)
    if not (main_result["identical"] and result["identical"] and shapes_result["identical"]):
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
