"""The studio in a real server: gradio_client against its API, and Debian's Chromium (driven by
Playwright) as a reviewer rating by keyboard and as an admin opening every tab, offline."""

import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from polyp_core.demo import DEMO_ADMIN, DEMO_REVIEWERS, DEMO_STUDY, ensure_demo_workspace
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOTS = os.environ.get("STUDIO_SCREENSHOTS")  # keep the tab screenshots here when set


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    import app

    root = tmp_path_factory.mktemp("ui")
    workspace = Workspace(root / "ws")
    db = Database(f"sqlite:///{root / 'studio.db'}")
    made = ensure_demo_workspace(workspace, db, n_per_class=4, n_frames=90, size=96)
    assert any(DEMO_STUDY in m for m in made), f"the demo needs assets/demo-ddpm; made: {made}"
    # one stored run of each kind, so the dashboards have something to draw
    import torch

    from polyp_core.classify import ClassifierTrainConfig, ExperimentConfig, run_experiment
    from polyp_core.diagnostics.report import DiagnoseConfig, diagnose

    # the phantom end to end: baseline against augmented with the demo generator's images
    result = run_experiment(db, workspace, ExperimentConfig(
        dataset="phantom", seeds=(0, 1), name="ui-test",
        train=ClassifierTrainConfig(image_size=32, epochs=1, batch_size=16, hidden=16)),
        device=torch.device("cpu"))
    assert sum(result.results["selection"]["counts"]["selected"].values()) == 12
    assert set(result.results["arms"]) == {"baseline", "augmented"}
    diagnose(db, workspace, DiagnoseConfig(dataset="phantom", size=64, subsets=5,
                                           projections=("pca",)))
    demo = app.build_app(workspace, db)
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                        quiet=True, **app.launch_kwargs())
    try:
        yield {"url": f"http://127.0.0.1:{port}/", "db": db, "workspace": workspace}
    finally:
        demo.close()


def _ratings_of(db, name: str) -> int:
    with db.session() as session:
        reviewer = queries.reviewer_by_name(session, name)
        study = queries.study_by_name(session, DEMO_STUDY)
        return queries.study_progress(session, study.id, reviewer.id)[1]


# API (gradio_client) ----------------------------------------------------------------------------

def test_api_sign_in_review_and_refusals(live_app):
    from gradio_client import Client

    client = Client(live_app["url"], verbose=False)
    out = client.predict("reviewer2", "wrong-password", api_name="/sign_in")
    assert "unknown name or wrong password" in str(out)
    with pytest.raises(Exception, match="Sign in first"):
        client.predict(DEMO_STUDY, api_name="/open_study")
    name, password = DEMO_REVIEWERS[1]
    out = client.predict(name, password, api_name="/sign_in")
    assert f"Signed in as **{name}** (reviewer)" in str(out)
    image, status, *_ = client.predict(DEMO_STUDY, api_name="/open_study")
    assert "0 of" in status and Path(image).is_file()
    # nothing the client receives names the origin: the file is a content-named JPEG
    assert "synthetic" not in image.lower() and "real" not in Path(image).name.lower()
    with pytest.raises(Exception, match="Choose real"):
        client.predict(api_name="/rate_good")
    client.predict(api_name="/choose_synthetic")
    _, status, *_ = client.predict(api_name="/rate_poor")
    assert "1 of" in status
    assert _ratings_of(live_app["db"], name) == 1
    # a reviewer cannot reach admin work
    with pytest.raises(Exception, match="needs an admin"):
        client.predict("phantom", "", "efficientnet_lite0", 128, "sampler", "0", 1, False, "", 1,
                       "any", "include", "", None, "", api_name="/start_retrain")


def test_api_admin_samples_and_adds_to_the_pool(live_app):
    from gradio_client import Client

    client = Client(live_app["url"], verbose=False)
    client.predict(*DEMO_ADMIN, api_name="/sign_in")
    with live_app["db"].session() as session:
        before = len(queries.synthetic_images(session))
    gallery, status = client.predict("demo-ddpm", None, "SSA", "", "", 2, 7, False, 10, 2.0,
                                     "dpmsolver++", "", 1.0, api_name="/sample")
    assert len(gallery) == 2 and "seed 7 · SSA · dpmsolver++ 10 steps" in gallery[0]["caption"]
    assert "not in the pool" in status
    assert "Added 2 image(s)" in client.predict(api_name="/add_to_pool")
    with live_app["db"].session() as session:
        assert len(queries.synthetic_images(session)) == before + 2


def test_api_admin_trains_a_class_balanced_generator(live_app):
    import json

    from gradio_client import Client

    client = Client(live_app["url"], verbose=False)
    client.predict(*DEMO_ADMIN, api_name="/sign_in")
    status = client.predict("ddpm", "phantom", "ui-balanced", "tiny", 2, 8, 2, "", 8, True,
                            api_name="/start_training")
    assert status.startswith(("**queued**", "**running**", "**done**")), status
    folder = live_app["workspace"].models_dir / "ui-balanced"
    deadline = time.time() + 300
    while not (folder / "checkpoints" / "step-000002" / "unet_ema.safetensors").is_file():
        assert time.time() < deadline, "the training job did not reach step 2 in 5 minutes"
        time.sleep(1)
    assert json.loads((folder / "config.json").read_text())["train"]["class_balance"] is True


