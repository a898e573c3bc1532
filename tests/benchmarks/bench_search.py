"""Benchmark: exact top-k search over a large float16 embedding index, torch vs FAISS (not collected by pytest).

    python tests/benchmarks/bench_search.py [--n 100000] [--dim 512] [--queries 100] [--k 10] [--repeats 3]
                                            [--threads T]

Builds an :class:`mmcore.search.ImageIndex` of ``n`` random unit vectors stored as float16 (what ``build_index``
stores), then times top-``k`` search for ``queries`` random queries, both as one batch (``index.topk(queries)``)
and one query at a time (what a search box does). Prints milliseconds per query and the memory of the index. If
FAISS is installed (``pip install faiss-cpu``; optional), the same searches run on an exact ``IndexFlatIP`` in the
same process with the same thread count, the results are compared, and the time ratio is printed.

On a machine shared with another busy process, ``--threads 1`` gives steadier (and often faster) numbers: OpenMP
threads that wait for each other on a saturated CPU lose much more time than they gain.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from mmcore.search import ImageIndex, TopK  # noqa: E402


def best_time(fn, repeats: int) -> tuple[float, TopK]:
    """Best wall time of ``repeats`` runs of ``fn()`` (after one warm-up run), and its result."""
    out = fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def time_backend(index: ImageIndex, queries: torch.Tensor, k: int, repeats: int) -> dict:
    batch, top = best_time(lambda: index.topk(queries, k), repeats)
    one, _ = best_time(lambda: [index.topk(q, k) for q in queries[:10]], repeats)
    return {"batch_ms": 1000 * batch / len(queries), "single_ms": 1000 * one / 10, "top": top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="images in the index")
    parser.add_argument("--dim", type=int, default=512, help="embedding size (512 for ViT-B/32)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and faiss (default: torch's)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(args.n, args.dim, generator=g), dim=-1).half()
    queries = torch.randn(args.queries, args.dim, generator=g)
    threads = torch.get_num_threads()
    print(f"index: {args.n:,} x {args.dim} float16, {args.queries} queries, top-{args.k}, {threads} torch threads")

    results = {}
    exact = ImageIndex(embeddings)
    results["torch"] = time_backend(exact, queries, args.k, args.repeats)
    memory = {"torch": exact.memory_bytes}

    if importlib.util.find_spec("faiss") is not None:
        import faiss

        faiss.omp_set_num_threads(threads)  # same thread count as torch: a fair comparison
        flat = ImageIndex(embeddings, backend="faiss")
        results["faiss"] = time_backend(flat, queries, args.k, args.repeats)
        memory["faiss"] = flat.memory_bytes  # the float16 matrix + FAISS's float32 copy
    else:
        print("faiss not installed (optional: pip install faiss-cpu): torch only")

    print(f"{'backend':8} {'batched ms/query':>17} {'one-by-one ms/query':>20} {'memory MB':>10}")
    for name, r in results.items():
        print(f"{name:8} {r['batch_ms']:17.3f} {r['single_ms']:20.3f} {memory[name] / 1e6:10.1f}")
    if "faiss" in results:
        a, b = results["torch"]["top"], results["faiss"]["top"]
        same = (a.indices == b.indices).float().mean().item()
        gap = (a.scores - b.scores).abs().max().item()
        print(f"torch / faiss time: batched {results['torch']['batch_ms'] / results['faiss']['batch_ms']:.2f}x, "
              f"one-by-one {results['torch']['single_ms'] / results['faiss']['single_ms']:.2f}x "
              f"(> 1: faiss faster); same top-{args.k} indices: {same:.2%}, max score difference {gap:.1e}")


if __name__ == "__main__":
    main()
