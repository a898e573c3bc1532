"""Does the phrasing matter? CLIP zero-shot and the three generators on prompts written the way people type them.

Run it as a script: ``python tests/benchmarks/bench_phrasing.py [--seeds 2026 7 11] [--guided 1] [--threads 2]
[--skip-generators] [--skip-clip] [--generators dalle unclip guided] [--dalle PATH]
[--unclip PATH] [--compare-clip PATH]``. It has no ``test_*`` function, so pytest does not collect it.

Every prompt comes from :data:`mmcore.data.UNSEEN_PHRASINGS`: 12 phrasings per language that no training caption
and no prompt template uses ("i see a red circle", "দেখো, একটা লাল বৃত্ত!", ...), each used alone.

1. **CLIP** (``shapes-tiny``): zero-shot over the 48 (shape, colour) classes on 600 pictures of the *held-out*
   compositions per seed, one phrasing at a time (no prompt ensembling): joint, shape and colour accuracy per
   phrasing and language, and the mean and the worst phrasing. ``--compare-clip PATH`` reports another CLIP
   checkpoint the same way, in the same run (e.g. the checkpoint before the phrasing fine-tune, from git history:
   ``git show <commit>:data/checkpoints/shapes-tiny.safetensors > runs/old.safetensors``; it is read with the
   course tokenizer).
2. **Generators**, one picture per prompt, no re-ranking, refereed by the independent judge (:mod:`mmcore.judge`:
   clean, right shape, right colour): for 6 seen and the 6 held-out (shape, colour) pairs, DALL-E and unCLIP draw every
   phrasing of both languages (288 pictures each); VQGAN+CLIP, which optimises each picture (seconds per picture),
   draws ``--guided`` phrasings per pair and language, cycling through the phrasings. Fidelity seen / held-out /
   their mean, per language, and seconds per picture, measured in the same run.

It exits non-zero when a measured floor is missed (:data:`FLOORS`: CLIP's mean and worst phrasing per language; each
generator's mean of seen and held-out fidelity over both languages). The floors sit below the measured rates by the
margin the sample allows (the README gives the rates); issue 11's targets (>= 85 % for every generator, >= 95 % for
DALL-E) are printed beside them, and unCLIP and VQGAN+CLIP do not reach theirs yet.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for a plain checkout

import torch  # noqa: E402

from mmcore import clip as clip_module  # noqa: E402
from mmcore import dalle, guided, judge, unclip  # noqa: E402
from mmcore.data import HELDOUT, LANGS, UNSEEN_PHRASINGS, phrased_prompts, seen_pairs  # noqa: E402
from mmcore.judge import matches  # noqa: E402
from mmcore.tokenizer import BPETokenizer  # noqa: E402

#: Floors this benchmark asserts. CLIP (3 x 600 pictures per phrasing): measured 100.0 % mean / 99.9 % worst in both
#: languages. Generators, the mean of seen and held-out fidelity over both languages: DALL-E 97.2 % of 288 pictures
#: (95 % Wilson interval about 94.6-98.6 %), unCLIP 69.4 % of 288 (about 63.9-74.5 %), VQGAN+CLIP 58.3 % of 24
#: (about 38.8-75.5 %).
FLOORS = {"clip_mean": 0.97, "clip_worst": 0.95, "dalle": 0.93, "unclip": 0.60, "guided": 0.35}
TARGETS = {"dalle": 0.95, "unclip": 0.85, "guided": 0.85}  # issue 11
from mmcore.weights import load_checkpoint  # noqa: E402
from mmcore.zeroshot import eval_set, phrasing_report  # noqa: E402


def clip_phrasing(name: str, model: Any, tokenizer: Any, seeds: list[int]) -> list[tuple[float, float]]:
    """Prints the report; returns (mean over phrasings, worst phrasing) per language."""
    print(f"CLIP {name}: held-out compositions, 600 pictures per seed, seeds {seeds}, each phrasing alone")
    runs = [phrasing_report(model, tokenizer, *eval_set("heldout", 600, seed)) for seed in seeds]
    summary = []
    for lang in LANGS:
        rows = []
        for phrasing in UNSEEN_PHRASINGS[lang]:
            joint = [r[lang][phrasing]["joint"] for r in runs]
            shape = min(r[lang][phrasing]["shape"] for r in runs)
            color = min(r[lang][phrasing]["color"] for r in runs)
            rows.append((statistics.mean(joint), min(joint), shape, color, phrasing))
        for mean, low, shape, color, phrasing in rows:
            print(f"  {lang}  joint {mean:6.1%} (worst seed {low:6.1%})  shape {shape:6.1%}  colour {color:6.1%}  {phrasing}")
        means = [r[0] for r in rows]
        print(f"  {lang}  mean over phrasings {statistics.mean(means):6.1%}, worst phrasing {min(means):6.1%}, "
              f"worst shape {min(r[2] for r in rows):6.1%}, worst colour {min(r[3] for r in rows):6.1%}")
        summary.append((statistics.mean(means), min(means)))
    return summary


def generator_fidelity(name: str, make: Callable[[str, int], Any], referee: judge.Judge, pairs: list[tuple[str, str]],
                       per_pair: int | None) -> float:
    """``make(prompt, seed) -> PIL image``; ``per_pair`` phrasings per pair and language (None: all of them).
    Prints the report; returns the mean of seen and held-out fidelity over both languages."""
    hits: dict[tuple[str, bool], list[bool]] = {}
    prompts = phrased_prompts(pairs, per_pair)
    t0 = time.perf_counter()
    predictions = referee.predict([make(text, i) for i, (text, _, _) in enumerate(prompts)])
    seconds = (time.perf_counter() - t0) / len(prompts)  # drawing and judging
    for prediction, (_, lang, wanted) in zip(predictions, prompts):
        hits.setdefault((lang, (wanted["shape"], wanted["color"]) in HELDOUT), []).append(matches(prediction, wanted))
    rate = lambda xs: sum(xs) / len(xs)
    parts = [f"{lang}: seen {rate(hits[(lang, False)]):6.1%} held-out {rate(hits[(lang, True)]):6.1%}" for lang in LANGS]
    seen = [x for (_, held), v in hits.items() if not held for x in v]
    held = [x for (_, held), v in hits.items() if held for x in v]
    print(f"  {name:11s} {' | '.join(parts)} | both: seen {rate(seen):6.1%} held-out {rate(held):6.1%} "
          f"mean {(rate(seen) + rate(held)) / 2:6.1%} of {len(prompts)} pictures, {seconds:.2f} s/picture")
    return (rate(seen) + rate(held)) / 2


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026, 7, 11], help="evaluation streams for CLIP")
    parser.add_argument("--guided", type=int, default=1, help="VQGAN+CLIP phrasings per pair and language")
    parser.add_argument("--skip-generators", action="store_true")
    parser.add_argument("--skip-clip", action="store_true")
    parser.add_argument("--generators", nargs="+", default=["dalle", "unclip", "guided"],
                        choices=["dalle", "unclip", "guided"], help="which generators to measure")
    parser.add_argument("--dalle", default="shapes-dalle", help="the DALL-E checkpoint (a name or a path)")
    parser.add_argument("--unclip", default="shapes-unclip", help="the unCLIP checkpoint (a name or a path)")
    parser.add_argument("--compare-clip", type=Path, help="another CLIP checkpoint (course tokenizer) to report")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    missed: list[str] = []
    if not args.skip_clip:
        model, _, tokenizer = clip_module.load("shapes-tiny", device="cpu")
        for lang, (mean, worst) in zip(LANGS, clip_phrasing("shapes-tiny (shipped)", model, tokenizer, args.seeds)):
            if mean < FLOORS["clip_mean"] or worst < FLOORS["clip_worst"]:
                missed.append(f"CLIP {lang}: mean {mean:.1%} / worst {worst:.1%} (floors {FLOORS['clip_mean']:.0%} / "
                              f"{FLOORS['clip_worst']:.0%})")
    if args.compare_clip:
        sd, card = load_checkpoint(args.compare_clip)
        other = clip_module.CLIP(clip_module.CLIPConfig.from_dict(card["config"]))
        other.load_state_dict(sd)
        clip_phrasing(f"{args.compare_clip}", other.eval(), BPETokenizer.course(), args.seeds)
    if not args.skip_generators:
        missed += generators(args)
    if missed:
        sys.exit("missed floors:\n  " + "\n  ".join(missed))


def generators(args: argparse.Namespace) -> list[str]:
    """Each chosen generator's fidelity report; returns the floors it missed."""
    measured: dict[str, float] = {}

    referee = judge.load()
    pairs = seen_pairs(6) + sorted(HELDOUT)
    print(f"generators: judged fidelity, one picture per prompt, no re-ranking; {len(pairs)} pairs "
          f"({len(HELDOUT)} held-out), phrasings of both languages")
    if "dalle" in args.generators:
        dalle_model = dalle.load(args.dalle, device="cpu")
        measured["dalle"] = generator_fidelity(f"DALL-E {args.dalle}",
                                               lambda p, s: dalle.generate(p, dalle_model, n=1, seed=s).image,
                                               referee, pairs, None)
    if "unclip" in args.generators:
        unclip_model = unclip.load(args.unclip, device="cpu")
        measured["unclip"] = generator_fidelity(f"unCLIP {args.unclip}",
                                                lambda p, s: unclip.generate(p, unclip_model, n=1, seed=s).image,
                                                referee, pairs, None)
    if "guided" in args.generators:
        guided.generate("a red circle", steps=1)  # load the default models once, outside the timing
        measured["guided"] = generator_fidelity("VQGAN+CLIP", lambda p, s: guided.generate(p, seed=s).image, referee,
                                                pairs, args.guided)
    for name, value in measured.items():
        print(f"  {name}: mean {value:.1%}, floor {FLOORS[name]:.0%}, issue 11's target {TARGETS[name]:.0%}"
              f"{'' if value >= TARGETS[name] else ' (not reached)'}")
    return [f"{name}: mean {value:.1%} < floor {FLOORS[name]:.0%}" for name, value in measured.items()
            if value < FLOORS[name]]


if __name__ == "__main__":
    main()
