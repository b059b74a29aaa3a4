"""Backend ``sd_lora``: Stable Diffusion v1.x fine-tuned with LoRA (DreamBooth-style tokens).

Each class gets a rare token in its prompt (``a colonoscopy image of sks adenomatous
polyp``). LoRA adapters (peft) go on the UNet's attention projections, optionally on the
text encoder too, and chosen base layers can be unfrozen (the thesis tried all three).
Adapters are saved as ``pytorch_lora_weights.safetensors`` that diffusers'
``load_lora_weights`` reads; several can be loaded and weighted at sampling time.

The base model comes from a local diffusers folder or a hub id; the Hugging Face cache and
``HF_HUB_OFFLINE`` are honoured, and a missing model gets an error that names it and says
where to put it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from polyp_core.data.cache import PixelCache
from polyp_core.data.images import sha256_file
from polyp_core.data.labels import get_scheme
from polyp_core.errors import WeightsUnavailableError
from polyp_core.generation.ddpm import (TrainResult, grid, mixed_precision, model_dir,
                                        pick_checkpoint, versions)
from polyp_core.generation.request import (CancelToken, GeneratedImage, SampleRequest,
                                           make_scheduler)
from polyp_core.progress import Progress, no_progress
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace

if TYPE_CHECKING:
    from diffusers import SchedulerMixin, StableDiffusionPipeline

    from polyp_core.data.labels import LabelScheme
    from polyp_core.data.manifest import ManifestItem

PROMPT_TEMPLATE = "a colonoscopy image of {token} {name} polyp"
CLASS_TOKENS = {"AD": ("sks", "adenomatous"), "SSA": ("zwx", "sessile serrated"),
                "HP": ("qlv", "hyperplastic"), "REST": ("vqd", "non-adenomatous")}
LORA_FILE = "pytorch_lora_weights.safetensors"


def class_prompt(cls: str, with_token: bool = True) -> str:
    token, name = CLASS_TOKENS[cls]
    return PROMPT_TEMPLATE.format(token=token if with_token else "", name=name).replace("  ", " ")


def load_base_pipeline(base_model: str,
                       dtype: torch.dtype = torch.float32) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline from a local folder, the HF cache, or (online) the hub.

    Raises:
        WeightsUnavailableError: naming the model and where to put it.
    """
    from diffusers import StableDiffusionPipeline

    kwargs = dict(dtype=dtype, safety_checker=None, requires_safety_checker=False)
    path = Path(base_model).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise WeightsUnavailableError(f"{path} is not a diffusers pipeline folder "
                                          "(no model_index.json)")
        return StableDiffusionPipeline.from_pretrained(str(path), **kwargs)
    try:  # the local cache first: works offline
        return StableDiffusionPipeline.from_pretrained(base_model, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    message = (f"base model {base_model!r} is not on this machine. Where there is internet, run "
               f"'huggingface-cli download {base_model}' (it fills the Hugging Face cache, "
               f"{os.environ.get('HF_HOME', '~/.cache/huggingface')}), or save the pipeline "
               "with save_pretrained into a folder and give that folder's path instead.")
    if offline:
        raise WeightsUnavailableError(message + " (HF_HUB_OFFLINE is set)")
    try:
        return StableDiffusionPipeline.from_pretrained(base_model, **kwargs)
    except Exception as exc:  # network, auth or a wrong id
        raise WeightsUnavailableError(f"{message} ({type(exc).__name__}: {exc})") from None


def base_model_hash(pipe: StableDiffusionPipeline) -> str:
    """SHA-256 of the UNet weights the pipeline was loaded from (identifies the base)."""
    folder = Path(pipe.unet.config._name_or_path or "")
    files = sorted(folder.glob("diffusion_pytorch_model*.safetensors")) or sorted(folder.glob("*.bin"))
    if not files:
        return ""
    return sha256_file(files[0])


@checked
@dataclass(frozen=True)
class LoraTrainConfig:
    """One LoRA fine-tuning job.

    Attributes:
        base_model: diffusers folder or hub id of a Stable Diffusion v1.x model.
        rank, alpha, dropout, target_modules: the LoRA on the UNet's attention layers.
        lora_init: peft ``init_lora_weights`` (``gaussian``; ``False`` makes a fresh adapter
            change the output at once, which tests use).
        train_text_encoder: LoRA on the text encoder's attention as well.
        unfreeze: names (prefixes) of base UNet layers trained fully, e.g. ``conv_in``.
        prior_preservation: also train on base-model images of the bare class prompt.
        resolution: 256 or 512 (any multiple of 8 works).
        gradient_checkpointing, use_8bit_adam: memory savers ("auto": on a GPU).
    """

    dataset: str
    model_id: str
    base_model: str
    scheme: str | None = None
    splits: tuple[str, ...] = ("train",)
    resolution: int = rule(512, lo=64, hi=2048)
    rank: int = rule(8, lo=1, hi=1024)
    alpha: int = rule(8, lo=1, hi=4096)
    dropout: float = rule(0.0, lo=0.0, below=1.0)
    target_modules: tuple[str, ...] = ("to_q", "to_k", "to_v", "to_out.0")
    lora_init: str | bool = "gaussian"
    train_text_encoder: bool = False
    unfreeze: tuple[str, ...] = ()
    prior_preservation: bool = False
    prior_weight: float = rule(1.0, lo=0.0, hi=100.0)
    prior_images: int = rule(50, lo=1, hi=100_000)
    steps: int = rule(2000, lo=1, hi=10_000_000)
    batch_size: int = rule(4, lo=1, hi=1024)
    grad_accum: int = rule(1, lo=1, hi=1024)
    lr: float = rule(1e-4, above=0.0, hi=1.0)
    mixed_precision: str = rule("auto", choices=("auto", "no", "fp16", "bf16"))
    gradient_checkpointing: str | bool = rule("auto", choices=("auto", True, False))
    use_8bit_adam: str | bool = rule("auto", choices=("auto", True, False))
    checkpoint_every: int = rule(500, lo=1, hi=10_000_000)
    validation_per_class: int = rule(2, lo=0, hi=64)
    validation_steps: int = rule(25, lo=1, hi=1000)
    seed: int = 0

    def validate(self) -> None:
        if self.resolution % 8:
            raise ValueError("resolution must be a multiple of 8")


def _encode_prompts(pipe: StableDiffusionPipeline, prompts: Sequence[str],
                    device: torch.device) -> torch.Tensor:
    tokens = pipe.tokenizer(list(prompts), padding="max_length", truncation=True,
                            max_length=pipe.tokenizer.model_max_length, return_tensors="pt")
    return pipe.text_encoder(tokens.input_ids.to(device))[0]


def _lora_state(pipe: StableDiffusionPipeline, train_text_encoder: bool) -> dict:
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    out = {"unet_lora_layers": convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet)),
           "unet_lora_adapter_metadata": pipe.unet.peft_config["default"].to_dict()}
    if train_text_encoder:
        out["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(
            get_peft_model_state_dict(pipe.text_encoder))
        out["text_encoder_lora_adapter_metadata"] = pipe.text_encoder.peft_config["default"].to_dict()
    return out


