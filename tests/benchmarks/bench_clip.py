"""Speed of our CLIP against open_clip and Hugging Face transformers (CPU, float32, the same weights, same run).

Run it as a script: ``python tests/benchmarks/bench_clip.py [--threads 2] [--rounds 10]``. It has no ``test_*``
function, so pytest does not collect it.

What it measures, with every contender given the same weights and ``torch.set_num_threads``:

* ``encode_image``: batch 8, 224 px, ViT-B/32.
* ``encode_text``: batch 64 x 77 tokens, every row 77 tokens long (end-of-text in the last column: the worst
  case, where skipping padding saves nothing), and a batch of 64 real prompts padded to 77 (our text tower runs
  only up to the last end-of-text token; open_clip and HF always run all 77 columns).
* Two architectures: open_clip's ``ViT-B-32`` (exact GELU) and ``ViT-B-32-quickgelu`` = OpenAI's ViT-B/32 (what
  ``mmcore.clip.load("ViT-B/32")`` builds); Hugging Face's ``CLIPModel(CLIPConfig())`` is the latter too.
* Rounds are interleaved (each round runs every contender once, in the same order) so that load from other
  processes hits all of them alike; we print the median and best time of each and the ratios ours / theirs.
* GFLOP/s: the nominal multiply-add count of a full forward (2 FLOP per multiply-add; the same count for every
  contender, although our last layer skips unused work) divided by the best time, next to what plain ``torch.mm``
  reaches on the same matrix shapes (the linear layers' GEMMs, no bias), timed in the same interleaved rounds -
  the ceiling for this machine.
* A training step (forward + backward + AdamW) of the tiny preset at batch 256: samples per second.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for a plain checkout

import torch  # noqa: E402

from mmcore.clip import CLIP, CLIPConfig, clip_loss  # noqa: E402


def vit_flops(cfg: CLIPConfig, batch: int) -> tuple[float, float]:
    """(all FLOPs, GEMM FLOPs of the linear layers) of a full image-tower forward; 2 FLOP per multiply-add."""
    W, n = cfg.vision_width, cfg.grid_size**2
    T = n + 1
    hidden = int(W * cfg.mlp_ratio)
    linear = 2 * batch * T * (4 * W * W + 2 * W * hidden) * cfg.vision_layers  # qkv, out, fc1, fc2
    attention = 2 * batch * 2 * T * T * W * cfg.vision_layers  # q k^T and (attn) v
    patches = 2 * batch * n * 3 * cfg.patch_size**2 * W
    return linear + attention + patches + 2 * batch * W * cfg.embed_dim, linear + patches


def text_flops(cfg: CLIPConfig, batch: int, T: int) -> tuple[float, float]:
    """(all FLOPs, GEMM FLOPs) of a full text-tower forward on T tokens (causal attention counted in full)."""
    W = cfg.text_width
    hidden = int(W * cfg.mlp_ratio)
    linear = 2 * batch * T * (4 * W * W + 2 * W * hidden) * cfg.text_layers
    attention = 2 * batch * 2 * T * T * W * cfg.text_layers
    return linear + attention + 2 * batch * W * cfg.embed_dim, linear


def gemm_shapes(tokens: int, width: int, hidden: int) -> list[tuple[int, int, int]]:
    """(M, K, N) of one block's linear layers on ``tokens`` rows: qkv, out, fc1, fc2."""
    return [(tokens, width, 3 * width), (tokens, width, width), (tokens, width, hidden), (tokens, hidden, width)]


def plain_matmuls(shapes: list[tuple[int, int, int]], layers: int) -> Callable[[], None]:
    """A function running ``layers`` x the given GEMMs with bare ``torch.mm`` (fixed random operands)."""
    operands = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in shapes]

    def run() -> None:
        for _ in range(layers):
            for a, b in operands:
                torch.mm(a, b)

    return run


