"""Studies that show each image with its polyp mask: the mask goes through the blinding chain
(rasterised at the working resolution, one style, the same fixed-length file), the leak
auditor reports the masks' shapes, and a rating holds three answers: realness, image quality,
mask quality. Through the engine, the raw Gradio protocol and a real browser."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from polyp_core.generation.inpaint import InpaintRequest
from polyp_core.review import desk
from polyp_core.review.accounts import create_account
from polyp_core.review.errors import InvalidRating
from polyp_core.review.studies import (RealPool, StudySpec, SyntheticPool, create_study,
                                       served_bytes)
from polyp_core.workflows import TERMINAL, generate
from review_db import queries
from tests.conftest import PASSWORD


def _green(data: bytes) -> int:
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)
    return int(((rgb[..., 1] > 200) & (rgb[..., 0] < 90) & (rgb[..., 2] < 90)).sum())


@pytest.fixture(scope="module")
def masked(painted):
    """Eight inpainted images (with masks) in the pool, an admin and two reviewers."""
    workspace, db = painted
    frames = [i for i in workspace.load_manifest("demo").items if i.split == "train"]
    for k, cls in enumerate(("AD", "SSA", "HP", "AD")):
        generate.inpaint_into_pool(db, workspace, TERMINAL, InpaintRequest(
            generator="paint", class_label=cls, dataset="demo", image=frames[k].id, dilate=3,
            steps=2, seeds=(300 + k, 400 + k)))
    admin = create_account(db, "mask-boss", PASSWORD, "admin")
    reviewers = [create_account(db, name, PASSWORD) for name in ("mr1", "mr2")]
    return workspace, db, admin, reviewers


def _study(masked, name: str, show_mask: str | None) -> object:
    workspace, db, admin, _ = masked
    spec = StudySpec(name=name, pools=(RealPool("demo", 6, split="train"),
                                       SyntheticPool(6, generator="paint")),
                     reviewers=("mr1", "mr2"), overlap=2, show_mask=show_mask)
    study_id = create_study(db, workspace, admin, spec)
    with db.session() as session:
        study = queries.study_by_name(session, name)
        return study_id, dict(study.settings), [(si.image.kind, served_bytes(workspace, study,
                                                                             si.image))
                                                 for si in queries.study_images(session, study_id)]


def test_a_mask_study_draws_every_mask_alike_and_passes_its_audit(masked):
    _, settings, served = _study(masked, "masks-outline", "outline")
    assert settings["show_mask"] == "outline" and settings["serving"]["mask"] == "outline"
    audit = settings["audit"]
    assert audit["passed"], audit
    channels = {c["name"]: c for c in audit["channels"]}
    assert {"mask_area", "mask_boundary", "mask_smoothness"} <= set(channels)
    assert not any(channels[m]["gated"] for m in ("mask_area", "mask_boundary", "mask_smoothness"))
    assert len({len(data) for _, data in served}) == 1  # one byte length for every image
    assert {kind for kind, _ in served} == {"real", "synthetic"}
    assert all(_green(data) > 50 for _, data in served)  # every image carries its outline
    _, settings, served = _study(masked, "masks-side", "side-by-side")
    width, height = Image.open(io.BytesIO(served[0][1])).size
    assert (width, height) == (2 * settings["serve_size"], settings["serve_size"])


def test_a_rating_holds_three_answers_and_the_desk_decides_which(masked):
    workspace, db, _, (mr1, _) = masked
    _study(masked, "masks-rated", "outline")
    _study(masked, "no-masks", None)
    item = desk.next_unrated(db, mr1, "masks-rated")
    with pytest.raises(InvalidRating, match="mask_quality None is not one of: good, moderate, "
                                            "poor"):
        desk.rate(db, mr1, item.token, None, "good", confidence=2)
    desk.rate(db, mr1, item.token, None, "good", confidence=2, mask_quality="poor")
    stored = desk.queue(db, mr1, "masks-rated")[item.position]
    assert (stored.confidence, stored.quality, stored.mask_quality) == (2, "good", "poor")
    other = desk.next_unrated(db, mr1, "no-masks")
    with pytest.raises(InvalidRating, match="this study shows no masks"):
        desk.rate(db, mr1, other.token, None, "good", confidence=2, mask_quality="good")
    assert desk.queue(db, mr1, "no-masks")[other.position].rated is False