def _add_adapters(pipe: StableDiffusionPipeline, config: LoraTrainConfig,
                  cuda: bool) -> dict[str, torch.nn.Parameter]:
    """Freeze the pipeline, add LoRA adapters to the UNet (and the text encoder when asked),
    unfreeze the UNet parameters ``config.unfreeze`` names, and switch on gradient
    checkpointing where it pays. Returns the unfrozen parameters by name."""
    from peft import LoraConfig

    unet, text_encoder = pipe.unet, pipe.text_encoder
    for module in (unet, pipe.vae, text_encoder):
        module.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                init_lora_weights=config.lora_init,
                                target_modules=list(config.target_modules)))
    if config.train_text_encoder:
        text_encoder.add_adapter(LoraConfig(
            r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
            init_lora_weights=config.lora_init,
            target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]))
    unfrozen = {}
    for name, parameter in unet.named_parameters():
        if "lora_" not in name and any(name.startswith(p) for p in config.unfreeze):
            parameter.requires_grad_(True)
            unfrozen[name] = parameter
    if config.unfreeze and not unfrozen:
        raise ValueError(f"no UNet parameters start with {config.unfreeze}")
    checkpointing = cuda if config.gradient_checkpointing == "auto" \
        else bool(config.gradient_checkpointing)
    if checkpointing:
        unet.enable_gradient_checkpointing()
    return unfrozen


