"""Benchmark of the Shapes generator: images (with captions) per second on one thread.

Run it as a script: ``python tests/benchmarks/bench_shapes.py [--n 5000] [--repeats 3] [--sizes 32 64]``.
It has no ``test_*`` function, so pytest does not collect it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(variable, "1")  # one thread, before NumPy is imported
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for a plain checkout

from mmcore.data import ShapesDataset  # noqa: E402


def images_per_second(image_size: int, n: int, repeats: int) -> float:
    """Best of ``repeats`` runs of drawing all ``n`` items (image + caption) of a fresh dataset."""
    best = float("inf")
    for repeat in range(repeats):
        start = time.perf_counter()
        dataset = ShapesDataset("train", n=n, image_size=image_size, seed=repeat, lang="both")
        for index in range(n):
            dataset[index]
        best = min(best, time.perf_counter() - start)
    return n / best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="images per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; the best is reported")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64], help="image sizes in pixels")
    args = parser.parse_args(argv)
    for image_size in args.sizes:
        rate = images_per_second(image_size, args.n, args.repeats)
        print(f"{image_size:>4} px: {rate:8,.0f} images/s  (n={args.n}, best of {args.repeats}, one thread)")


if __name__ == "__main__":
    main()
