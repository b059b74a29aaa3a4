"""What a generator learned from, through every model it was fine-tuned from.

The honest-comparison rule (no synthetic image from a generator that saw a validation or test
image) rests on this record: ``trained_on.image_sha256`` of the generator's ``config.json``,
plus that of the model named by ``train.init_from``, and so on. An exported generator carries
the whole chain as ``lineage``, since the models it came from stay behind.
"""

from __future__ import annotations

import json
from pathlib import Path


class UnknownTrainingData(ValueError):
    """An imported generator whose training data were declared unknown."""


def _meta(models_dir: Path, model_id: str) -> dict:
    path = Path(models_dir) / model_id / "config.json"
    # an imported generator's registration (polyp_core.external) sits beside models/
    external = Path(models_dir).parent / "external" / model_id / "generator.json"
    if not path.is_file() and external.is_file():
        return json.loads(external.read_text())
    if not path.is_file():
        raise ValueError(f"generator {model_id!r} has no training record ({path} is missing), "
                         "so it cannot be shown not to have seen validation/test images")
    return json.loads(path.read_text())


def _parent(meta: dict) -> str | None:
    parent = (meta.get("train") or {}).get("init_from")
    return parent.split("@")[0] if parent else None


def model_chain(models_dir: Path, model_id: str) -> list[str]:
    """``model_id`` and the models it was fine-tuned from, newest first."""
    chain, model = [], model_id
    while model and model not in chain:
        chain.append(model)
        meta = _meta(models_dir, model)
        model = None if "lineage" in meta else _parent(meta)
    return chain


def generator_training_images(models_dir: Path, model_id: str) -> set[str]:
    """SHA-256 of every image the generator and the models it was fine-tuned from learned from.

    Raises:
        UnknownTrainingData: an imported generator declared as trained on unknown data.
        ValueError: when the training record of the generator, or of a model in its chain, is
            missing: what it saw cannot then be known.
    """
    shas: set[str] = set()
    for model in model_chain(models_dir, model_id):
        meta = _meta(models_dir, model)
        if (meta.get("trained_on") or {}).get("unknown"):
            raise UnknownTrainingData(
                f"generator {model!r} was imported with its training data declared unknown, so "
                "it cannot be shown not to have seen validation/test images")
        if "lineage" in meta:
            shas |= set(meta["lineage"]["image_sha256"])
            continue
        shas |= set(meta.get("trained_on", {}).get("image_sha256", []))
        for sub in (meta.get("sub_models") or {}).values():  # one model per class
            shas |= generator_training_images(Path(models_dir) / model, sub)
    return shas


def lineage_record(models_dir: Path, model_id: str) -> dict:
    """What an exported generator stores as ``lineage``."""
    return {"models": model_chain(models_dir, model_id),
            "image_sha256": sorted(generator_training_images(models_dir, model_id))}


def declared_unknown(models_dir: Path, model_id: str) -> bool:
    """Whether an imported generator's training data were declared unknown."""
    try:
        return any((_meta(models_dir, m).get("trained_on") or {}).get("unknown")
                   for m in model_chain(models_dir, model_id))
    except ValueError:
        return False
