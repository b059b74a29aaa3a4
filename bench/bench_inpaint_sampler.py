"""Our RePaint sampler against diffusers' ``RePaintPipeline`` on the same model and settings.

The same unconditional ``UNet2DModel`` (random weights: speed does not depend on them), the
same scheduler (``RePaintScheduler``), steps, jump length, jumps per point, batch, image and
mask, measured in one run, alternating, best of ``--repeats``. Printed: seconds of each and
their ratio, theirs/ours (at least 1.0: ours is as fast). Ours draws one Gaussian per time
jump where ``undo_step`` draws one per training step it crosses (the same distribution), and
runs under ``inference_mode``; the UNet's forward passes are the same.

    python bench/bench_inpaint_sampler.py [--size 64] [--steps 25] [--batch 8]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyp_core.generation.ddpm import DDPMConfig, build_unet, noise_schedule
from polyp_core.generation.inpaint import repaint_batch

CONFIG = DDPMConfig(size=64, block_out_channels=(32, 64, 128, 128),
                    attention=(False, False, True, False), layers_per_block=1, norm_num_groups=16)


def inputs(batch: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A background in -1..1 and a keep-mask (1 = keep) with a disk-shaped hole."""
    torch.manual_seed(1)
    image = torch.rand(batch, 3, size, size) * 2 - 1
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    hole = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2).float()
    return image, (1 - hole).expand(batch, 3, size, size).contiguous()


def ours(unet: torch.nn.Module, schedule: dict, args: argparse.Namespace, image: torch.Tensor,
         keep: torch.Tensor) -> torch.Tensor:
    return repaint_batch(unet, schedule, args.steps, args.jump_length, args.jump_n_sample, None,
                         None, list(range(len(image))), 1.0, image, keep)


def theirs(unet: torch.nn.Module, schedule: dict, args: argparse.Namespace, image: torch.Tensor,
           keep: torch.Tensor) -> torch.Tensor:
    from diffusers import RePaintPipeline, RePaintScheduler

    scheduler = RePaintScheduler(num_train_timesteps=schedule["num_train_timesteps"],
                                 beta_schedule=schedule["beta_schedule"], clip_sample=True)
    pipe = RePaintPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        return pipe(image=image, mask_image=keep[:, :1], num_inference_steps=args.steps,
                    jump_length=args.jump_length, jump_n_sample=args.jump_n_sample,
                    generator=torch.Generator().manual_seed(0), output_type="np").images


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--jump-length", type=int, default=10)
    parser.add_argument("--jump-n-sample", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = DDPMConfig(**{**CONFIG.__dict__, "size": args.size})
    unet, schedule = build_unet(config, None).eval(), noise_schedule(config)
    image, keep = inputs(args.batch, args.size)
    ours(unet, schedule, args, image[:1], keep[:1])  # warm-up of both paths
    theirs(unet, schedule, args, image[:1], keep[:1])
    best = {"ours": float("inf"), "theirs": float("inf")}
    for _ in range(args.repeats):
        for name, fn in (("ours", ours), ("theirs", theirs)):
            start = time.perf_counter()
            out = fn(unet, schedule, args, image, keep)
            best[name] = min(best[name], time.perf_counter() - start)
            assert torch.as_tensor(out).isfinite().all()
    ratio = best["theirs"] / best["ours"]
    print(f"RePaint on the CPU ({torch.get_num_threads()} threads), {args.size} px, batch "
          f"{args.batch}, {args.steps} steps, jump length {args.jump_length}, "
          f"{args.jump_n_sample} per point: ours {best['ours']:.2f} s, RePaintPipeline "
          f"{best['theirs']:.2f} s, x{ratio:.2f} (theirs/ours, best of {args.repeats})")
    if args.json:
        Path(args.json).write_text(json.dumps({**vars(args), **best, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
