"""Images per second of the studio's Stable Diffusion sampler, batch size swept.

An SD-v1.5-shaped pipeline (UNet 860 M parameters, the SD VAE, a CLIP ViT-L/14-shaped text
encoder) with random weights (speed does not depend on them; nothing is downloaded) is saved
to a temporary folder and loaded through ``SDLoraGenerator``, the path users take. Each
setting samples at 256 px with 25 steps and classifier-free guidance (the UNet sees a
doubled batch), VAE decode and copy to the host included.

Reference, measured in the same run: a plain diffusers ``StableDiffusionPipeline`` in fp32 at
batch 1, the way published pipelines run it (they report ~0.4 images/s). Printed per batch:
images/s, ratio to the reference, peak GPU memory.

    python bench/bench_sd_speed.py               # SD-v1.5 shape, fp16 on a GPU; else tiny
    python bench/bench_sd_speed.py --shape tiny  # the tiny test pipeline: checks the script
    python bench/bench_sd_speed.py --dtypes fp16,bf16 --channels-last --compile --json out.json

Without CUDA the SD-v1.5 shape would take minutes per image, so ``auto`` (the default) runs
the tiny test pipeline at 64 px instead and says so: those numbers are not the GPU target.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from polyp_core.generation.request import SampleRequest
from polyp_core.generation.sd_lora import SDLoraGenerator
from polyp_core.generation.tiny_sd import build_tiny_sd, tiny_tokenizer

PROMPT = "a colonoscopy image of sks adenomatous polyp"


def build_sd15(seed: int = 0):
    """A StableDiffusionPipeline with SD v1.5's shapes and random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                                block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
    tokenizer = tiny_tokenizer()  # CLIP BPE made offline; the encoder's shape is ViT-L/14's
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_gb(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**30:6.2f} GB" if device.type == "cuda" else "   (CPU)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", choices=["auto", "sd15", "tiny"], default="auto")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--batches", default="1,4,8,16,32,64")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--dtypes", default="fp16",
                        help="comma-separated among fp16, bf16 (GPU) and fp32")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile the UNet")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    results = {"settings": vars(args).copy(), "rows": []}
    import warnings

    warnings.filterwarnings("ignore")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.shape == "sd15" and device.type != "cuda":
        raise SystemExit("no CUDA device: the SD-v1.5 shape takes minutes per image on a CPU; "
                         "run with --shape tiny to check the script, or on a GPU machine")
    if args.shape == "auto":
        args.shape = "sd15" if device.type == "cuda" else "tiny"
        if args.shape == "tiny":
            print("no CUDA device: running the tiny test pipeline at 64 px, batches 1,4,16 "
                  "(a check of the script, not the GPU target)")
            args.batches = "1,4,16"
    if args.shape == "tiny":
        args.size = min(args.size, 64)
    pipe = build_sd15() if args.shape == "sd15" else build_tiny_sd(sample_size=args.size)
    n_params = sum(p.numel() for p in pipe.unet.parameters()) / 1e6
    print(f"{args.shape} UNet {n_params:.0f} M parameters, {args.size} px, DDIM {args.steps} steps, "
          f"guidance {args.guidance}, device {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}")

    # reference: plain diffusers pipeline, fp32, batch 1
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device, torch.float32)

    def reference():
        with torch.inference_mode():
            pipe(PROMPT, num_inference_steps=args.steps, guidance_scale=args.guidance,
                 height=args.size, width=args.size, output_type="np",
                 generator=torch.Generator("cpu").manual_seed(0))

    ref_s = timed(reference, device, args.repeats)
    ref_rate = 1 / ref_s
    print(f"{'reference (diffusers, fp32, batch 1)':>40}: {ref_rate:8.2f} images/s")
    results["reference_images_per_s"] = ref_rate
    results["device"] = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    results["versions"] = {"torch": torch.__version__,
                           "diffusers": __import__("diffusers").__version__}
    dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    wanted = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if device.type != "cuda" and wanted != ["fp32"]:
        print(f"no CUDA device: {','.join(wanted)} become fp32 (half precision needs a GPU)")
        wanted = ["fp32"]

    with tempfile.TemporaryDirectory() as tmp:
        pipe.to("cpu").save_pretrained(tmp, safe_serialization=True)
        pipe = None  # released before the studio sampler loads its own copy
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        for name in wanted:
            generator = SDLoraGenerator(tmp, device=device, dtype=dtypes[name])
            generator.optimise(channels_last=args.channels_last, compile_unet=args.compile)
            dtype = name + (" cl" if args.channels_last else "") + (" compiled" if args.compile else "")
            for batch in (int(b) for b in args.batches.split(",")):
                request = SampleRequest(prompt=PROMPT, n=batch, batch_size=batch, seed=0,
                                        steps=args.steps, guidance=args.guidance,
                                        scheduler="ddim", size=args.size)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                try:
                    seconds = timed(lambda: generator.sample(request), device, args.repeats)
                except torch.OutOfMemoryError:
                    print(f"{f'studio sampler ({dtype}, batch {batch})':>40}: out of memory")
                    break
                rate = batch / seconds
                print(f"{f'studio sampler ({dtype}, batch {batch})':>40}: {rate:8.2f} images/s  "
                      f"x{rate / ref_rate:6.2f} the reference  peak {peak_gb(device)}")
                results["rows"].append({
                    "dtype": name, "channels_last": args.channels_last, "compile": args.compile,
                    "batch": batch, "images_per_s": rate, "ratio": rate / ref_rate,
                    "peak_gb": torch.cuda.max_memory_allocated() / 2**30
                    if device.type == "cuda" else None})
            generator = None
            gc.collect()
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
