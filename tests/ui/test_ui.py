"""The studio in a real server: gradio_client against its API, and Debian's Chromium (driven by
Playwright) as a reviewer rating by keyboard and as an admin opening every tab, offline."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from polyp_core.demo import DEMO_ADMIN, DEMO_REVIEWERS, DEMO_STUDY
from review_db import queries
from tests.conftest import PASSWORD
from tests.studio_server import (PAGE_WAIT_MS, gradio_client, offline_page, ratings_of, sign_in,
                                 sign_in_page, start_review)

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    from gradio_client import Client

SCREENSHOTS = os.environ.get("STUDIO_SCREENSHOTS")  # keep the tab screenshots here when set


# API (gradio_client) ----------------------------------------------------------------------------

def test_api_sign_in_review_and_refusals(live_app):
    import httpx

    wrong = httpx.post(live_app["url"] + "login", data={"name": "reviewer2",
                                                        "password": "wrong-password"})
    assert wrong.status_code == 401 and "unknown name or wrong password" in wrong.text
    assert "polyp_session" not in wrong.cookies
    name, password = DEMO_REVIEWERS[1]
    client = gradio_client(live_app["url"], sign_in(live_app["url"], name, password))
    image, status, *_ = client.predict(DEMO_STUDY, api_name="/open_study")
    assert "0 of" in status and Path(image).is_file()
    # nothing the client receives names the origin: the file is a content-named JPEG
    assert "synthetic" not in image.lower() and "real" not in Path(image).name.lower()
    with pytest.raises(Exception, match="Choose how real it looks first"):
        client.predict(api_name="/rate_good")
    client.predict(api_name="/choose_5")
    _, status, *_ = client.predict(api_name="/rate_poor")
    assert "1 of" in status
    assert ratings_of(live_app["db"], name) == 1
    # a reviewer cannot reach admin work: refused before it is queued
    with pytest.raises(Exception, match="403 Forbidden"):
        client.predict("phantom", "", "efficientnet_lite0", 128, "sampler", "0", 1, False, "", 1,
                       "any", "include", "", None, "", False, True, "auto", False, 0.15, False,
                       api_name="/start_retrain")


def test_a_retrain_is_planned_before_it_is_queued(live_app):
    """The Retrain tab's folds box goes through the same plan as the CLI: a bad number of folds
    is answered at once and no job is queued."""
    from polyp_core.jobs import list_jobs

    client = gradio_client(live_app["url"], sign_in(live_app["url"], *DEMO_ADMIN))
    before = len(list_jobs(live_app["db"], "retrain"))
    for folds, message in (("1", "use 2 or more"), ("2.5", "is not a number of folds or 'auto'"),
                           ("20", "fewer groups to test on than folds")):
        with pytest.raises(Exception, match=message):
            client.predict("phantom", "", "efficientnet_lite0", 128, "sampler", "0", 1, False, "",
                           1, "any", "include", "", None, "", False, True, folds, False, 0.15,
                           False, api_name="/start_retrain")
    assert len(list_jobs(live_app["db"], "retrain")) == before


def test_the_whole_loop_panel_refuses_before_any_job(live_app):
    """The Retrain tab's recipe panel goes through the recipe's checks: N above a class's
    training frames and a budget below one measured training step are answered at once."""
    from polyp_core.jobs import list_jobs

    client = gradio_client(live_app["url"], sign_in(live_app["url"], *DEMO_ADMIN))
    before = len(list_jobs(live_app["db"], "recipe"))
    for minutes, n, message in ((20, 5000, "per_class.*5000 images of AD need as many"),
                                (1e-5, 2, "minutes.*1e-05 min is below one training step")):
        with pytest.raises(Exception, match=message):
            client.predict("phantom", minutes, n, "0,1", True, 128, None,
                           api_name="/start_recipe")
    assert len(list_jobs(live_app["db"], "recipe")) == before


def wait_for_job(client: Client, poll: str, timeout: float = 300) -> tuple:
    """Poll a job's timer event until its line says it ended; the last outputs."""
    deadline = time.time() + timeout
    while True:
        outputs = client.predict(api_name=poll)
        if not outputs[0].startswith(("**queued**", "**running**")):
            return outputs
        assert time.time() < deadline, f"{poll}: the job did not end in {timeout} s"
        time.sleep(0.5)