def _lora_optimizer(config: LoraTrainConfig, cuda: bool) -> type[torch.optim.Optimizer]:
    """AdamW, or bitsandbytes' 8-bit AdamW when asked (``auto``: on CUDA when installed)."""
    if (config.use_8bit_adam is True) or (config.use_8bit_adam == "auto" and cuda):
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit
        except ImportError:
            if config.use_8bit_adam is True:
                raise ValueError("use_8bit_adam needs bitsandbytes (pip install bitsandbytes)") \
                    from None
    return torch.optim.AdamW


def _latent_diffusion_loss(pipe: StableDiffusionPipeline, unet: torch.nn.Module,
                           noise: SchedulerMixin, batch: torch.Tensor, prompts: list[str],
                           device: torch.device, weight_dtype: torch.dtype) -> torch.Tensor:
    """The denoising loss of one batch of uint8 images with their prompts: VAE latents, noise
    at a random timestep, the UNet's prediction (noise or velocity) against its target."""
    vae = pipe.vae
    with torch.no_grad():
        x = batch.permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device, weight_dtype)
        latents = (vae.encode(x).latent_dist.sample() * vae.config.scaling_factor).float()
    hidden = _encode_prompts(pipe, prompts, device)
    eps = torch.randn_like(latents)
    t = torch.randint(0, noise.config.num_train_timesteps, (len(latents),), device=device)
    pred = unet(noise.add_noise(latents, eps, t), t, hidden).sample
    target = eps if noise.config.prediction_type == "epsilon" else noise.get_velocity(latents, eps, t)
    return torch.nn.functional.mse_loss(pred.float(), target.float())


def _lora_record(config: LoraTrainConfig, base_hash: str, scheme: LabelScheme,
                 items: list[ManifestItem]) -> dict:
    """The model folder's ``config.json``: base model and its hash, prompts, the training
    request and what it learned from (every training image's SHA-256)."""
    return {"backend": "sd_lora", "base_model": config.base_model, "base_model_hash": base_hash,
            "prompt_template": PROMPT_TEMPLATE, "classes": list(scheme.classes),
            "class_prompts": {c: class_prompt(c) for c in scheme.classes},
            "train": asdict(config), "trained_on": {
                "dataset": config.dataset, "splits": list(config.splits), "n_images": len(items),
                "scheme": scheme.name, "image_sha256": sorted(i.sha256 for i in items)},
            "versions": versions()}


def _save_lora_checkpoint(ckpt: Path, step: int, last_loss: float,
                          pipe: StableDiffusionPipeline, unfrozen: dict[str, torch.nn.Parameter],
                          config: LoraTrainConfig, scheme: LabelScheme) -> None:
    """A checkpoint folder: the LoRA weights (and the unfrozen UNet parameters), validation
    images of every class, and ``state.json``."""
    from safetensors.torch import save_file

    ckpt.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(str(ckpt), safe_serialization=True,
                                 **_lora_state(pipe, config.train_text_encoder))
    if unfrozen:
        save_file({k: v.detach().cpu().contiguous() for k, v in pipe.unet.state_dict().items()
                   if k in unfrozen}, str(ckpt / "unfrozen.safetensors"))
    shots = []
    for cls in scheme.classes:  # validation images per class
        with torch.no_grad():
            out = pipe(class_prompt(cls), num_inference_steps=config.validation_steps,
                       num_images_per_prompt=config.validation_per_class, output_type="np",
                       height=config.resolution, width=config.resolution,
                       generator=torch.Generator().manual_seed(config.seed))
        shots.append((out.images * 255).round().astype(np.uint8))
    Image.fromarray(grid(np.concatenate(shots), config.validation_per_class)).save(
        ckpt / "validation.png")
    (ckpt / "state.json").write_text(json.dumps({"step": step, "loss": last_loss,
                                                 "validation_rows": list(scheme.classes),
                                                 "versions": versions()}, indent=1))