def race(contenders: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Interleaved timing: one warm-up call each, then ``rounds`` rounds of one call each."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    with torch.inference_mode():
        for fn in contenders.values():
            fn()
        for _ in range(rounds):
            for name, fn in contenders.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


MM = "torch.mm, same GEMMs"  # the contender that runs only the linear layers' matrix products


def report(title: str, times: dict[str, list[float]], flops: float, gemm_flops: float, ours: str = "ours") -> None:
    print(f"\n{title}")
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    for name in times:
        ratio = f"  ours/it: median {med[ours] / med[name]:.3f}, best {best[ours] / best[name]:.3f}"
        ratio = "" if name == ours else ratio
        print(f"  {name:<28} median {med[name] * 1e3:8.1f} ms  best {best[name] * 1e3:8.1f} ms  "
              f"{(gemm_flops if name == MM else flops) / best[name] / 1e9:6.1f} GFLOP/s{ratio}")  # fmt: skip


def real_prompts(n: int) -> list[str]:
    objects = ["cat", "dog", "red circle", "blue square", "person riding a bike", "bowl of fruit", "mountain lake"]
    templates = ["a photo of a {}.", "a blurry photo of the {}.", "a drawing of a {} in the style of an old book.",
                 "itap of a {}", "a close-up photo of a small {} on a wooden table."]  # fmt: skip
    return [templates[i % len(templates)].format(objects[i % len(objects)]) for i in range(n)]


def bench_models(rounds: int) -> None:
    import open_clip
    import transformers

    from mmcore.tokenizer import BPETokenizer

    torch.manual_seed(0)
    images = torch.randn(8, 3, 224, 224)
    worst = torch.randint(1, 49406, (64, 77))
    worst[:, 0], worst[:, -1] = 49406, 49407  # start, 75 tokens, end: nothing to skip
    prompts = BPETokenizer.openai()(real_prompts(64))  # (64, 77), mostly padding
    cfg = CLIPConfig.vit_b_32()
    img_flops, img_gemm = vit_flops(cfg, 8)
    txt_flops, txt_gemm = text_flops(cfg, 64, 77)

    W, Wt = cfg.vision_width, cfg.text_width
    patch = [(8 * cfg.grid_size**2, 3 * cfg.patch_size**2, W)]
    img_mm = plain_matmuls(gemm_shapes(8 * 50, W, 4 * W) * cfg.vision_layers + patch, 1)
    txt_mm = plain_matmuls(gemm_shapes(64 * 77, Wt, 4 * Wt), cfg.text_layers)
    hf = transformers.CLIPModel(transformers.CLIPConfig()).eval()  # OpenAI's ViT-B/32 shape, QuickGELU, SDPA
    for arch, activation in [("ViT-B-32-quickgelu", "quick_gelu"), ("ViT-B-32", "gelu")]:
        oc = open_clip.create_model(arch, pretrained=None).eval()
        ours = CLIP.from_openai_state_dict(oc.state_dict(), activation=activation)
        img = {"ours": lambda: ours.encode_image(images), f"open_clip {arch}": lambda: oc.encode_image(images)}
        txt = {"ours": lambda: ours.encode_text(worst), f"open_clip {arch}": lambda: oc.encode_text(worst)}
        real = {"ours": lambda: ours.encode_text(prompts), f"open_clip {arch}": lambda: oc.encode_text(prompts)}
        if activation == "quick_gelu":
            img[MM], txt[MM] = img_mm, txt_mm  # same shapes, same moment: how close to the machine's GEMM speed
            img["HF CLIPModel"] = lambda: hf.get_image_features(pixel_values=images)
            txt["HF CLIPModel"] = lambda: hf.get_text_features(input_ids=worst)
            real["HF CLIPModel"] = lambda: hf.get_text_features(input_ids=prompts)
        report(f"encode_image, batch 8 x 224 px, {arch} ({activation})", race(img, rounds), img_flops, img_gemm)
        report(f"encode_text, batch 64 x 77 tokens (eot last), {arch}", race(txt, rounds), txt_flops, txt_gemm)
        report(f"encode_text, 64 real prompts padded to 77 (nominal FLOPs of 77 columns), {arch}",
               race(real, rounds), txt_flops, txt_gemm)  # fmt: skip
        del oc, ours

    print(f"\n(GEMMs are {img_gemm / img_flops:.0%} of the image FLOPs, {txt_gemm / txt_flops:.0%} of the text FLOPs; "
          f"'{MM}' is timed on those alone, without bias, attention or anything else)")  # fmt: skip


def bench_tiny_training(batch_size: int, steps: int) -> None:
    torch.manual_seed(0)
    cfg = CLIPConfig.tiny()
    model = CLIP(cfg).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch_size, 3, cfg.image_size, cfg.image_size)
    tokens = torch.randint(0, cfg.vocab_size - 2, (batch_size, cfg.context_length))  # (B, T)
    lengths = torch.randint(4, 16, (batch_size,))  # Shapes captions are short
    tokens[:, 0], tokens[torch.arange(batch_size), lengths] = cfg.vocab_size - 2, cfg.eot_token
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        loss = clip_loss(*model(images, tokens))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    med = statistics.median(times[1:])
    print(f"\ntiny preset training step (forward + backward + AdamW), batch {batch_size}: median {med * 1e3:.0f} ms, "
          f"best {min(times[1:]) * 1e3:.0f} ms -> {batch_size / med:.0f} samples/s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every contender")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds per comparison")
    parser.add_argument("--train-batch", type=int, default=256)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--skip-models", action="store_true", help="only the tiny training step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.rounds} interleaved rounds, float32 CPU")
    if not args.skip_models:
        bench_models(args.rounds)
    bench_tiny_training(args.train_batch, args.train_steps)


if __name__ == "__main__":
    main()