def test_api_admin_exports_an_arm_as_a_zip_job(live_app):
    """The Retrain tab's export: the ui-test run's augmented arm as CSV, a job whose zip holds
    the cases, the data card and nothing outside the export; a fold that does not exist is
    refused before any job."""
    import zipfile

    from polyp_core.jobs import list_jobs

    db = live_app["db"]
    with db.session() as session:
        run_id = next(r.id for r in queries.list_runs(session, "retrain")
                      if r.config.get("name") == "ui-test")
    client = gradio_client(live_app["url"], sign_in(live_app["url"], *DEMO_ADMIN))
    with pytest.raises(Exception, match="fold 2 does not exist"):
        client.predict(run_id, "augmented", 2, "csv", api_name="/start_export")
    before = len(list_jobs(db, "export"))
    client.predict(run_id, "augmented", 1, "csv", api_name="/start_export")
    outputs = wait_for_job(client, "/export_progress")
    assert outputs[0].startswith("**done**"), outputs
    names = zipfile.ZipFile(outputs[-1]).namelist()  # (status, timer, file): the State is not sent
    assert {"cases.csv", "DATACARD.md", "datacard.json"} <= set(names)
    assert all(not n.startswith(("/", "..")) for n in names)
    assert len(list_jobs(db, "export")) == before + 1


def test_api_admin_samples_as_a_job_and_adds_to_the_pool(live_app):
    client = gradio_client(live_app["url"], sign_in(live_app["url"], *DEMO_ADMIN))
    with live_app["db"].session() as session:
        before = len(queries.synthetic_images(session))
    status, _timer = client.predict("demo-ddpm", None, "SSA", "", "", 2, 7, False, 10, 2.0,
                                    "dpmsolver++", "", 1.0, api_name="/sample")
    assert status.startswith(("**queued**", "**running**", "**done**")), status
    status, gallery, _timer = wait_for_job(client, "/poll_samples")
    assert status.startswith("**done**") and "not in the pool" in status, status
    assert len(gallery) == 2 and "seed 7 · SSA · dpmsolver++ 10 steps" in gallery[0]["caption"]
    assert "Added 2 image(s)" in client.predict(api_name="/add_to_pool")
    with live_app["db"].session() as session:
        assert len(queries.synthetic_images(session)) == before + 2
    with pytest.raises(Exception, match="no generator 'no-such-model'"):  # refused, not queued
        client.predict("no-such-model", None, "SSA", "", "", 2, 7, False, 10, 2.0, "ddpm", "",
                       1.0, api_name="/sample")


def test_a_grid_runs_as_a_job_and_a_second_admin_is_answered_at_once(live_app, monkeypatch):
    """While a 64-cell grid runs (the runner holds the generation lock), another admin's Data
    tab answers; a 65-cell grid is refused before anything is queued. No clock: the grid is held
    after its first cell until the second admin's requests are answered, so they cannot have
    waited for it."""
    import threading

    from polyp_core.review.accounts import create_account
    from polyp_core.workflows import generate

    first_cell, release = threading.Event(), threading.Event()
    real_grid = generate.xy_grid

    def held_grid(*args: object, on_cell: Callable | None = None, **kwargs: object) -> object:
        def cell(i: int, j: int, rgb: np.ndarray) -> None:
            on_cell(i, j, rgb)
            first_cell.set()
            assert release.wait(600), "the test never released the grid"
        return real_grid(*args, on_cell=cell, **kwargs)

    monkeypatch.setattr(generate, "xy_grid", held_grid)
    url, db = live_app["url"], live_app["db"]
    name = f"admin-{uuid.uuid4().hex[:6]}"
    create_account(db, name, PASSWORD, role="admin")
    one = gradio_client(url, sign_in(url, *DEMO_ADMIN))
    two = gradio_client(url, sign_in(url, name, PASSWORD))
    axes = ("seed", ",".join(str(i) for i in range(8)), "guidance", "1,2,3,4,5,6,7,8")
    with pytest.raises(Exception, match="65 cells is over the limit of 64 cells"):
        one.predict("demo-ddpm", None, "AD", "", "", 0, 20, 2.0, "ddpm", "", 1.0, "seed",
                    ",".join(str(i) for i in range(13)), "guidance", "1,2,3,4,5",
                    api_name="/grid")
    status, _timer = one.predict("demo-ddpm", None, "AD", "", "", 0, 5, 2.0, "ddpm", "", 1.0,
                                 *axes, api_name="/grid")
    assert status.startswith(("**queued**", "**running**")), status
    try:
        assert first_cell.wait(300), "the grid job never made its first cell"
        for _ in range(6):  # answered while the grid holds the generation lock
            counts, *_ = two.predict("phantom", None, api_name="/data_overview")
            assert counts["headers"][0] == "split"
        status, picture, _timer = one.predict(api_name="/poll_grid")
        assert status.startswith("**running**"), status
    finally:
        release.set()
    status, picture, _timer = wait_for_job(one, "/poll_grid", timeout=600)
    assert status.startswith("**done**"), status
    from PIL import Image

    width, height = Image.open(picture).size  # the grid's picture, as the page receives it
    assert width > 64 and height > 64


