"""Training one classifier: AdamW, warm-up + cosine learning rate, early stopping on
validation macro-F1, mixed precision on a GPU, seeded and deterministic on the CPU."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR

from polyp_core.backbones import WeightsRegistry
from polyp_core.data.tensors import ImageTensors, augment, normalise
from polyp_core.classify.metrics import classification_metrics
from polyp_core.classify.model import Classifier, ClassifierSpec, build_classifier
from polyp_core.progress import CancelToken, Progress, no_progress
from polyp_core.training import TrainConfig, autocast_dtype, warmup_cosine_adamw

#: augmented views per image embedded once when the backbone is frozen (the original is one more)
AUGMENTED_VIEWS = 1


@dataclass
class TrainedClassifier:
    model: Classifier
    spec: ClassifierSpec
    best_epoch: int
    best_valid_macro_f1: float
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``n / (C * n_c)``: every class weighs the same in total. A missing class gets 0."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    weights = torch.where(counts > 0, len(labels) / (num_classes * counts.clamp(min=1)),
                          torch.zeros_like(counts))
    return weights


def epoch_order(labels: torch.Tensor, num_classes: int, imbalance: str,
                generator: torch.Generator) -> torch.Tensor:
    """Indices of one epoch: a permutation, or (``sampler``) a class-balanced draw with
    replacement of the same length."""
    if imbalance == "sampler":
        per_image = class_weights(labels, num_classes)[labels]
        return torch.multinomial(per_image, len(labels), replacement=True, generator=generator)
    return torch.randperm(len(labels), generator=generator)


@torch.inference_mode()
def predict(model: Classifier, spec: ClassifierSpec, data: ImageTensors, device: torch.device,
            batch_size: int = 64) -> np.ndarray:
    """Class probabilities ``(N, C)`` of real, un-augmented images."""
    model.eval()
    out = []
    for start in range(0, len(data), batch_size):
        x = normalise(data.pixels[start:start + batch_size].to(device), spec.mean, spec.std)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(torch.softmax(model(x).float(), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(spec.classes)), np.float32)


@torch.no_grad()  # not inference_mode: the head trains on these tensors
def backbone_features(model: Classifier, spec: ClassifierSpec, pixels: torch.Tensor,
                      device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """Pooled backbone features of un-augmented images (for a frozen backbone: once per run)."""
    model.backbone.eval()
    out = [model.backbone(normalise(pixels[i:i + batch_size].to(device), spec.mean, spec.std)).float()
           for i in range(0, len(pixels), batch_size)]
    return torch.cat(out)


def frozen_features(cache: dict | None, config: TrainConfig, model: Classifier,
                    spec: ClassifierSpec, data: ImageTensors, device: torch.device) -> torch.Tensor:
    """Pretrained frozen-backbone features of ``data``, from ``cache`` for every image this run
    embedded before with the same backbone (another seed, another fold, the linear probe):
    the cache is keyed by content hash, so only images it has not seen are embedded. A randomly
    initialised backbone differs by seed, so it is never cached."""
    if cache is None or not config.pretrained:
        return backbone_features(model, spec, data.pixels, device)
    rows = cache.setdefault((config.backbone, config.image_size), {})
    missing = [i for i, ref in enumerate(data.refs) if ref.sha256 not in rows]
    if missing:
        index = torch.as_tensor(missing, dtype=torch.long)
        fresh = backbone_features(model, spec, data.pixels[index], device).cpu()
        for i, row in zip(missing, fresh):
            rows[data.refs[i].sha256] = row
    if not len(data):
        return backbone_features(model, spec, data.pixels, device)
    return torch.stack([rows[ref.sha256] for ref in data.refs]).to(device)


def predict_run(trained: TrainedClassifier, config: TrainConfig, data: ImageTensors,
                device: torch.device, cache: dict | None = None) -> np.ndarray:
    """Class probabilities of ``data``: through the head alone on the run's cached features when
    the pretrained backbone was frozen (the same numbers as the whole model in eval mode, which
    a test checks; cross-validation predicts every fold, so this saves a backbone pass per image,
    fold and seed), else through the whole model."""
    if cache is None or not (config.freeze_backbone and config.pretrained):
        return predict(trained.model, trained.spec, data, device)
    trained.model.eval()
    with torch.inference_mode():
        features = frozen_features(cache, config, trained.model, trained.spec, data, device)
        return torch.softmax(trained.model.head(features).float(), dim=1).cpu().numpy()


def evaluate(model: Classifier, spec: ClassifierSpec, data: ImageTensors,
             device: torch.device) -> dict:
    probs = predict(model, spec, data, device)
    return classification_metrics(data.labels.numpy(), probs.argmax(1), spec.classes)


def _frozen_views(feature_cache: dict | None, config: TrainConfig,
                  model: torch.nn.Module, spec: ClassifierSpec, train: ImageTensors,
                  pixels: torch.Tensor, device: torch.device,
                  generator: torch.Generator) -> torch.Tensor:
    """A frozen backbone sees the same inputs every epoch: embed once. With augmentation, a
    fixed number of augmented views per image (AUGMENTED_VIEWS) is embedded once as well and
    each epoch draws one view per image (the original or an augmented one), so augmenting costs
    at most (1 + views) embeddings instead of one per epoch. Returns (views, N, features)."""
    views = [frozen_features(feature_cache, config, model, spec, train, device)]
    if config.augment:
        views += [torch.cat([backbone_features(model, spec, augment(pixels[i:i + 256], generator),
                                               device) for i in range(0, len(pixels), 256)])
                  for _ in range(AUGMENTED_VIEWS)]
    return torch.stack(views)


def _valid_metrics(model: torch.nn.Module, spec: ClassifierSpec, valid: ImageTensors,
                   device: torch.device, valid_features: torch.Tensor | None) -> dict:
    """Macro-F1 and balanced accuracy on the validation images (from cached features when the
    backbone is frozen)."""
    if valid_features is None:
        return evaluate(model, spec, valid, device)
    model.eval()
    with torch.inference_mode():
        predicted = model.head(valid_features).argmax(1).cpu().numpy()
    return classification_metrics(valid.labels.numpy(), predicted, spec.classes)


class _Stepper:
    """One optimisation step at a time: the batch's logits (from the embedded views when the
    backbone is frozen, else from the pixels, augmented when asked), the loss, the update."""

    def __init__(self, model: Classifier, spec: ClassifierSpec, config: TrainConfig,
                 device: torch.device, generator: torch.Generator, pixels: torch.Tensor,
                 labels: torch.Tensor, view_stack: torch.Tensor | None,
                 optimizer: torch.optim.Optimizer, schedule: LambdaLR,
                 loss_weights: torch.Tensor | None) -> None:
        self.model, self.spec, self.config, self.device = model, spec, config, device
        self.generator, self.pixels, self.labels = generator, pixels, labels
        self.view_stack, self.optimizer, self.schedule = view_stack, optimizer, schedule
        self.loss_weights = loss_weights
        self.amp = autocast_dtype(config, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)

    def logits(self, index: torch.Tensor) -> torch.Tensor:
        views, device = self.view_stack, self.device
        if views is not None:
            rows = index.to(device)
            if len(views) == 1:  # no augmentation: no draw (runs stay as they were)
                return self.model.head(views[0, rows])
            pick = torch.randint(len(views), (len(index),), generator=self.generator)
            return self.model.head(views[pick.to(device), rows])
        raw = self.pixels[index.to(self.pixels.device)].to(device, non_blocking=True)
        x = augment(raw, self.generator) if self.config.augment else raw
        return self.model(normalise(x, self.spec.mean, self.spec.std))

    def step(self, index: torch.Tensor) -> float:
        """One update on the batch ``index``; its loss."""
        y = self.labels[index.to(self.device)]
        amp = self.amp
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(self.logits(index).float(), y, weight=self.loss_weights)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.step()
        return loss.item()


def train_classifier(train: ImageTensors, valid: ImageTensors, classes: tuple[str, ...],
                     config: TrainConfig, seed: int, device: torch.device | None = None,
                     registry: WeightsRegistry | None = None, progress: Progress = no_progress,
                     cancel: CancelToken | None = None, label: str = "",
                     feature_cache: dict | None = None) -> TrainedClassifier:
    """Train on ``train`` (augmented when asked), keep the weights of the epoch with the best
    validation macro-F1, stop after ``patience`` epochs without improvement. With an empty
    ``valid`` the training runs ``config.epochs`` epochs and keeps the last (a fixed-epoch
    arm: cross-validation without an inner validation split, and ``--refit``).

    ``feature_cache`` (a dict the caller keeps for one run) lets seeds share the frozen
    backbone's features of the same images.

    Raises:
        ValueError: an empty training or validation set, or a bad config.
        Cancelled: when ``cancel`` is set (checked every step).
    """
    config.validate()
    if len(train) == 0:
        raise ValueError("training needs images in the training set (it has none)")
    validating = len(valid) > 0
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)  # the head's initialisation and dropout
    generator = torch.Generator().manual_seed(seed)  # order and augmentation
    model, spec = build_classifier(config.backbone, classes, config.image_size, config.hidden,
                                   config.dropout, config.pretrained, registry)
    model = model.to(device).to(memory_format=torch.channels_last)
    if config.freeze_backbone:
        model.backbone.requires_grad_(False)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    optimizer, schedule = warmup_cosine_adamw(model, config, steps_per_epoch)
    loss_weights = class_weights(train.labels, len(classes)).to(device) \
        if config.imbalance == "loss" else None
    labels_dev = train.labels.to(device)
    pixels = train.pixels.to(device) if device.type == "cuda" else train.pixels
    fixed = config.freeze_backbone
    view_stack = _frozen_views(feature_cache, config, model, spec, train, pixels, device,
                               generator) if fixed else None
    valid_features = frozen_features(feature_cache, config, model, spec, valid, device) \
        if fixed and validating else None

    stepper = _Stepper(model, spec, config, device, generator, pixels, labels_dev, view_stack,
                       optimizer, schedule, loss_weights)

    best_f1, best_epoch, best_state, history, waited = -1.0, 0, None, [], 0
    step = 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        if config.freeze_backbone:
            model.backbone.eval()  # frozen BatchNorm statistics too
        order = epoch_order(train.labels, len(classes), config.imbalance, generator)
        running = 0.0
        for start in range(0, len(order), config.batch_size):
            if cancel is not None:
                cancel.check()
            index = order[start:start + config.batch_size]
            loss = stepper.step(index)
            step += 1
            running += loss
            progress(step, total, f"{label}epoch {epoch}/{config.epochs} · step {step}/{total} · "
                                  f"loss {loss:.4f} · best valid macro-F1 {max(best_f1, 0):.3f}")
        if not validating:
            history.append({"epoch": epoch, "train_loss": running / steps_per_epoch})
            best_epoch, best_state = epoch, None
            continue
        valid_metrics = _valid_metrics(model, spec, valid, device, valid_features)
        f1 = valid_metrics["macro_f1"]
        history.append({"epoch": epoch, "train_loss": running / steps_per_epoch,
                        "valid_macro_f1": f1, "valid_balanced_accuracy": valid_metrics["balanced_accuracy"]})
        progress(step, total, f"{label}epoch {epoch}/{config.epochs} · valid macro-F1 {f1:.3f}")
        if f1 > best_f1:
            best_f1, best_epoch, waited = f1, epoch, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        else:
            waited += 1
            if waited >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainedClassifier(model, spec, best_epoch, best_f1 if validating else float("nan"),
                             history, stopped_early=len(history) < config.epochs)
