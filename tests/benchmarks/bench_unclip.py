"""Benchmark of unCLIP (:mod:`mmcore.unclip`), and of the course's three generators side by side, refereed by the judge.

Run it as a script: ``python tests/benchmarks/bench_unclip.py [--seen 12] [--n 4] [--lang both] [--compare-n 4]
[--compare-guided 1] [--threads 2] [--skip-compare]``. It has no ``test_*`` function, so pytest does not collect it.

1. **unCLIP fidelity.** For the "seen" (training) and the "heldout" (shape, colour) compositions, ``--n`` pictures per
   prompt ``"a {colour} {shape}"`` / ``"একটি {colour} {shape}"`` go through the prior and the decoder, and the judge
   (:mod:`mmcore.judge`) says whether each is clean and shows the right shape and colour. The same prompts are also
   decoded from the *text* embedding without the prior (the ablation of lesson 06). Then image variations of
   "test" and "heldout" pictures: does the variation keep the source's shape and colour?
2. **Three generators, the same prompts** (English): VQGAN+CLIP with the prior over codes (``guided.generate``,
   ``--compare-guided`` pictures per prompt: it optimises each picture, so it is slow), DALL-E (``--compare-n``,
   its default sampling, no re-ranking) and unCLIP (``--compare-n``). Fidelity seen / held-out and seconds per picture,
   measured in the same run on the same machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for a plain checkout

import torch  # noqa: E402

from mmcore import dalle, guided, judge, unclip  # noqa: E402
from mmcore.data import HELDOUT, pair_prompt, seen_pairs  # noqa: E402
from mmcore.judge import matches  # noqa: E402
from mmcore.train_unclip import judge_variations  # noqa: E402
from mmcore.unclip import sample_pair_images  # noqa: E402


def unclip_fidelity(model: unclip.UnCLIP, referee: judge.Judge, seen: int, n: int, langs: tuple[str, ...]) -> None:
    print(f"unCLIP fidelity (judge: clean + right shape + right colour), {n} pictures per prompt, langs {langs}")
    for name, pairs in (("seen", seen_pairs(seen)), ("heldout", sorted(HELDOUT))):
        for use_prior in (True, False):
            t0 = time.perf_counter()
            _, wanted, images = sample_pair_images(model, pairs, n, seed=0, langs=langs, use_prior=use_prior)
            seconds = (time.perf_counter() - t0) / images.shape[0] / images.shape[1]
            r = referee.report(images, wanted)
            label = "prior + decoder" if use_prior else "no prior (text emb.)"
            print(f"  {name:8s} {label:21s} fidelity {r['fidelity']:6.1%} of {int(r['images']):3d}  clean "
                  f"{r['clean']:6.1%}  shape+colour {r['shape_color']:6.1%}  {seconds:.3f} s/picture")
    for split in ("test", "heldout"):
        r = judge_variations(model, referee, split, n_images=48, per_image=2)
        print(f"  variations of {split:8s} pictures: keep shape + colour {r['fidelity']:6.1%} of {int(r['images'])}")


def compare(referee: judge.Judge, pairs: list[tuple[str, str]], n: int, n_guided: int) -> None:
    print(f"three generators, the same {len(pairs)} English prompts ({sum(p in HELDOUT for p in pairs)} held-out)")
    dalle_model = dalle.load("shapes-dalle", device="cpu")
    unclip_model = unclip.load("shapes-unclip", device="cpu")
    makers = {
        "VQGAN+CLIP": (n_guided, lambda p, k: [guided.generate(p, seed=s).image for s in range(k)]),
        "DALL-E": (n, lambda p, k: dalle.generate(p, dalle_model, n=k, seed=0).images),
        "unCLIP": (n, lambda p, k: unclip.generate(p, unclip_model, n=k, seed=0).images),
    }
    guided.generate("a red circle", steps=1)  # load the default models once, outside the timing
    print(f"  {'generator':11s} {'all':>7s} {'seen':>7s} {'held-out':>9s} {'pictures':>9s} {'s/picture':>10s}")
    for name, (k, make) in makers.items():
        hits, kinds, t0 = [], [], time.perf_counter()
        for shape, color in pairs:
            images = make(pair_prompt(shape, color), k)
            wanted = {"shape": shape, "color": color}
            hits += [matches(p, wanted) for p in referee.predict(images)]
            kinds += [(shape, color) in HELDOUT] * len(images)
        seconds = (time.perf_counter() - t0) / len(hits)
        seen = [h for h, held in zip(hits, kinds) if not held]
        held = [h for h, held in zip(hits, kinds) if held]
        print(f"  {name:11s} {sum(hits) / len(hits):7.1%} {sum(seen) / len(seen):7.1%} {sum(held) / len(held):9.1%} "
              f"{len(hits):9d} {seconds:10.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seen", type=int, default=12, help="seen (shape, colour) pairs (of 24)")
    parser.add_argument("--n", type=int, default=4, help="unCLIP pictures per prompt and language")
    parser.add_argument("--lang", choices=["en", "bn", "both"], default="both")
    parser.add_argument("--compare-n", type=int, default=4, help="DALL-E / unCLIP pictures per prompt, comparison")
    parser.add_argument("--compare-guided", type=int, default=1, help="VQGAN+CLIP pictures per prompt, comparison")
    parser.add_argument("--skip-compare", action="store_true", help="only the unCLIP fidelity")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    referee = judge.load()
    langs = ("en", "bn") if args.lang == "both" else (args.lang,)
    unclip_fidelity(unclip.load("shapes-unclip", device="cpu"), referee, args.seen, args.n, langs)
    if not args.skip_compare:
        compare(referee, seen_pairs(args.seen) + sorted(HELDOUT), args.compare_n, args.compare_guided)


if __name__ == "__main__":
    main()
