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
from helpers import inpaint_now
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
        inpaint_now(db, workspace, InpaintRequest(
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


# the served studio: the raw protocol and a real browser -------------------------------------

@pytest.fixture(scope="module")
def live_mask_study(live_app):
    """In the served demo workspace: four polyps inpainted by the demo generator (RePaint) into
    phantom training frames, and a mask study of them and real frames for two new reviewers."""
    from polyp_core.demo import DEMO_ADMIN, DEMO_GENERATOR
    from polyp_core.review.accounts import Person

    workspace, db = live_app["workspace"], live_app["db"]
    frames = [i for i in workspace.load_manifest("phantom").items if i.split == "train"]
    for k, cls in enumerate(("AD", "SSA")):
        inpaint_now(db, workspace, InpaintRequest(
            generator=DEMO_GENERATOR, class_label=cls, dataset="phantom", image=frames[k].id,
            dilate=4, steps=4, jump_length=2, jump_n_sample=2, seeds=(0, 1)))
    names = ("mask-rev-api", "mask-rev-web")
    for name in names:
        create_account(db, name, PASSWORD)
    with db.session() as session:
        boss = queries.reviewer_by_name(session, DEMO_ADMIN[0])
        admin = Person(boss.id, boss.name, "admin")
    create_study(db, workspace, admin, StudySpec(
        name="mask-study", pools=(RealPool("phantom", 4, split="train"),
                                  SyntheticPool(4, generator=DEMO_GENERATOR)),
        reviewers=names, overlap=2, show_mask="outline"))
    with db.session() as session:
        assert queries.study_by_name(session, "mask-study").settings["audit"]["passed"]
    return names


def _mask_ratings(db, name: str) -> list[tuple]:
    with db.session() as session:
        reviewer = queries.reviewer_by_name(session, name)
        study = queries.study_by_name(session, "mask-study")
        return [(a.rating.confidence, a.rating.quality, a.rating.mask_quality)
                for a in queries.reviewer_queue(session, study.id, reviewer.id) if a.rating]


def test_raw_protocol_a_mask_rating_needs_its_third_answer(live_app, live_mask_study):
    from tests.studio_server import gradio_client, sign_in

    url, db = live_app["url"], live_app["db"]
    client = gradio_client(url, sign_in(url, live_mask_study[0], PASSWORD))
    image, status, *_ = client.predict("mask-study", api_name="/open_study")
    assert "0 of 8" in status and _green(open(image, "rb").read()) > 50
    client.predict(api_name="/choose_2")
    shown = client.predict(api_name="/rate_moderate")
    assert any("now rate the mask" in str(part) for part in shown)
    assert _mask_ratings(db, live_mask_study[0]) == []
    _, status, *_ = client.predict(api_name="/rate_mask_poor")
    assert "1 of 8" in status
    assert _mask_ratings(db, live_mask_study[0]) == [(2, "moderate", "poor")]
    with pytest.raises(Exception, match="Rate how real it looks"):  # no answers yet
        client.predict(api_name="/rate_mask_good")


def test_browser_reviewer_rates_image_and_mask_with_the_keyboard(live_app, live_mask_study,
                                                                 browser):
    from tests.studio_server import PAGE_WAIT_MS, offline_page, sign_in_page

    page, outside, failed = offline_page(browser, live_app["url"])
    name = live_mask_study[1]
    sign_in_page(page, live_app["url"], name, PASSWORD)
    page.get_by_role("tab", name="Review").click()
    page.get_by_role("button", name="Start / resume").click()
    page.get_by_text("0 of 8").wait_for(timeout=PAGE_WAIT_MS)
    page.locator("#rv-image img").wait_for(timeout=PAGE_WAIT_MS)
    page.locator("#rv-mask-good").wait_for(timeout=PAGE_WAIT_MS)  # the mask row is shown
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("4")
    page.get_by_text("Answer: 4").wait_for(timeout=PAGE_WAIT_MS)
    page.keyboard.press("g")
    page.get_by_text("now rate the mask").wait_for(timeout=PAGE_WAIT_MS)
    page.keyboard.press("w")
    page.get_by_text("1 of 8").wait_for(timeout=PAGE_WAIT_MS)
    assert _mask_ratings(live_app["db"], name) == [(4, "good", "moderate")]
    assert outside == [] and failed == []


def test_mask_quality_statistics_per_source_with_agreement_and_the_cross_table(masked):
    from polyp_core.review.reader import summary_lines
    from polyp_core.review.stats import export_csv, study_statistics

    from polyp_core.review.studies import close_study

    workspace, db, admin, reviewers = masked
    _study(masked, "masks-stats", "outline")
    _study(masked, "plain-stats", None)
    answers = ("good", "moderate", "poor")
    for who, shift in zip(reviewers, (0, 1)):
        for k, item in enumerate(desk.queue(db, who, "masks-stats")):
            desk.rate(db, who, item.token, None, answers[k % 3], confidence=1 + k % 5,
                      mask_quality=answers[(k + shift * (k % 2)) % 3])
    for name in ("masks-stats", "plain-stats"):
        close_study(db, admin, name)  # the key and ratings open when the study closes
    records = desk.rating_records(db, admin, "masks-stats")
    mask = study_statistics(records)["mask_quality"]
    assert mask["n"] == 24 and {r["source"] for r in mask["by_source"]} == \
        {"real", "paint@step-000002"}
    for row in mask["by_source"]:
        assert row["good"] + row["moderate"] + row["poor"] == row["ratings"]
        assert row["good_low"] <= row["good_share"] <= row["good_high"]
    assert sum(sum(r.values()) for r in mask["image_vs_mask"].values()) == 24
    assert len(mask["weighted_kappa"]) == 1 and mask["weighted_kappa"][0]["n"] == 12
    assert mask["ac1"]["n_paired"] == 12
    assert any(line.startswith("mask quality (24 ratings") for line in
               summary_lines(study_statistics(records)))
    written = {p.name for p in export_csv(records, workspace.root / "export-masks")}
    assert {"mask_quality_by_source.csv", "image_vs_mask_quality.csv"} <= written
    assert study_statistics(desk.rating_records(db, admin, "plain-stats"))["mask_quality"] == {}


def test_the_expert_arm_keeps_the_images_whose_mask_reviewers_rated_well(masked):
    """The expert mask-quality filter as an arm beside augmented: the same selection, only
    images whose mask was rated good; the run reports expert − augmented."""
    from dataclasses import replace as with_fields

    from polyp_core.experiment import ExperimentConfig, plan_experiment, run_experiment
    from polyp_core.experiment.policy import SelectionPolicy
    from polyp_core.training import TrainConfig

    workspace, db, _, (mr1, _) = masked
    study_id, _, _ = _study(masked, "masks-expert", "outline")
    good = set()
    with db.session() as session:
        shas = {a.token: a.image.sha256 for a in queries.reviewer_queue(session, study_id, mr1.id)
                if a.image.kind == "synthetic"}
    for k, (token, sha) in enumerate(sorted(shas.items())):
        verdict = "good" if k % 2 == 0 else "poor"
        desk.rate(db, mr1, token, None, "good", confidence=3, mask_quality=verdict)
        good |= {sha} if verdict == "good" else set()
    policy = SelectionPolicy(generators=("paint",), studies=("masks-expert",), unrated="exclude",
                             min_mask_quality="good")
    seg = TrainConfig(image_size=64, epochs=1, batch_size=32, patience=1, hidden=16,
                                freeze_backbone=True, augment=False)
    config = ExperimentConfig(dataset="demo", task="segmentation", train=seg, seeds=(0,),
                              folds=0, allow_small_test=True, arms=("augmented", "expert"),
                              policy=policy)
    plan = plan_experiment(db, workspace, config)
    assert {r.sha256 for r in plan.expert[0].images} == good
    assert {r.sha256 for r in plan.selections[0].images} > good  # augmented: unfiltered
    result = run_experiment(db, workspace, config, plan=plan)
    assert set(result.results["delta_expert_cluster"]) >= {"dice", "iou"}
    with pytest.raises(ValueError, match="give `min_mask_quality`"):
        plan_experiment(db, workspace, with_fields(config, policy=with_fields(
            policy, min_mask_quality=None)))
