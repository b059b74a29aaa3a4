"""Stable Diffusion + LoRA on a tiny SD-shaped pipeline built from configs (random weights),
loaded through the same from_pretrained path users take with real weights."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.errors import WeightsUnavailableError
from polyp_core.generation.backends import load_generator, regenerate, sample_to_pool
from polyp_core.generation.request import LoraChoice, SampleRequest
from polyp_core.generation.sd_lora import (LORA_FILE, LoraTrainConfig, SDLoraGenerator,
                                           class_prompt, load_base_pipeline, train_lora)
from polyp_core.generation.tiny_sd import save_tiny_sd
from polyp_core.workspace import Workspace

REQUEST = SampleRequest(class_label="AD", n=2, steps=3, guidance=3.0)


def lora_config(base, model_id, **kw):
    return LoraTrainConfig(**(dict(dataset="phantom", model_id=model_id, base_model=str(base),
                                   resolution=64, rank=4, alpha=4, lora_init=False, steps=2,
                                   batch_size=4, checkpoint_every=2, validation_per_class=1,
                                   validation_steps=2) | kw))


@pytest.fixture(scope="module")
def env(small_phantom, tmp_path_factory):
    root = tmp_path_factory.mktemp("sd")
    base = save_tiny_sd(root / "tiny-sd")
    workspace = Workspace(root / "ws")
    import_dataset(workspace, ImportConfig(str(small_phantom), name="phantom"))
    result = train_lora(workspace, lora_config(base, "lora-a", train_text_encoder=True,
                                               unfreeze=("conv_in",)))
    return base, workspace, result


def test_missing_base_model_names_it_and_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsUnavailableError) as info:
        load_base_pipeline("some-org/stable-diffusion-v1-5")
    message = str(info.value)
    assert "some-org/stable-diffusion-v1-5" in message and "huggingface-cli download" in message
    (tmp_path / "notapipe").mkdir()
    with pytest.raises(WeightsUnavailableError, match="model_index.json"):
        load_base_pipeline(str(tmp_path / "notapipe"))


def test_training_saves_adapters_that_diffusers_reads(env):
    base, workspace, result = env
    assert result.checkpoints == ("step-000002",) and result.status == "done"
    ckpt = result.folder / "checkpoints" / "step-000002"
    keys = load_file(str(ckpt / LORA_FILE)).keys()
    assert any(k.startswith("unet.") and "lora" in k for k in keys)
    assert any(k.startswith("text_encoder.") for k in keys)
    assert set(load_file(str(ckpt / "unfrozen.safetensors"))) == {"conv_in.weight", "conv_in.bias"}
    assert (ckpt / "validation.png").is_file()
    # plain diffusers, no studio code: load the base, then the adapter
    pipe = load_base_pipeline(str(base))
    pipe.load_lora_weights(str(ckpt), weight_name=LORA_FILE)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.peft_config["default_0"].r == 4


def test_adapter_changes_output_and_survives_save_and_load(env):
    base, workspace, _ = env
    tuned = load_generator(workspace, "lora-a")
    plain = SDLoraGenerator(str(base))
    a = tuned.sample(REQUEST)
    assert not np.array_equal(a[0].rgb, plain.sample(REQUEST)[0].rgb)
    again = load_generator(workspace, "lora-a").sample(REQUEST)
    assert all(np.array_equal(x.rgb, y.rgb) for x, y in zip(a, again))
    assert a[0].rgb.shape == (64, 64, 3)


def test_several_adapters_weighted_at_sampling_time(env):
    base, workspace, _ = env
    second = train_lora(workspace, lora_config(base, "lora-b", seed=3))
    generator = SDLoraGenerator(str(base))
    off = generator.sample(SampleRequest(**(vars(REQUEST) | {"loras": (
        LoraChoice(str(workspace.models_dir / "lora-a"), 0.0),
        LoraChoice(str(workspace.models_dir / "lora-b"), 0.0))})))
    both = generator.sample(SampleRequest(**(vars(REQUEST) | {"loras": (
        LoraChoice(str(workspace.models_dir / "lora-a"), 1.0),
        LoraChoice(str(workspace.models_dir / "lora-b"), 0.5))})))
    plain = SDLoraGenerator(str(base)).sample(REQUEST)
    assert np.array_equal(off[0].rgb, plain[0].rgb)  # weight 0: the adapters do nothing
    assert not np.array_equal(both[0].rgb, plain[0].rgb)
    assert second.status == "done"


def test_prompts_negative_prompts_and_class_tokens(env):
    _, workspace, _ = env
    generator = load_generator(workspace, "lora-a")
    assert "sks adenomatous" in class_prompt("AD") and "zwx" in class_prompt("SSA")
    free = generator.sample(SampleRequest(prompt="a colonoscopy image of a polyp", n=1, steps=2))
    negative = generator.sample(SampleRequest(prompt="a colonoscopy image of a polyp", n=1,
                                              steps=2, guidance=4.0, negative_prompt="blurry"))
    assert free[0].rgb.shape == negative[0].rgb.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="not one of this generator's"):
        generator.sample(SampleRequest(class_label="XX"))


def test_pool_and_regeneration(env, db):
    _, workspace, _ = env
    stored = sample_to_pool(db, workspace, "lora-a", SampleRequest(class_label="HP", n=2, steps=2,
                                                                   seed=9, batch_size=2))
    assert len(stored) == 2 and len({sha for _, sha in stored}) == 2
    for _, sha in stored:
        from PIL import Image

        pixels = np.asarray(Image.open(workspace.synthetic_dir / f"{sha}.png"))
        assert np.array_equal(regenerate(db, workspace, sha), pixels)


def test_prior_preservation_runs(env):
    base, workspace, _ = env
    result = train_lora(workspace, lora_config(base, "lora-prior", steps=1, checkpoint_every=1,
                                               prior_preservation=True, prior_images=3))
    assert result.status == "done" and result.steps_done == 1


def test_bad_configs():
    with pytest.raises(ValueError, match="multiple of 8"):
        LoraTrainConfig("d", "m", "b", resolution=100).validate()
    with pytest.raises(ValueError, match="rank"):
        LoraTrainConfig("d", "m", "b", rank=0).validate()


def test_speed_settings_keep_the_pixels_and_half_precision_needs_a_gpu(env):
    """channels-last changes memory layout only (same images up to float rounding); fp16/bf16
    on a CPU is refused with the reason instead of failing deep inside a kernel."""

    base, _, _ = env
    plain = SDLoraGenerator(str(base))
    fast = SDLoraGenerator(str(base))
    fast.optimise(channels_last=True)
    a, b = plain.sample(REQUEST)[0].rgb, fast.sample(REQUEST)[0].rgb
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    if torch.cuda.is_available():  # on a GPU, half precision loads and samples
        half = SDLoraGenerator(str(base), dtype=torch.bfloat16)
        c = half.sample(REQUEST)[0].rgb
        assert c.shape == a.shape and np.abs(a.astype(int) - c.astype(int)).mean() < 16
    else:
        with pytest.raises(ValueError, match="needs a CUDA device"):
            SDLoraGenerator(str(base), dtype=torch.bfloat16)