def test_api_admin_checks_that_samples_carry_their_class(live_app):
    from gradio_client import Client

    client = Client(live_app["url"], verbose=False)
    client.predict(*DEMO_REVIEWERS[0], api_name="/sign_in")
    with pytest.raises(Exception, match="needs an admin"):
        client.predict("demo-ddpm", "phantom", 2, 5, 4.0, "ddpm", api_name="/check_classes")
    client.predict(*DEMO_ADMIN, api_name="/sign_in")
    text = client.predict("demo-ddpm", "phantom", 2, 5, 4.0, "ddpm", api_name="/check_classes")
    assert "balanced accuracy" in text and "on 2 samples per class" in text, text
    lines = text.split("```")[1].strip("\n").splitlines()
    headers = [i for i, line in enumerate(lines) if "read as" in line]
    rows = lambda h: {l.split()[0]: sum(map(int, l.split()[1:])) for l in lines[h + 1:h + 4]}
    real, generated = rows(headers[0]), rows(headers[1])
    manifest = live_app["workspace"].load_manifest("phantom")
    assert real == {c: sum(manifest.label_of(i) == c for i in manifest.split_items("test"))
                    for c in ("AD", "SSA", "HP")}  # every real test frame read once
    assert generated == {"AD": 2, "SSA": 2, "HP": 2}
    with pytest.raises(Exception, match="no-such-model"):
        client.predict("no-such-model", "phantom", 2, 5, 4.0, "ddpm", api_name="/check_classes")


# browser (Debian chromium + Playwright) ---------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; scripts/install-test-services.sh installs it")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def _offline_page(browser, url: str):
    """A page that may talk to the studio only; every other request is refused and recorded."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside = []

    def route(r):
        if r.request.url.startswith(url.rstrip("/")) or r.request.url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    failed = []  # page resources that did not load (the queue's event streams end by design)
    page.on("requestfailed", lambda req: failed.append(req.url)
            if req.resource_type in ("stylesheet", "script", "font", "image") else None)
    return page, outside, failed


def _sign_in(page, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.locator("#sign-in-name textarea, #sign-in-name input").first.fill(name)
    page.locator("#sign-in-password input").fill(password)
    page.locator("#sign-in-button").click()
    page.get_by_text(f"Signed in as {name}").wait_for(timeout=30_000)


def test_browser_reviewer_rates_three_images_with_the_keyboard(live_app, browser):
    page, outside, failed = _offline_page(browser, live_app["url"])
    name, password = DEMO_REVIEWERS[0]
    before = _ratings_of(live_app["db"], name)
    _sign_in(page, live_app["url"], name, password)
    assert page.get_by_role("tab", name="Studies").count() == 0  # admin tabs stay hidden
    page.get_by_role("tab", name="Review").click()
    page.get_by_role("button", name="Start / resume").click()
    page.get_by_text(f"{before} of").wait_for(timeout=30_000)
    for i in range(3):
        page.locator("#rv-image img").wait_for(timeout=30_000)
        page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not a field
        page.keyboard.press("r")
        page.get_by_text("Verdict: real").wait_for(timeout=30_000)
        page.keyboard.press(str(1 + i % 3))
        page.get_by_text(f"{before + i + 1} of").wait_for(timeout=30_000)
    assert _ratings_of(live_app["db"], name) == before + 3
    with live_app["db"].session() as session:
        reviewer = queries.reviewer_by_name(session, name)
        study = queries.study_by_name(session, DEMO_STUDY)
        rated = [a.rating for a in queries.reviewer_queue(session, study.id, reviewer.id) if a.rating]
        assert sorted(r.quality for r in rated[-3:]) == ["good", "moderate", "poor"]
        assert all(r.verdict == "real" and r.seconds is not None for r in rated[-3:])
    # the page never tried to reach anything but the studio (no CDN fonts, scripts or styles)
    assert outside == [] and failed == []
    # what the reviewer can read names no generator (admin lists fill only at admin sign-in)
    text = page.inner_text("body")
    assert "demo-ddpm" not in text and "synthetic pool" not in text
    config = page.request.get(live_app["url"] + "config").text()
    assert "demo-ddpm" not in config


def test_browser_admin_opens_every_tab(live_app, browser, tmp_path):
    import app

    page, outside, failed = _offline_page(browser, live_app["url"])
    _sign_in(page, live_app["url"], *DEMO_ADMIN)
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    for tab in (*app.ADMIN_TABS, "Review"):
        page.get_by_role("tab", name=tab).click()
        time.sleep(1.5)  # let plots and galleries render
        if tab == "Studies":
            page.locator(f"text={DEMO_STUDY} >> visible=true").first.wait_for(timeout=30_000)
        if tab == "Retrain & compare":
            page.locator("text=augmented − baseline >> visible=true").first.wait_for(timeout=30_000)
        if tab == "Diagnostics":
            page.locator("text=margins >> visible=true").first.wait_for(timeout=30_000)
        shot = folder / f"tab-{tab.lower().replace(' & ', '-').replace(' ', '-')}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    assert outside == [] and failed == []
