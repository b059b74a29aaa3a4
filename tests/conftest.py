from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from polyp_core.workspace import Workspace

if TYPE_CHECKING:
    import datetime as dt

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NEOPOLYP = SHARED_DATA / "neopolyp"


# Where the parts must be there, their absence fails the run instead of skipping: `make test`
# installs PostgreSQL and Chromium and sets STUDIO_REQUIRE_SERVICES; `.ci/run` (where
# ../shared/data is laid) also sets STUDIO_REQUIRE_REAL_DATA. A plain pytest on a fresh clone
# skips those tests and the summary (-ra) says why.
REQUIRE_SERVICES = bool(os.environ.get("STUDIO_REQUIRE_SERVICES") or os.environ.get("CI"))
REQUIRE_REAL_DATA = bool(os.environ.get("STUDIO_REQUIRE_REAL_DATA"))


def pytest_sessionstart(session: pytest.Session) -> None:
    if REQUIRE_REAL_DATA and not (NEOPOLYP / "labels.csv").is_file():
        raise pytest.UsageError(f"STUDIO_REQUIRE_REAL_DATA is set but the NeoPolyp data set is "
                                f"missing: {NEOPOLYP / 'labels.csv'} (../shared/data)")


@contextlib.contextmanager
def bounded(seconds: int, what: str):
    """A bound of its own for a shared fixture's setup: pytest-timeout times the test
    functions only (``timeout_func_only``), so a session fixture built for the first test that
    needs it is not charged to that test; a setup that hangs still fails, saying which."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        pytest.fail(f"fixture setup took over {seconds} s: {what}", pytrace=False)

    previous = signal.signal(signal.SIGALRM, expire)
    remaining = signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if remaining:
            signal.alarm(remaining)


def requires_neopolyp():
    return pytest.mark.skipif(
        not (NEOPOLYP / "labels.csv").is_file(),
        reason=f"real NeoPolyp data not present at {NEOPOLYP} (../shared/data is for development)")


class FakeClock:
    """A clock that moves only when told: ``review_db.models.CLOCK`` during a test."""

    def __init__(self):
        import datetime as dt

        self.now = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        import datetime as dt

        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    from review_db import models

    fake = FakeClock()
    monkeypatch.setattr(models, "CLOCK", fake)
    return fake


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


def write_image(path: Path, rgb: np.ndarray | None = None, size=(40, 32), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if rgb is None:
        rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def write_mask(path: Path, size=(40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[size[1] // 4: size[1] // 2, size[0] // 4: size[0] // 2] = 255
    Image.fromarray(mask).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_hospital(root: Path, labels: dict[str, str], masks: bool = True,
                  header=("image_id", "cls", "Histologia"), suffix=".png") -> Path:
    """A hospital-layout folder: images/, masks/, labels.csv."""
    rows = []
    for index, (image_id, label) in enumerate(labels.items()):
        write_image(root / "images" / f"{image_id}{suffix}", seed=index)
        if masks:
            write_mask(root / "masks" / f"{image_id}.png")
        rows.append([image_id, label, f"histo-{label}"])
    write_csv(root / "labels.csv", list(header), rows)
    return root


def three_class_labels(n_ad=14, n_ssa=6, n_hp=6, ssa_spelling="ASS") -> dict[str, str]:
    labels = {f"ad{i:03d}": "AD" for i in range(n_ad)}
    labels |= {f"ss{i:03d}": ssa_spelling for i in range(n_ssa)}
    labels |= {f"hp{i:03d}": "HP" for i in range(n_hp)}
    return labels


@pytest.fixture(scope="session")
def small_phantom(tmp_path_factory) -> Path:
    """A small phantom set in the hospital layout (painted once per test session)."""
    from polyp_core.data.phantom import write_phantom

    out = tmp_path_factory.mktemp("phantom") / "phantom"
    write_phantom(out, n_frames=60, size=64, seed=3, workers=1)
    return out


# --- databases: every database test runs on SQLite and on a real PostgreSQL server ---------


def _pg_bindir() -> str | None:
    found = shutil.which("initdb")
    if found:
        return str(Path(os.path.realpath(found)).parent)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return str(Path(candidates[-1]).parent) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the session: $STUDIO_TEST_PG_URL, or a throwaway cluster."""
    url = os.environ.get("STUDIO_TEST_PG_URL")
    if url:
        yield url
        return
    bindir = _pg_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not installed (apt-get install postgresql)"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message}; `make test` and CI must test against PostgreSQL")
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix="studio-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*as_user, f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync"], check=True, capture_output=True)
    subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", str(data), "-l", str(root / "log"), "-w",
                    "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def _fresh_postgres_db(server_url: str) -> tuple[str, callable]:
    import sqlalchemy

    name = f"studio_test_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')

    def drop():
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return server_url.rsplit("/", 1)[0] + f"/{name}", drop


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """A fresh, empty database URL of each kind."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'studio.db'}"
        return
    url, drop = _fresh_postgres_db(request.getfixturevalue("postgres_server"))
    yield url
    drop()


@pytest.fixture
def db(db_url):
    from review_db import Database

    database = Database(db_url)
    yield database
    database.dispose()


# --- a review setting: real phantom images, two synthetic "generators", accounts -----------

PASSWORD = "correct horse battery"


@pytest.fixture
def review_env(db, small_phantom, tmp_path):
    """Workspace + database with a real data set and 40 synthetic images from two generators.

    Synthetic images are phantom frames of another seed (any image works for review), each
    stored through the real pool code with its provenance.
    """
    from types import SimpleNamespace

    from polyp_core.data.importer import ImportConfig, import_dataset
    from polyp_core.data.phantom import plan_lesions, render_frame
    from polyp_core.pool import ProvenanceRecord, add_synthetic
    from polyp_core.review.accounts import create_account

    workspace = Workspace(tmp_path / "ws")
    import_dataset(workspace, ImportConfig(str(small_phantom), name="phantom"))
    lesions = plan_lesions(40, seed=99)
    for index, lesion in enumerate(lesions):
        for view in range(lesion.n_views):
            rgb, _ = render_frame(lesion, view, size=48)
            generator = "gen-a" if index % 2 else "gen-b"
            add_synthetic(db, workspace, rgb, ProvenanceRecord(
                backend="ddpm", generator=generator, checkpoint="step-100",
                class_label=lesion.cls, seed=index * 10 + view, steps=50, guidance=2.0,
                scheduler="ddim", width=48, height=48))
    train_shas = [i.sha256 for i in workspace.load_manifest("phantom").split_items("train")]
    for generator in ("gen-a", "gen-b"):  # training records: both learned from the train split only
        (workspace.models_dir / generator).mkdir(parents=True)
        (workspace.models_dir / generator / "config.json").write_text(
            json.dumps({"trained_on": {"splits": ["train"], "image_sha256": train_shas}}))
    admin = create_account(db, "admin", PASSWORD, "admin")
    reviewers = [create_account(db, f"rev{i}", PASSWORD) for i in range(3)]
    return SimpleNamespace(db=db, workspace=workspace, admin=admin, reviewers=reviewers)


# --- the studio served for real (UI and access tests) ----------------------------------------

@pytest.fixture(scope="session")
def live_app(tmp_path_factory):
    """The demo workspace (small) with a retrain run and a diagnostics run, served for real
    (``tests/studio_server.py``); shared by the UI and the access-control tests."""
    from tests.studio_server import LiveServer

    with bounded(900, "the served demo studio with a retrain and a diagnostics run (live_app)"):
        setup = _live_app_setup(tmp_path_factory)
    server = LiveServer(*setup)
    try:
        workspace, db = setup
        yield {"url": server.url, "db": db, "workspace": workspace, "server": server}
    finally:
        server.stop()


def _live_app_setup(tmp_path_factory):
    from polyp_core.demo import DEMO_STUDY, ensure_demo_workspace
    from review_db.database import Database

    root = tmp_path_factory.mktemp("ui")
    workspace = Workspace(root / "ws")
    db = Database(f"sqlite:///{root / 'studio.db'}")
    # the small demo: its open study must pass its audit at creation (test_leaks)
    made = ensure_demo_workspace(workspace, db, n_per_class=6, n_frames=90, size=96)
    assert any(DEMO_STUDY in m for m in made), f"the demo needs assets/demo-ddpm; made: {made}"
    # one stored run of each kind, so the dashboards have something to draw
    import torch

    from polyp_core.experiment import ExperimentConfig, run_experiment
    from polyp_core.training import TrainConfig
    from polyp_core.diagnostics.report import DiagnoseConfig, diagnose

    # the phantom end to end: baseline against augmented with the demo generator's images
    result = run_experiment(db, workspace, ExperimentConfig(
        dataset="phantom", seeds=(0, 1), name="ui-test", allow_small_test=True, folds=0,
        train=TrainConfig(image_size=32, epochs=1, batch_size=16, hidden=16)),
        device=torch.device("cpu"))
    assert sum(result.results["selection"]["counts"]["selected"].values()) == 18
    assert set(result.results["arms"]) == {"baseline", "augmented"}
    diagnose(db, workspace, DiagnoseConfig(dataset="phantom", size=64, subsets=5,
                                           projections=("pca",)))
    return workspace, db


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium under Playwright (no browser download); CI must have it."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if REQUIRE_SERVICES:
            pytest.fail("chromium is not installed; scripts/install-test-services.sh installs it")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield browser
        browser.close()


def demo_pool(root: Path, n_frames: int, steps: int) -> tuple[Workspace, object]:
    """A workspace with the demo data set (``n_frames`` at 64 px), the shipped demo generator
    and 4 of its images per class in the pool (``steps`` DDIM steps: tests need images of the
    generator, not good ones), and its SQLite database."""
    from polyp_core.demo import (DEMO_GENERATOR, DEMO_GUIDANCE, ensure_demo_dataset,
                                 install_demo_generator)
    from polyp_core.generation.backends import sample_to_pool
    from polyp_core.generation.request import SampleRequest
    from review_db.database import Database

    workspace = Workspace(root / "ws")
    db = Database(f"sqlite:///{root / 'ws' / 'studio.db'}")
    ensure_demo_dataset(workspace, n_frames=n_frames, size=64)
    assert install_demo_generator(workspace), "this test needs assets/demo-ddpm"
    for i, cls in enumerate(("AD", "SSA", "HP")):
        sample_to_pool(db, workspace, DEMO_GENERATOR, SampleRequest(
            class_label=cls, n=4, seed=1000 * i, steps=steps, guidance=DEMO_GUIDANCE,
            scheduler="ddim"))
    return workspace, db


def _train_tiny_ddpm(workspace: Workspace, model_id: str, task: str) -> None:
    from polyp_core.generation.ddpm import DDPMTrainConfig, train_ddpm

    result = train_ddpm(workspace, DDPMTrainConfig(
        dataset="demo", model_id=model_id, preset="tiny", steps=2, batch_size=4,
        checkpoint_every=2, grid_per_class=1, grid_steps=1, task=task, max_dilate=2))
    assert result.status == "done"


@pytest.fixture(scope="session")
def painted_models(tmp_path_factory) -> Workspace:
    """The demo data set (72 frames at 64 px, masks) and three tiny DDPMs trained two steps
    on its training split: one for inpainting, one of image and mask, one plain (made once
    per test session: only files, no pool)."""
    from polyp_core.demo import ensure_demo_dataset

    with bounded(600, "painting the demo set and training three tiny DDPMs (painted_models)"):
        workspace = Workspace(tmp_path_factory.mktemp("inpaint") / "ws")
        ensure_demo_dataset(workspace, n_frames=72, size=64, name="demo")
        for model_id, task in (("paint", "inpaint"), ("withmask", "image_mask"),
                               ("plain", "image")):
            _train_tiny_ddpm(workspace, model_id, task)
    return workspace


@pytest.fixture(scope="module")
def painted(painted_models, request, tmp_path_factory):
    """The painted workspace with a database of this test module's own: its pool, studies and
    runs start empty, so what one module adds never reaches another (the suite passes in any
    order). Pool files are content-addressed in the shared workspace, which is harmless."""
    from review_db.database import Database

    root = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    db = Database(f"sqlite:///{root / 'studio.db'}")
    yield painted_models, db
    db.dispose()