def train_lora(workspace: Workspace, config: LoraTrainConfig, progress: Progress = no_progress,
               cancel: CancelToken | None = None) -> TrainResult:
    """Fine-tune LoRA adapters on the training split; checkpoints carry validation images."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import DDPMScheduler

    config.validate()
    start_time = time.perf_counter()
    manifest = workspace.load_manifest(config.dataset)
    scheme = get_scheme(config.scheme or manifest.scheme)
    items = [i for i in manifest.items if i.split in config.splits]
    if not items:
        raise ValueError(f"no images in splits {config.splits} of {config.dataset}")
    cuda = torch.cuda.is_available()
    mixed = mixed_precision(config.mixed_precision)
    # cpu=True without CUDA: otherwise accelerate treats each of several CPU processes
    # (accelerate launch --multi_gpu on a node without GPUs) as alone, and all write checkpoints
    accelerator = Accelerator(mixed_precision=mixed, gradient_accumulation_steps=config.grad_accum,
                              cpu=not torch.cuda.is_available())
    set_seed(config.seed)
    device = accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed, torch.float32)

    pipe = load_base_pipeline(config.base_model)
    base_hash = base_model_hash(pipe)
    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    vae.to(device, weight_dtype)
    unfrozen = _add_adapters(pipe, config, cuda)
    params = [p for p in unet.parameters() if p.requires_grad] + \
             [p for p in text_encoder.parameters() if p.requires_grad]
    optimizer = _lora_optimizer(config, cuda)(params, lr=config.lr)
    noise = DDPMScheduler.from_config(pipe.scheduler.config)

    pixels = PixelCache(workspace.pixel_cache_dir)
    images = torch.from_numpy(np.stack([pixels.rgb(i.image, i.sha256, config.resolution) for i in items]))
    prompts = [class_prompt(scheme.map(i.label)) for i in items]
    prior: tuple[torch.Tensor, list[str]] | None = None
    if config.prior_preservation:
        prior = _prior_images(pipe, scheme.classes, config, device)
    loader = torch.utils.data.DataLoader(list(range(len(items))), batch_size=config.batch_size,
                                         shuffle=True, generator=torch.Generator().manual_seed(config.seed))
    unet, text_encoder, optimizer, loader = accelerator.prepare(unet, text_encoder, optimizer, loader)

    folder = model_dir(workspace, config.model_id)
    folder.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        (folder / "config.json").write_text(json.dumps(
            _lora_record(config, base_hash, scheme, items), indent=1))

    def step_loss(batch: torch.Tensor, batch_prompts: list[str]) -> torch.Tensor:
        return _latent_diffusion_loss(pipe, unet, noise, batch, batch_prompts, device,
                                      weight_dtype)

    def save_checkpoint(step: int, last_loss: float) -> None:
        pipe.unet = accelerator.unwrap_model(unet)
        pipe.text_encoder = accelerator.unwrap_model(text_encoder)
        _save_lora_checkpoint(folder / "checkpoints" / f"step-{step:06d}", step, last_loss, pipe,
                              unfrozen, config, scheme)

    step, status, last_loss = 0, "done", math.nan
    unet.train()
    while step < config.steps and status == "done":
        for index in loader:
            if cancel is not None and cancel.cancelled:
                status = "cancelled"
                break
            with accelerator.accumulate(unet):
                loss = step_loss(images[index.cpu()], [prompts[i] for i in index.tolist()])
                if prior is not None:
                    pick = torch.randint(0, len(prior[0]), (len(index),))
                    loss = loss + config.prior_weight * step_loss(
                        prior[0][pick], [prior[1][i] for i in pick.tolist()])
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue
            step += 1
            last_loss = float(loss.detach())
            progress(step, config.steps, f"step {step}/{config.steps} loss {last_loss:.4f}")
            if accelerator.is_main_process and (step % config.checkpoint_every == 0 or step == config.steps):
                save_checkpoint(step, last_loss)
            if step >= config.steps:
                break
    if status == "cancelled" and step and accelerator.is_main_process:
        save_checkpoint(step, last_loss)
    accelerator.end_training()
    return TrainResult(config.model_id, folder, step, tuple(lora_checkpoints(folder)), status,
                       last_loss, time.perf_counter() - start_time)


def _prior_images(pipe: StableDiffusionPipeline, classes: Sequence[str], config: LoraTrainConfig,
                  device: torch.device) -> tuple[torch.Tensor, list[str]]:
    """Base-model images of the bare class prompts (DreamBooth prior preservation)."""
    per_class = max(1, config.prior_images // len(classes))
    images, prompts = [], []
    pipe.to(device)
    for cls in classes:
        prompt = class_prompt(cls, with_token=False)
        with torch.no_grad():
            out = pipe(prompt, num_inference_steps=config.validation_steps, output_type="np",
                       num_images_per_prompt=per_class, height=config.resolution,
                       width=config.resolution, generator=torch.Generator().manual_seed(config.seed + 1))
        images.append(torch.from_numpy((out.images * 255).round().astype(np.uint8)))
        prompts += [prompt] * per_class
    return torch.cat(images), prompts


def sampling_classes(meta: dict) -> list[str]:
    """The classes (class tokens) a LoRA model folder's ``config.json`` can be asked for."""
    return list(meta.get("classes", CLASS_TOKENS))


