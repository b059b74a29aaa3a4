"""Backbones: the bundled Lite0 weights are right, not just loaded; no silent fallbacks."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from polyp_core.backbones import (WeightsRegistry, _lite0_state_dict, create_backbone,
                                  get_backbone_spec)
from polyp_core.errors import WeightsUnavailableError

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def imagenet_input(rgb: np.ndarray, mean, std) -> torch.Tensor:
    image = Image.fromarray(rgb)
    scale = 256 / min(image.size)
    image = image.resize((round(image.width * scale), round(image.height * scale)),
                         Image.Resampling.BICUBIC)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    image = image.crop((left, top, left + 224, top + 224))
    x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
    return ((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])[None]


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0", pretrained=True, num_classes=1000).eval()


def test_lite0_mapping_covers_all_247_tensors():
    state = _lite0_state_dict()
    assert len(state) == 247
    target = create_backbone("efficientnet_lite0", pretrained=False, num_classes=1000).state_dict()
    for key, tensor in state.items():
        assert target[key].shape == tensor.shape


@pytest.mark.parametrize("name, expected", [("chelsea", CAT_CLASSES), ("coffee", {ESPRESSO})])
def test_lite0_recognises_imagenet_pictures(lite0, name, expected):
    import skimage.data as skimage_data  # pinned in requirements-test.txt: no skip

    spec = get_backbone_spec("efficientnet_lite0")
    with torch.no_grad():
        logits = lite0(imagenet_input(getattr(skimage_data, name)(), spec.mean, spec.std))
    top5 = set(logits.topk(5).indices[0].tolist())
    assert top5 & expected, f"{name}: top-5 {sorted(top5)}"
    if name == "chelsea":
        assert int(logits.argmax()) in CAT_CLASSES


def test_random_weights_do_not_recognise_the_cat():
    """The check above would catch weights that loaded but were wrong."""
    import skimage.data as skimage_data

    torch.manual_seed(0)
    model = create_backbone("efficientnet_lite0", pretrained=False, num_classes=1000).eval()
    with torch.no_grad():
        logits = model(imagenet_input(skimage_data.chelsea(), (0.5,) * 3, (0.5,) * 3))
    assert int(logits.argmax()) not in CAT_CLASSES


def test_feature_extractor_shape():
    model = create_backbone("efficientnet_lite0", num_classes=0).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 1280)
    head = create_backbone("efficientnet_lite0", num_classes=3)
    assert head(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_b0_without_weights_says_so_and_random_init_is_explicit(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty_hf" / "hub"))
    import huggingface_hub.constants as hf_constants
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "empty_hf" / "hub"))
    with pytest.raises(WeightsUnavailableError) as info:
        create_backbone("efficientnet_b0", pretrained=True, registry=WeightsRegistry(tmp_path))
    message = str(info.value)
    assert "efficientnet_b0" in message and "weights add" in message and "random" in message
    model = create_backbone("efficientnet_b0", pretrained=False, num_classes=3)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_registered_b0_weights_are_verified_and_used(tmp_path):
    reference = create_backbone("efficientnet_b0", pretrained=False, num_classes=1000)
    path = tmp_path / "b0.pth"
    torch.save(reference.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    registry = WeightsRegistry(tmp_path / "reg")
    with pytest.raises(ValueError, match="SHA-256"):
        registry.add("efficientnet_b0", path, "0" * 64)
    registry.add("efficientnet_b0", path, digest)
    loaded = create_backbone("efficientnet_b0", pretrained=True, num_classes=1000, registry=registry)
    assert "registered file" in loaded.pretrained_from
    for key, value in reference.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key])
    path.write_bytes(path.read_bytes() + b"tampered")
    with pytest.raises(WeightsUnavailableError, match="changed"):
        create_backbone("efficientnet_b0", pretrained=True, registry=registry)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        create_backbone("resnet9000")
