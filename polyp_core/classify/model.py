"""The histology classifier: a timm backbone from the registry and a small head."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from polyp_core.backbones import WeightsRegistry, create_backbone, get_backbone_spec
from polyp_core.files import atomic_write

IMAGE_SIZES = (128, 224)


@dataclass(frozen=True)
class ClassifierSpec:
    """What a trained classifier is: enough to build it again and feed it images."""

    backbone: str
    classes: tuple[str, ...]
    image_size: int
    hidden: int = 256
    dropout: float = 0.3
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


class Classifier(nn.Module):
    """Backbone (pooled features) -> Linear -> ReLU -> Dropout -> Linear."""

    def __init__(self, backbone: nn.Module, num_classes: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.Linear(backbone.num_features, hidden), nn.ReLU(),
                                  nn.Dropout(dropout), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_classifier(backbone: str, classes: tuple[str, ...] | list[str], image_size: int,
                     hidden: int = 256, dropout: float = 0.3, pretrained: bool = True,
                     registry: WeightsRegistry | None = None) -> tuple[Classifier, ClassifierSpec]:
    """A classifier over ``classes`` on a registry backbone (ImageNet weights by default).

    Raises:
        ValueError: unknown backbone, fewer than two classes or a bad size.
        WeightsUnavailableError: pretrained weights are not on this machine.
    """
    spec_b = get_backbone_spec(backbone)
    if len(classes) < 2:
        raise ValueError(f"a classifier needs at least two classes; got {list(classes)}")
    if image_size < 32 or image_size % 32:
        raise ValueError(f"image_size must be a multiple of 32 (128 or 224 usually); got {image_size}")
    net = create_backbone(backbone, pretrained=pretrained, num_classes=0, registry=registry)
    model = Classifier(net, len(classes), hidden, dropout)
    spec = ClassifierSpec(backbone, tuple(classes), image_size, hidden, dropout,
                          tuple(spec_b.mean), tuple(spec_b.std))
    return model, spec


def save_classifier(folder: Path, model: Classifier | dict, spec: ClassifierSpec,
                    extra: dict) -> Path:
    """``model.safetensors`` (of the model, or of its state dict) beside ``config.json`` (spec,
    versions and ``extra``)."""
    from safetensors.torch import save

    from polyp_core import __version__

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = model if isinstance(model, dict) else model.state_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    atomic_write(folder / "model.safetensors", save(state))
    atomic_write(folder / "config.json", json.dumps(
        {"spec": asdict(spec), "studio_version": __version__, "torch": torch.__version__, **extra},
        indent=1))
    return folder


def load_classifier(folder: Path) -> tuple[Classifier, ClassifierSpec]:
    """A saved classifier, on the CPU, in eval mode.

    Raises:
        FileNotFoundError: naming the missing file.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in ("config.json", "model.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"classifier file missing: {folder / name}")
    data = json.loads((folder / "config.json").read_text())["spec"]
    spec = ClassifierSpec(**{**data, "classes": tuple(data["classes"]), "mean": tuple(data["mean"]),
                             "std": tuple(data["std"])})
    model, _ = build_classifier(spec.backbone, spec.classes, spec.image_size, spec.hidden,
                                spec.dropout, pretrained=False)
    model.load_state_dict(load_file(folder / "model.safetensors"))
    return model.eval(), spec