def model_checkpoints(folder: Path, meta: dict) -> list[str]:
    return lora_checkpoints(folder)


def lora_checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in (Path(folder) / "checkpoints").glob("step-*")
                  if (p / LORA_FILE).is_file() and (p / "state.json").is_file())


class SDLoraGenerator:
    """A base SD pipeline with LoRA adapters, answering class or prompt requests."""

    backend = "sd_lora"

    def __init__(self, base_model: str, adapters: Sequence[tuple[str, Path, float]] = (),
                 device: torch.device | None = None, meta: dict | None = None,
                 checkpoint: str | None = None, own_adapter: Path | None = None,
                 dtype: torch.dtype | None = None) -> None:
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        if dtype != torch.float32 and self.device.type != "cuda":
            raise ValueError(f"{dtype} sampling needs a CUDA device; the CPU samples in float32")
        self.dtype = dtype
        self.pipe = load_base_pipeline(base_model, self.dtype)
        self.base_model = base_model
        self.base_model_hash = (meta or {}).get("base_model_hash") or base_model_hash(self.pipe)
        self.meta = meta or {}
        self.checkpoint = checkpoint
        self.own_adapter = own_adapter
        self.classes = sampling_classes(self.meta)
        self.pipe.set_progress_bar_config(disable=True)
        self.pipe.to(self.device)
        self._loaded: dict[str, Path] = {}
        for name, path, _ in adapters:
            self._load_adapter(name, path)
        self._default = [(name, scale) for name, _, scale in adapters]

    def optimise(self, channels_last: bool = True, compile_unet: bool = False) -> None:
        """GPU speed settings that change no result beyond float rounding: channels-last
        memory for the UNet and VAE (faster convolutions on tensor cores) and, optionally,
        ``torch.compile`` of the UNet (pays back only over many batches: it compiles per
        batch shape). Attention is PyTorch's SDPA, diffusers' default."""
        if channels_last:
            self.pipe.unet.to(memory_format=torch.channels_last)
            self.pipe.vae.to(memory_format=torch.channels_last)
        if compile_unet:
            self.pipe.unet = torch.compile(self.pipe.unet, mode="max-autotune-no-cudagraphs")

    @classmethod
    def from_model_dir(cls, folder: Path, checkpoint: str | None = None,
                       device: torch.device | None = None) -> SDLoraGenerator:
        meta = json.loads((Path(folder) / "config.json").read_text())
        checkpoint = pick_checkpoint(folder, lora_checkpoints(folder), checkpoint)
        own = Path(folder) / "checkpoints" / checkpoint
        generator = cls(meta["base_model"], [("own", own, 1.0)], device, meta, checkpoint, own)
        unfrozen = own / "unfrozen.safetensors"
        if unfrozen.is_file():
            from safetensors.torch import load_file

            generator.pipe.unet.load_state_dict(load_file(str(unfrozen)), strict=False)
        return generator

    def _load_adapter(self, name: str, path: Path) -> None:
        path = Path(path)
        folder = path.parent if path.is_file() else path
        weight = path.name if path.is_file() else LORA_FILE
        if not (folder / weight).is_file():
            raise FileNotFoundError(f"no LoRA weights at {folder / weight}")
        self.pipe.load_lora_weights(str(folder), weight_name=weight, adapter_name=name)
        self._loaded[name] = folder / weight

    def _resolve_loras(self, request: SampleRequest) -> None:
        if not request.loras:
            if self._default:
                self.pipe.set_adapters([n for n, _ in self._default], [s for _, s in self._default])
            return
        names, scales = [], []
        for index, choice in enumerate(request.loras):
            path = Path(choice.path)
            if path.is_dir() and (path / "config.json").is_file():  # a LoRA model folder: its last checkpoint
                path = path / "checkpoints" / lora_checkpoints(path)[-1]
            name = next((n for n, p in self._loaded.items()
                         if p == (path if path.is_file() else path / LORA_FILE)), None)
            if name is None:
                name = f"extra{len(self._loaded)}"
                self._load_adapter(name, path)
            names.append(name)
            scales.append(choice.scale)
        self.pipe.set_adapters(names, scales)

    def weights_hash(self) -> str:
        return sha256_file(self.own_adapter / LORA_FILE) if self.own_adapter else self.base_model_hash

    @property
    def size(self) -> int:
        return int(self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor)

    def _prompt(self, request_class: str | None, prompt: str | None) -> str:
        if prompt is not None:
            return prompt
        if request_class not in CLASS_TOKENS or request_class not in self.classes:
            raise ValueError(f"class {request_class!r} is not one of this generator's: "
                             f"{', '.join(self.classes)}")
        return self.meta.get("class_prompts", {}).get(request_class) or class_prompt(request_class)

    def sample(self, request: SampleRequest, progress: Progress = no_progress,
               cancel: CancelToken | None = None) -> list[GeneratedImage]:
        request.validate()
        self._prompt(request.class_label, request.prompt)
        seeds = [request.seed + i for i in range(request.n)]
        out: list[GeneratedImage] = []
        for start in range(0, len(seeds), request.batch_size):
            batch = seeds[start:start + request.batch_size]
            labels = [request.class_label] * len(batch)
            pixels = self.sample_exact(batch, labels, request, cancel)
            out += [GeneratedImage(p, s, request.class_label, request.prompt, tuple(batch), tuple(labels))
                    for p, s in zip(pixels, batch)]
            progress(len(out), len(seeds), f"sampled {len(out)}/{len(seeds)}")
        return out

    def sample_exact(self, seeds: Sequence[int], classes: Sequence[str | None],
                     request: SampleRequest,
                     cancel: CancelToken | None = None) -> np.ndarray:
        self._resolve_loras(request)
        self.pipe.scheduler = make_scheduler(request.scheduler, self.pipe.scheduler.config)
        prompts = [self._prompt(c, request.prompt) for c in classes]
        size = request.size or self.size

        def on_step(pipe: StableDiffusionPipeline, step: int, timestep: torch.Tensor | int,
                    kwargs: dict) -> dict:
            if cancel is not None:
                cancel.check()
            return kwargs

        with torch.inference_mode():
            out = self.pipe(prompts, negative_prompt=[request.negative_prompt] * len(prompts)
                            if request.negative_prompt else None,
                            num_inference_steps=request.steps, guidance_scale=request.guidance,
                            height=size, width=size, output_type="np",
                            generator=[torch.Generator("cpu").manual_seed(int(s)) for s in seeds],
                            callback_on_step_end=on_step)
        return (out.images * 255).round().astype(np.uint8)
