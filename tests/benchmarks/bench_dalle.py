"""Benchmark of DALL-E sampling (:mod:`mmcore.dalle`): key/value-cache speed, and fidelity refereed by the judge.

Run it as a script: ``python tests/benchmarks/bench_dalle.py [--checkpoint shapes-dalle] [--seen 12] [--n 8]
[--guidance 1 3] [--rerank 1] [--lang both] [--device cpu] [--threads 1]``. It has no ``test_*`` function, so pytest
does not collect it.

1. **Speed.** The same model samples the same ``--speed-n`` images (one prompt, guided) once with the key/value cache
   and once re-running the whole sequence for every code; both give the same codes (checked), and the ratio of the
   times is printed; the benchmark exits non-zero below 5x or when the codes differ.
2. **Fidelity.** For the "seen" (training) and the "heldout" (shape, colour) compositions, ``--n`` images per prompt
   ``"a {colour} {shape}"`` / ``"একটি {colour} {shape}"`` are sampled for each guidance scale, and the judge
   (:mod:`mmcore.judge`) says whether each is clean and shows the right shape and colour. Each row is reported
   without re-ranking (all ``n``) and with re-ranking (the best ``--rerank`` of the ``n``, judged on the same
   samples) by each ``--rerank-by`` score: CLIP alone (the paper), the model's likelihood, or both.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for a plain checkout

import torch  # noqa: E402

from mmcore import dalle, judge  # noqa: E402
from mmcore.dalle import rerank_images, sample_pair_images  # noqa: E402
from mmcore.data import HELDOUT, seen_pairs  # noqa: E402
from mmcore.sampling import RERANK_BY  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed(model: dalle.DALLE, n: int, guidance: float | None, repeats: int = 1) -> tuple[float, float, bool]:
    """Seconds to sample ``n`` images' codes with and without the cache (best of ``repeats``), and whether they
    agree."""
    device = model.text_pos_embed.device
    text = dalle.tokenize("a red circle", model).to(device).expand(n, -1)  # (n, Lt)
    times, codes = {}, {}
    for use_cache in (True, False):
        best = float("inf")
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            codes[use_cache] = model.sample_codes(text, guidance, generator=torch.Generator().manual_seed(0),
                                                  use_cache=use_cache)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
        times[use_cache] = best
    return times[True], times[False], bool((codes[True] == codes[False]).all())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="shapes-dalle", help="'shapes-dalle' or a .safetensors path")
    parser.add_argument("--seen", type=int, default=12, help="seen (training) compositions to prompt for")
    parser.add_argument("--heldout", type=int, default=len(HELDOUT), help="held-out compositions to prompt for")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--rerank", type=int, default=1, help="keep this many of the n by CLIP score")
    parser.add_argument("--rerank-by", nargs="+", default=list(RERANK_BY), choices=RERANK_BY,
                        help="re-ranking scores to compare (each judged on the same samples)")
    parser.add_argument("--guidance", type=float, nargs="+", default=None,
                        help="guidance scales to compare (default: 1 and the checkpoint's)")
    parser.add_argument("--top-k", type=int, default=None, help="override the checkpoint's top-k (0: none)")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--lang", choices=("en", "bn", "both"), default="both")
    parser.add_argument("--speed-n", type=int, default=8, help="images in the cache speed test (0: skip it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    model = dalle.load(args.checkpoint, device=device)
    dalle.generate("a red circle", model, n=1, rerank=1)  # load the helper models outside the timing
    print(f"model: {args.checkpoint} ({model.num_parameters():,} parameters, width {model.cfg.width}, "
          f"{model.cfg.layers} layers), device {device}; sampling defaults {model.sample_config}")
    overrides = {}
    if args.top_k is not None:
        overrides["top_k"] = args.top_k or None
    if args.temperature is not None:
        overrides["temperature"] = args.temperature

    if args.speed_n:
        guidance = model.sample_config.guidance_scale
        speed(model, 2, guidance)  # warm-up
        cached, uncached, same = speed(model, args.speed_n, guidance, repeats=2 if device.type == "cuda" else 1)
        print(f"\nspeed ({args.speed_n} images, guided, {model.cfg.image_length} codes each): cached {cached:.3f} s, "
              f"uncached {uncached:.3f} s -> KV-cache speed-up {uncached / cached:.1f}x "
              f"(target >= 5x); identical codes: {same}")
        if uncached / cached < 5 or not same:
            sys.exit(f"the key/value cache must be >= 5x faster and give identical codes: {uncached / cached:.1f}x, "
                     f"identical: {same}")

    referee = judge.load()
    langs = ("en", "bn") if args.lang == "both" else (args.lang,)
    scales = args.guidance or sorted({1.0, model.sample_config.guidance_scale})
    splits = {"seen": seen_pairs(args.seen), "heldout": sorted(HELDOUT)[: args.heldout]}
    print(f"\nfidelity = clean AND right shape AND right colour (the judge); {args.n} samples per prompt, "
          f"languages {', '.join(langs)}; rerank = best {args.rerank} of {args.n} by the named score")
    header = (f"{'split':8s} {'guidance':>8s} {'rerank':>22s} {'fidelity':>9s} {'shape':>6s} {'colour':>7s} "
              f"{'clean':>6s} {'images':>7s} {'s/img':>6s}")
    print(header)
    for scale in scales:
        for split, pairs in splits.items():
            if not pairs:
                continue
            t0 = time.perf_counter()
            prompts, wanted, images, codes = sample_pair_images(model, pairs, args.n, args.seed, langs,
                                                                guidance_scale=scale, **overrides)
            per_image = (time.perf_counter() - t0) / (images.shape[0] * images.shape[1])  # sampling + decoding
            rows = [("all", referee.report(images, wanted))]
            if args.rerank:
                for by in args.rerank_by:
                    best = rerank_images(model, prompts, images, codes, args.rerank, by)
                    rows.append((f"{args.rerank}/{args.n} {by}", referee.report(best, wanted)))
            for label, r in rows:
                print(f"{split:8s} {scale:8.1f} {label:>22s} {r['fidelity']:9.1%} {r['shape']:6.1%} {r['color']:7.1%} "
                      f"{r['clean']:6.1%} {int(r['images']):7d} {per_image:6.3f}", flush=True)


if __name__ == "__main__":
    main()
