"""The segmenter: segmentation-models-pytorch's U-Net on a timm encoder whose ImageNet weights
come from :mod:`polyp_core.backbones` (the bundled Lite0 state dict, a registered file or the
local Hugging Face cache); nothing is downloaded."""

from __future__ import annotations

import torch

from polyp_core.backbones import WeightsRegistry, get_backbone_spec, pretrained_state_dict
from polyp_core.errors import WeightsUnavailableError

#: decoder widths for a 5-stage encoder (smaller than smp's default: polyps are one blob)
DECODER_CHANNELS = (128, 64, 32, 16, 8)


def build_segmenter(backbone: str = "efficientnet_lite0", pretrained: bool = True,
                    registry: WeightsRegistry | None = None) -> torch.nn.Module:
    """A one-channel (polyp logit) U-Net whose encoder is ``backbone``.

    Raises:
        ValueError: unknown backbone.
        WeightsUnavailableError: pretrained weights asked for but absent, or not fitting.
    """
    import segmentation_models_pytorch as smp

    spec = get_backbone_spec(backbone)
    model = smp.Unet(encoder_name=f"tu-{spec.timm_name}", encoder_weights=None, classes=1,
                     decoder_channels=DECODER_CHANNELS)
    if pretrained:
        state, origin = pretrained_state_dict(backbone, registry)
        missing, _unused_head = model.encoder.model.load_state_dict(state, strict=False)
        if missing:
            raise WeightsUnavailableError(f"weights for {backbone!r} from {origin} do not fit the "
                                          f"U-Net encoder: missing {list(missing)[:5]}")
        model.pretrained_from = origin
    model.mean, model.std = tuple(spec.mean), tuple(spec.std)
    return model