def test_api_upload_under_a_taken_name_is_refused_and_the_open_study_keeps_its_images(
        live_app, tmp_path):
    """The Data tab's zip upload, as the browser sends it (upload, then the import event):
    an archive named like the demo's data set is refused and nothing the study shows changes."""
    import hashlib
    import zipfile

    from gradio_client import handle_file

    workspace = live_app["workspace"]
    source = workspace.root / "sources" / "phantom"
    def fingerprint(folder: Path) -> dict:  # noqa: E306
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}
    served, images = fingerprint(workspace.root / "studies"), fingerprint(source)
    assert served and images
    bundle = tmp_path / "phantom.zip"
    with zipfile.ZipFile(bundle, "w") as handle:
        for path in sorted(source.rglob("*"))[:40]:
            if path.is_file():
                handle.writestr(str(path.relative_to(source)), b"replaced")
    client = gradio_client(live_app["url"], sign_in(live_app["url"], *DEMO_ADMIN))
    with pytest.raises(Exception, match="named 'phantom' already exists; an import never writes"):
        client.predict("", handle_file(str(bundle)), "phantom", api_name="/import_source")
    assert fingerprint(workspace.root / "studies") == served
    assert fingerprint(source) == images


def test_api_reader_study_statistics_of_the_simulated_demo_study(live_app):
    """The demo's closed study with simulated ratings: per-reader ROC and AUC, the OR
    analysis with its CI, balanced accuracy and Fisher's test, pace with its flag, the
    per-source table, AC1; the same lines the CLI's study stats prints."""
    from polyp_core.demo import DEMO_SIMULATED_STUDY

    client = gradio_client(live_app["url"], sign_in(live_app["url"], *DEMO_ADMIN))
    summary, verdicts, quality, pairs, pace, sources, roc, forest = client.predict(
        DEMO_SIMULATED_STUDY, api_name="/study_statistics")
    for words in ("balanced accuracy", "chance 0.5", "Fisher's exact", "DeLong 95% CI",
                  "Obuchowski-Rockette random-reader random-case", "reader-averaged AUC",
                  "TOO FAST: median under 1 s", "Gwet's AC1", "test-retest on 6",
                  "calibration"):
        assert words in summary, words
    assert {row[0] for row in verdicts["data"]} == {"reviewer1", "reviewer2", "reviewer3", "pooled"}
    assert [row[4] for row in pace["data"]].count("too fast") == 1
    assert any(row[1] == "all" for row in sources["data"])
    import json

    for figure in (roc, forest):  # each reader's curve or interval is drawn
        assert all(name in json.dumps(figure) for name in ("reviewer1", "reviewer2", "reviewer3"))


def test_api_admin_trains_a_class_balanced_generator(live_app):
    import json

    client = gradio_client(live_app["url"], sign_in(live_app["url"], *DEMO_ADMIN))
    status, _timer = client.predict("ddpm", "phantom", "ui-balanced", "tiny", 2, 8, 2, "", 8,
                                    True, api_name="/start_training")
    assert status.startswith(("**queued**", "**running**", "**done**")), status
    folder = live_app["workspace"].models_dir / "ui-balanced"
    deadline = time.time() + 300
    while not (folder / "checkpoints" / "step-000002" / "unet_ema.safetensors").is_file():
        assert time.time() < deadline, "the training job did not reach step 2 in 5 minutes"
        time.sleep(1)
    assert json.loads((folder / "config.json").read_text())["train"]["class_balance"] is True


