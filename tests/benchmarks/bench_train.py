"""Benchmark of one CLIP training step: data (render + preprocess + tokenise) vs model (forward + backward + AdamW).

Run it as a script: ``python tests/benchmarks/bench_train.py [--batch-size 256] [--steps 5] [--threads 1 2]``.
It has no ``test_*`` function, so pytest does not collect it. On a shared 2-core machine one thread is often
faster than two (the threads wait for each other).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for a plain checkout

import torch  # noqa: E402

from mmcore.clip import CLIP, CLIPConfig  # noqa: E402
from mmcore.images import normalize, to_tensor  # noqa: E402
from mmcore.tokenizer import BPETokenizer  # noqa: E402
from mmcore.train_clip import contrastive_loss, shapes_batch  # noqa: E402
from mmcore.training import parameter_groups  # noqa: E402


def seconds_per_step(batch_size: int, steps: int, threads: int) -> tuple[float, float]:
    """Median ``(data seconds, model seconds)`` per step over ``steps`` steps (after one warm-up step)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tokenizer = BPETokenizer.course()
    model = CLIP(CLIPConfig.tiny(vocab_size=tokenizer.vocab_size, eot_token=tokenizer.eot_token)).train()
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=1e-4)
    data, compute = [], []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        pil, captions, _ = shapes_batch(0, step, range(batch_size))
        images, tokens = normalize(to_tensor(pil, 32)), tokenizer(captions)  # (B, 3, 32, 32), (B, T)
        t1 = time.perf_counter()
        loss = contrastive_loss(model.encode_image(images, normalize=True), model.encode_text(tokens, normalize=True),
                                model.temperature_scale())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        t2 = time.perf_counter()
        if step:  # the first step pays for one-time set-up
            data.append(t1 - t0)
            compute.append(t2 - t1)
    return sorted(data)[len(data) // 2], sorted(compute)[len(compute) // 2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=256, help="pairs per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting; the median is reported")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads to try")
    args = parser.parse_args(argv)
    for threads in args.threads:
        data, compute = seconds_per_step(args.batch_size, args.steps, threads)
        print(f"{threads} thread(s), batch {args.batch_size}: data {data:.3f} s + model {compute:.3f} s "
              f"= {data + compute:.3f} s/step")


if __name__ == "__main__":
    main()
