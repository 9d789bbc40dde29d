"""The core library benchmarks in one run: (a) Fréchet distance, eigen route vs ``scipy`` sqrtm
(``benchmarks/frechet_speed.py``), and (b) trainer throughput vs a hand-written loop
(``benchmarks/train_throughput.py``). Prints; asserts nothing.

    .venv/bin/python -m benchmarks.core [--dim 2048] [--steps 100] [--batch 64] [--resolution 16]
        [--device cpu] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import frechet_speed, train_throughput  # noqa: E402


def format_frechet(r: dict, repeats: int) -> str:
    return "\n".join([
        f"Fréchet distance, {r['dim']}-d covariances from 4096 samples (best of {repeats}):",
        f"  eigen route: {r['eigen_s']:.3f} s   scipy sqrtm route: {r['sqrtm_s']:.3f} s   speed-up {r['speedup']:.1f}x",
        f"  values {r['eigen_value']:.9g} vs {r['sqrtm_value']:.9g}, relative difference {r['rel_diff']:.2e}",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048, help="feature dimension of the Fréchet benchmark")
    parser.add_argument("--frechet-repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="steps per timed throughput run")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds of the throughput benchmark")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    print("## (a) Fréchet distance")
    print(format_frechet(frechet_speed.run(args.dim, args.frechet_repeats), args.frechet_repeats))
    print()
    print("## (b) Trainer throughput")
    result = train_throughput.run(args.steps, args.batch, args.resolution, args.device, repeats=args.repeats)
    print(train_throughput.format_result(result))


if __name__ == "__main__":
    main()
