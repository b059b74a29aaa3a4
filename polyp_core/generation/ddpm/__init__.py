"""Backend ``ddpm``: a class-conditional DDPM trained from scratch (diffusers ``UNet2DModel``).

One model for all classes, with classifier-free guidance learnt by dropping the class to a
null token during training; or, as the thesis did, one unconditional model per class. The
class table is ``[scheme classes..., "unknown", <null>]``: pretraining on unlabelled frames
uses ``unknown``, fine-tuning on the pathology set starts from that checkpoint.

A model folder (``workspace/models/<id>/``) holds ``config.json`` (model, training config,
classes, the split it learnt from, package versions), ``loss.csv`` and
``checkpoints/step-NNNNNN/`` with EMA and raw weights (safetensors), optimizer state and a
sample grid per class.

Three modules: ``model`` (configs, presets, the U-Net and noise schedule, the model folder),
``sampler`` (guided denoising, grids, ``DDPMGenerator``) and ``trainer`` (``train_ddpm``). The
names callers use are re-exported here.
"""

from polyp_core.generation.ddpm.model import (MASK_THRESHOLD, MIXED_PRECISION, NULL, PRESETS,
                                              TASKS, UNKNOWN, DDPMConfig, DDPMTrainConfig,
                                              build_unet, get_preset, list_checkpoints,
                                              mixed_precision, model_checkpoints, model_dir,
                                              noise_schedule, pick_checkpoint, sampling_classes,
                                              task_channels, versions)
from polyp_core.generation.ddpm.sampler import (DDPMGenerator, clipped_eps, denoise_batch, grid,
                                                guidance_labels, guided_eps, sample_batch,
                                                split_image_mask)
from polyp_core.generation.ddpm.trainer import TrainResult, train_ddpm, training_loader

__all__ = ["DDPMConfig", "DDPMGenerator", "DDPMTrainConfig", "MASK_THRESHOLD", "MIXED_PRECISION",
           "NULL", "PRESETS", "TASKS", "TrainResult", "UNKNOWN", "build_unet", "clipped_eps",
           "denoise_batch", "get_preset", "grid", "guidance_labels", "guided_eps",
           "list_checkpoints", "mixed_precision", "model_checkpoints", "model_dir",
           "noise_schedule", "pick_checkpoint", "sample_batch", "sampling_classes",
           "split_image_mask", "task_channels", "train_ddpm", "training_loader", "versions"]
