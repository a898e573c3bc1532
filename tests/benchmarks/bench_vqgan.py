"""Benchmark of one VQGAN training step: data (render) vs generator step vs generator + discriminator step.

Run it as a script: ``python tests/benchmarks/bench_vqgan.py [--batch-size 32] [--steps 5] [--threads 1 2]
[--no-channels-last]``. It has no ``test_*`` function, so pytest does not collect it. Convolutions are slow on a
small CPU; ``channels_last`` usually helps, and on a shared machine one thread is often faster than two.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root, for a plain checkout

import torch  # noqa: E402

from mmcore.train_vqgan import train_images  # noqa: E402
from mmcore.vqgan import VQGAN, VQGANConfig  # noqa: E402
from mmcore.vqgan_losses import generator_loss, hinge_d_loss  # noqa: E402


def seconds_per_step(batch_size: int, steps: int, threads: int, channels_last: bool) -> tuple[float, float, float]:
    """Median ``(data, generator-only step, generator + discriminator step)`` seconds over ``steps`` steps."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = VQGAN(VQGANConfig.tiny()).train().to(memory_format=fmt)
    opt_g = torch.optim.Adam(list(model.generator_parameters()), lr=1e-4, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.9))
    data, plain, gan = [], [], []
    for step in range(steps + 1):
        for adversarial in (False, True):
            t0 = time.perf_counter()
            x = train_images(0, step, batch_size).contiguous(memory_format=fmt)  # (B, 3, 32, 32)
            t1 = time.perf_counter()
            model.discriminator.requires_grad_(False)
            out = model(x)
            logits = model.discriminator(out.reconstruction) if adversarial else None
            loss = generator_loss(x, out.reconstruction, out.vq_loss, logits, model.last_layer, 0.1 if adversarial else 0.0)
            opt_g.zero_grad(set_to_none=True)
            loss.total.backward()
            opt_g.step()
            if adversarial:
                model.discriminator.requires_grad_(True)
                d = hinge_d_loss(model.discriminator(x), model.discriminator(out.reconstruction.detach()))
                opt_d.zero_grad(set_to_none=True)
                d.backward()
                opt_d.step()
            t2 = time.perf_counter()
            if step:  # the first step pays for one-time set-up
                (gan if adversarial else plain).append(t2 - t1)
                if not adversarial:
                    data.append(t1 - t0)
    median = lambda values: sorted(values)[len(values) // 2]  # noqa: E731
    return median(data), median(plain), median(gan)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="images per step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per setting; the median is reported")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch CPU threads to try")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    for threads in args.threads:
        data, plain, gan = seconds_per_step(args.batch_size, args.steps, threads, args.channels_last)
        print(f"{threads} thread(s), batch {args.batch_size}: data {data:.3f} s, generator step {plain:.3f} s, "
              f"generator + discriminator step {gan:.3f} s")


if __name__ == "__main__":
    main()
