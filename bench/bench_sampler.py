"""Our DDPM sampler against a plain diffusers pipeline on the same model and settings.

1. Throughput: images per second of ``polyp_core.generation.ddpm.sample_batch`` and of
   diffusers' ``DDIMPipeline`` (same UNet, DDIM, same steps and batch), measured in one run,
   alternating, best of several repeats. Prints ours/theirs time (target: at most 1.05).
2. Peak memory: sampling 16 images at 128 px on the CPU, each sampler in a fresh process
   (peak resident set size above the process's size once the model is loaded).

    python bench/bench_sampler.py [--size 64] [--steps 20] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyp_core.generation.ddpm import DDPMConfig, build_unet, noise_schedule, sample_batch

CONFIG = DDPMConfig(size=64, block_out_channels=(64, 128, 128, 256),
                    attention=(False, False, True, False), layers_per_block=2)


def model(size: int):
    torch.manual_seed(0)
    config = DDPMConfig(**{**CONFIG.__dict__, "size": size})
    return build_unet(config, None).eval(), noise_schedule(config)


def ours(unet, schedule, steps, batch, size):
    return sample_batch(unet, schedule, "ddim", steps, None, None, list(range(batch)), 1.0, size,
                        torch.device("cpu"))


def theirs(unet, schedule, steps, batch, size):
    from diffusers import DDIMPipeline, DDIMScheduler

    pipe = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_config(schedule))
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        return pipe(batch_size=batch, num_inference_steps=steps, output_type="np",
                    generator=torch.Generator().manual_seed(0)).images


def peak_child(which: str, size: int, batch: int, steps: int) -> None:
    unet, schedule = model(size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (ours if which == "ours" else theirs)(unet, schedule, steps, batch, size)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"loaded_mb": before / 1024, "peak_mb": after / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-child", choices=["ours", "theirs"])
    args = parser.parse_args()
    if args.peak_child:
        return peak_child(args.peak_child, 128, 16, args.steps)
    import warnings

    warnings.filterwarnings("ignore")
    unet, schedule = model(args.size)
    ours(unet, schedule, 2, args.batch, args.size)  # warm up both
    theirs(unet, schedule, 2, args.batch, args.size)
    times = {"ours": [], "theirs": []}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            start = time.perf_counter()
            fn(unet, schedule, args.steps, args.batch, args.size)
            times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    print(f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.1f} M parameters, {args.size} px, "
          f"DDIM {args.steps} steps, batch {args.batch}, CPU threads {torch.get_num_threads()}")
    for name in ("theirs", "ours"):
        label = "diffusers DDIMPipeline" if name == "theirs" else "polyp_core sampler"
        print(f"{label:>24}: {best[name]:6.2f} s  {args.batch / best[name]:6.2f} images/s")
    print(f"time ratio ours/diffusers: {best['ours'] / best['theirs']:.3f} (target <= 1.05)")

    peaks = {}
    for name in ("theirs", "ours"):
        out = subprocess.run([sys.executable, __file__, "--peak-child", name, "--steps", str(args.steps)],
                             capture_output=True, text=True, check=True)
        peaks[name] = json.loads(out.stdout.strip().splitlines()[-1])
    print("peak memory, 16 images at 128 px on the CPU (above the loaded model):")
    for name in ("theirs", "ours"):
        p = peaks[name]
        print(f"{name:>8}: {p['peak_mb'] - p['loaded_mb']:7.1f} MB (process peak {p['peak_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