def test_api_admin_checks_that_samples_carry_their_class(live_app):
    client = gradio_client(live_app["url"], sign_in(live_app["url"], *DEMO_REVIEWERS[0]))
    with pytest.raises(Exception, match="403 Forbidden"):
        client.predict("demo-ddpm", "phantom", 2, 5, 4.0, "ddpm", api_name="/check_classes")
    client = gradio_client(live_app["url"], sign_in(live_app["url"], *DEMO_ADMIN))
    client.predict("demo-ddpm", "phantom", 2, 5, 4.0, "ddpm", api_name="/check_classes")
    status, text, _timer = wait_for_job(client, "/poll_check_classes")
    assert status.startswith("**done**"), status
    assert "balanced accuracy" in text and "on 2 samples per class" in text, text
    lines = text.split("```")[1].strip("\n").splitlines()
    headers = [i for i, line in enumerate(lines) if "read as" in line]
    def rows(h):
        return {l.split()[0]: sum(map(int, l.split()[1:])) for l in lines[h + 1:h + 4]}
    real, generated = rows(headers[0]), rows(headers[1])
    manifest = live_app["workspace"].load_manifest("phantom")
    assert real == {c: sum(manifest.label_of(i) == c for i in manifest.split_items("test"))
                    for c in ("AD", "SSA", "HP")}  # every real test frame read once
    assert generated == {"AD": 2, "SSA": 2, "HP": 2}
    with pytest.raises(Exception, match="no-such-model"):
        client.predict("no-such-model", "phantom", 2, 5, 4.0, "ddpm", api_name="/check_classes")


# browser (Debian chromium + Playwright) ---------------------------------------------------------

def test_browser_reviewer_rates_three_images_with_the_keyboard(live_app, browser):
    page, outside, failed = offline_page(browser, live_app["url"])
    name, password = DEMO_REVIEWERS[0]
    before = ratings_of(live_app["db"], name)
    sign_in_page(page, live_app["url"], name, password)
    assert page.get_by_role("tab", name="Studies").count() == 0  # admin tabs stay hidden
    start_review(page, DEMO_STUDY)
    page.get_by_text(f"{before} of").wait_for(timeout=PAGE_WAIT_MS)
    for i in range(3):
        page.locator("#rv-image img").wait_for(timeout=PAGE_WAIT_MS)
        page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not a field
        page.keyboard.press(str(2 + i))  # probably real, unsure, probably synthetic
        page.get_by_text(f"Answer: {2 + i}").wait_for(timeout=PAGE_WAIT_MS)
        page.keyboard.press("gmp"[i])
        page.get_by_text(f"{before + i + 1} of").wait_for(timeout=PAGE_WAIT_MS)
    assert ratings_of(live_app["db"], name) == before + 3
    with live_app["db"].session() as session:
        reviewer = queries.reviewer_by_name(session, name)
        study = queries.study_by_name(session, DEMO_STUDY)
        rated = [a.rating for a in queries.reviewer_queue(session, study.id, reviewer.id) if a.rating]
        assert sorted(r.quality for r in rated[-3:]) == ["good", "moderate", "poor"]
        assert [(r.confidence, r.verdict) for r in rated[-3:]] == \
            [(2, "real"), (3, "unsure"), (4, "synthetic")]
        assert all(r.seconds is not None for r in rated[-3:])
    # the page never tried to reach anything but the studio (no CDN fonts, scripts or styles)
    assert outside == [] and failed == []
    # what the reviewer can read names no generator (admin lists fill only at admin sign-in)
    text = page.inner_text("body")
    assert "demo-ddpm" not in text and "synthetic pool" not in text
    config = page.request.get(live_app["url"] + "config").text()
    assert "demo-ddpm" not in config


