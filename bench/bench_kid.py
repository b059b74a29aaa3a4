"""KID speed against torchmetrics on the same feature matrices, in one run.

10,000 x 10,000 features of dimension 1,280, 100 subsets of 1,000 (the issue's setting),
float32 as extractors produce them. Prints both times, the ratio (torchmetrics / ours:
above 1 means ours is faster) and the difference of the results.

    python bench/bench_kid.py [--n 10000] [--subsets 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from polyp_core.diagnostics.distances import kid


class Identity(torch.nn.Module):
    def forward(self, x):
        return x


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--subset-size", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    warnings.filterwarnings("ignore")
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(args.n, args.dim, generator=generator).to(args.device)
    fake = (torch.rand(args.n, args.dim, generator=generator) * 1.1).to(args.device)

    metric = KernelInceptionDistance(feature=Identity(), subsets=args.subsets,
                                     subset_size=args.subset_size).to(args.device)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    torch.manual_seed(3)
    start = time.perf_counter()
    reference = metric.compute()
    if args.device == "cuda":
        torch.cuda.synchronize()
    t_reference = time.perf_counter() - start

    start = time.perf_counter()
    ours = kid(real, fake, args.subsets, args.subset_size, seed=3)
    if args.device == "cuda":
        torch.cuda.synchronize()
    t_ours = time.perf_counter() - start

    print(f"{args.n} x {args.n} features, d={args.dim}, {args.subsets} subsets of "
          f"{args.subset_size}, {args.device}, torch threads {torch.get_num_threads()}")
    print(f"torchmetrics: {t_reference:7.2f} s  KID {float(reference[0]):.6f} ± {float(reference[1]):.6f}")
    print(f"polyp_core:   {t_ours:7.2f} s  KID {ours.mean:.6f} ± {ours.std:.6f}")
    print(f"ratio (torchmetrics / ours): {t_reference / t_ours:.2f}")
    print(f"|difference| of means: {abs(float(reference[0]) - ours.mean):.2e}")


if __name__ == "__main__":
    main()