def test_browser_admin_opens_every_tab(live_app, browser, tmp_path):
    import app

    from polyp_core.demo import DEMO_SIMULATED_STUDY

    page, outside, failed = offline_page(browser, live_app["url"])
    sign_in_page(page, live_app["url"], *DEMO_ADMIN)
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    for tab in (*app.ADMIN_TABS, "Review"):
        page.get_by_role("tab", name=tab).click()
        time.sleep(1.5)  # let plots and galleries render
        if tab == "Studies":
            page.locator(f"text={DEMO_STUDY} >> visible=true").first.wait_for(timeout=PAGE_WAIT_MS)
            # the chosen study's leak audit, channel by channel
            page.locator("text=byte_length >> visible=true").first.wait_for(timeout=PAGE_WAIT_MS)
            page.locator("text=integrity: leak audit >> visible=true").first.wait_for(
                timeout=PAGE_WAIT_MS)
            # the reader study of the demo's simulated ratings (a second screenshot)
            page.get_by_label("Study", exact=True).locator("visible=true").first.click()
            page.get_by_role("option", name=DEMO_SIMULATED_STUDY).click()
            page.get_by_role("button", name="Statistics").click()
            page.locator("text=Obuchowski-Rockette >> visible=true").first.wait_for(
                timeout=PAGE_WAIT_MS)
            time.sleep(1.5)
            page.screenshot(path=str(folder / "tab-studies-reader-study.png"), full_page=True)
        if tab == "Accounts":
            page.locator("text=sign_in >> visible=true").first.wait_for(timeout=PAGE_WAIT_MS)
        if tab == "Retrain & compare":
            page.locator("text=augmented − baseline >> visible=true").first.wait_for(timeout=PAGE_WAIT_MS)
            # the report's answer above the tables: the verdict and the forest plot
            page.locator("#verdict >> visible=true").first.wait_for(timeout=PAGE_WAIT_MS)
            assert "changed macro-F1 by" in page.locator("#verdict").first.inner_text()
            page.locator("svg#forest >> visible=true").first.wait_for(timeout=PAGE_WAIT_MS)
        if tab == "Diagnostics":
            page.locator("text=margins >> visible=true").first.wait_for(timeout=PAGE_WAIT_MS)
        if tab in ("Diagnostics", "Retrain & compare"):  # the demo's note on its dashboards
            page.locator("text=What you are looking at >> visible=true").first.wait_for(
                timeout=PAGE_WAIT_MS)
        if tab == "Pool":
            page.locator("text=demo-ddpm@ >> visible=true").first.wait_for(timeout=PAGE_WAIT_MS)
        shot = folder / f"tab-{tab.lower().replace(' & ', '-').replace(' ', '-')}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    assert outside == [] and failed == []


def test_the_report_answers_on_its_first_screen_offline_from_disk(live_app, browser, tmp_path):
    """The demo run's report.html opened from disk in Chromium at 1300 x 900: the verdict
    sentence and the forest plot's SVG lie within the first 900 px, and the page asks no host
    for anything (every request is recorded); the file stays small."""
    from polyp_core.experiment.verdict import verdict
    from polyp_core.runs import load_run

    db = live_app["db"]
    with db.session() as session:
        run_id = next(r.id for r in queries.list_runs(session, "retrain")
                      if r.config.get("name") == "ui-test")
    run = load_run(db, run_id)
    report = run["folder"] / "report.html"
    assert report.stat().st_size <= 1_500_000
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(report.as_uri())
    page.wait_for_load_state("networkidle")
    assert requests == [report.as_uri()]  # the file itself, nothing else
    sentence = page.locator("#verdict")
    assert sentence.inner_text() == verdict(run["results"])
    box = sentence.bounding_box()
    assert box["y"] + box["height"] <= 900, box
    forest = page.locator("svg#forest").bounding_box()
    assert forest["y"] + forest["height"] <= 900, forest
    assert page.locator("svg#forest circle").count() == 4  # augmented − baseline: macro-F1, 3 classes
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / "report-first-screen.png"))
    page.close()


def test_first_start_makes_the_dashboards_content_as_jobs(live_app, tmp_path):
    """A demo workspace without runs gets the demo's diagnostics report and retrain run as
    background jobs (the same engine calls a user makes); one that has runs gets none."""
    from polyp_core.demo import DEMO_DATASET, DEMO_GENERATOR, demo_analyses
    from review_db.database import Database

    assert demo_analyses(live_app["db"], live_app["workspace"]) == []
    fresh = Database(f"sqlite:///{tmp_path / 'fresh.db'}")
    jobs = demo_analyses(fresh, live_app["workspace"])
    assert [kind for kind, _, _ in jobs] == ["diagnose", "retrain"]
    diagnose_config, retrain_config = jobs[0][1], jobs[1][1]
    assert diagnose_config["generator"] == DEMO_GENERATOR and retrain_config["dataset"] == DEMO_DATASET
    assert retrain_config["train"]["freeze_backbone"] and retrain_config["seeds"] == [0, 1, 2]
    assert retrain_config["folds"] is None and retrain_config["linear_probe"]  # auto: CV if it can
    fresh.dispose()
