"""Blinding that survives a curious reviewer: resolution matching and one byte length at study
creation, and a leak auditor that must catch what the chain before it leaked."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typing import TYPE_CHECKING

from polyp_core.demo import DEMO_ADMIN, DEMO_STUDY
from polyp_core.review import desk
from polyp_core.review.accounts import Person
from polyp_core.review.errors import NotFound
from polyp_core.review.leaks import audit_rows, auc
from polyp_core.review.studies import (RealPool, StudySpec, SyntheticPool, audit_study,
                                       create_study, list_studies, override_audit, plan_study,
                                       study_integrity)
from review_db import queries

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable

    from polyp_core.review.leaks import ChannelResult, LeakReport
    from review_db.database import Database


def _admin(db: Database) -> Person:
    with db.session() as session:
        row = queries.reviewer_by_name(session, DEMO_ADMIN[0])
        return Person(row.id, row.name, row.role)


def _channel(report: LeakReport, name: str) -> ChannelResult:
    return next(c for c in report.channels if c.name == name)


def test_auc_is_scikit_learns_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.random(40) < 0.4
        score = rng.integers(0, 4, 40).astype(float)  # many ties
        assert auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)


def test_auditor_catches_a_planted_channel_and_passes_noise():
    rng = np.random.default_rng(0)

    def rows(byte_length: Callable[[int], int]) -> list[dict]:
        return [{"image": f"i{i}", "real": i < 30, "byte_length": byte_length(i),
                 "url_length": 60, "token_length": 43, "position": rng.random(),
                 "serve_ms": 0.0, "jpeg75_bytes": 1000, "high_frequency": 1.0}
                for i in range(60)]

    leaky = audit_rows("leaky", rows(lambda i: 20_000 + (3000 if i < 30 else 0)
                                     + int(rng.integers(0, 2500))), n_boot=300)
    assert not leaky.passed and _channel(leaky, "byte_length").leaks
    assert _channel(leaky, "combined").low > 0.5  # the model finds it too
    assert _channel(leaky, "combined").p == pytest.approx(1 / 200)  # no relabelling beats it
    assert _channel(leaky, "combined").leaks
    clean = audit_rows("clean", rows(lambda i: 131_072), n_boot=300)
    assert clean.passed
    assert (_channel(clean, "byte_length").low, _channel(clean, "byte_length").high) == (0.5, 0.5)


def test_the_combined_channel_must_beat_relabelled_images():
    """Serving-time spikes under load are noise: an out-of-fold AUC they give by chance is
    reached by many relabellings of the same images, so it holds no study."""
    from polyp_core.review.leaks import combined_permutation_p

    rng = np.random.default_rng(4)
    noise = [{"image": f"i{i}", "real": i < 20, "byte_length": 131_072, "url_length": 60,
              "token_length": 43, "position": rng.random(),
              "serve_ms": float(rng.choice([0, 0, 0, 0, 1, 3, 17]))} for i in range(40)]
    assert combined_permutation_p(noise, 0.6) > 0.05
    assert combined_permutation_p(noise, 1.0) == pytest.approx(1 / 200)  # the floor: 199 draws


def test_demo_study_passes_and_the_chain_before_it_is_caught(live_app):
    """On the demo study (phantom frames against the 32 px demo generator): after resolution
    matching and one byte length, the byte count says nothing; the chain before this change
    (native resolution, plain JPEG) leaks through it, and the auditor says so."""
    db, workspace = live_app["db"], live_app["workspace"]
    admin = _admin(db)
    with db.session() as session:  # passed when it was created, not only when audited again
        assert queries.study_by_name(session, DEMO_STUDY).settings["audit"]["passed"]
    report = audit_study(db, workspace, admin, DEMO_STUDY)
    assert report.passed, "\n".join(report.lines())
    byte_length = _channel(report, "byte_length")  # every served file has one length
    assert (byte_length.auc, byte_length.low, byte_length.high) == (0.5, 0.5, 0.5)
    combined = _channel(report, "combined")
    assert combined.low <= 0.5 <= combined.high
    integrity = study_integrity(db, admin, DEMO_STUDY)
    assert integrity["chain"]["working"] == 32 and integrity["chain"]["fixed_length"] == 131072
    assert integrity["admin_reviewers"] == []  # the demo admin is no reader of it

    legacy = StudySpec("demo-legacy-chain", (RealPool("phantom", 12, split="train"),
                                             SyntheticPool(12, "demo-ddpm")), ("admin",),
                       working_resolution="native", fixed_length=False)
    assert any("unmatched" in w for w in plan_study(db, workspace, legacy).warnings)
    create_study(db, workspace, admin, legacy)
    report = audit_study(db, workspace, admin, legacy.name)
    assert not report.passed
    # the old chain's byte length separates the sources: AUC 1.0 on the demo's own 18 images;
    # when other tests' samples have joined the pool first, another 12 are drawn and the AUC
    # depends on which (0.951 and 0.858 seen in two test orders), so what holds in any order
    # is the auditor's verdict: the interval excludes 0.5 and the channel is flagged
    leak = _channel(report, "byte_length")
    assert leak.leaks and leak.low > 0.5, "\n".join(report.lines())
    with db.session() as session:
        in_pool = len(queries.synthetic_images(session, "demo-ddpm"))
    if in_pool == 18:
        assert leak.auc == 1.0
    # held: its reviewers do not see it, and its tokens answer like made-up ones
    assert [s.audit for s in list_studies(db, admin) if s.name == legacy.name] == ["held (failed)"]
    with pytest.raises(NotFound):
        desk.queue(db, admin, legacy.name)
    override_audit(db, admin, legacy.name, "regression case of the auditor")
    assert len(desk.queue(db, admin, legacy.name)) == 24
    summary = study_integrity(db, admin, legacy.name)["summary"]
    assert "overridden" in summary and "regression case of the auditor" in summary


@pytest.fixture
def mixed_resolution(review_env):
    """A 512 px real source (phantom frames) and a 32 px generator."""
    from polyp_core.data.importer import ImportConfig, import_dataset
    from polyp_core.data.phantom import plan_lesions, render_frame
    from polyp_core.pool import ProvenanceRecord, add_synthetic

    root = review_env.workspace.root.parent / "big"
    lesions = plan_lesions(16, seed=5)
    for index, lesion in enumerate(lesions[:16]):
        rgb, _ = render_frame(lesion, 0, size=512)
        (root / lesion.cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).save(root / lesion.cls / f"f{index:02d}.png")
        small, _ = render_frame(lesion, 1, size=32)
        add_synthetic(review_env.db, review_env.workspace, small, ProvenanceRecord(
            backend="ddpm", generator="tiny32", class_label=lesion.cls, seed=index))
    import_dataset(review_env.workspace, ImportConfig(str(root), name="big"))
    return review_env


def test_512_and_32_px_sources_warn_and_match(mixed_resolution):
    env = mixed_resolution
    n_real = len(list((env.workspace.root.parent / "big").rglob("*.png")))
    spec = StudySpec("mixed", (RealPool("big", 8), SyntheticPool(8, "tiny32")), ("rev0",))
    plan = plan_study(env.db, env.workspace, spec)
    assert n_real >= 8
    assert any("differ more than 2x" in w and "brought down to 32 px" in w
               for w in plan.warnings), plan.lines()
    assert plan.native["real:big"]["median"] == 512 and plan.native["synthetic:tiny32"]["max"] == 32
    assert plan.chain.working == 32
    create_study(env.db, env.workspace, env.admin, spec)
    report = study_integrity(env.db, env.admin, "mixed")["audit"]
    byte_length = next(c for c in report["channels"] if c["name"] == "byte_length")
    assert report["passed"] and byte_length["low"] <= 0.5 <= byte_length["high"]
    served = [desk.image_for(env.db, env.workspace, env.reviewers[0], i.token)
              for i in desk.queue(env.db, env.reviewers[0], "mixed")]
    assert len({len(data) for data in served}) == 1  # one byte length for all
    # without matching and padding, the same sources are told apart by their bytes
    create_study(env.db, env.workspace, env.admin, StudySpec(
        "mixed-native", spec.pools, ("rev0",), working_resolution="native", fixed_length=False))
    report = study_integrity(env.db, env.admin, "mixed-native")["audit"]
    assert not report["passed"]
    assert "mixed-native" not in [s.name for s in list_studies(env.db, env.reviewers[0])]


# blinding by design: blocked queues and an audit that is a property of the study -------------

def _position_auc(queues: dict, truth: dict) -> float:
    """What the auditor's position channel measures: real against synthetic by position in
    the queue, 0 first and 1 last, over every reviewer's showings."""
    y, position = [], []
    for queue in queues.values():
        for p, (image, _kind) in enumerate(queue):
            y.append(truth[image])
            position.append(p / (len(queue) - 1))
    return auc(np.array(y), np.array(position))


def test_blocked_queues_carry_no_label_whatever_the_seed():
    """12 real + 12 synthetic images, 3 reviewers, each image rated by 2: over 200 seeds queue
    position never separates real from synthetic (AUC within [0.40, 0.60]); the uniform shuffle
    the studio used before leaves that band for many seeds. Repeats and calibration items
    keep the balance."""
    from polyp_core.review.studies import plan_assignments, reviewer_queue

    images = list(range(24))
    truth = {i: i < 12 for i in images} | {100 + i: True for i in range(4)}
    source = {i: "real" if i < 12 else "synthetic:gen" for i in images} | {
        100 + i: "calibration:real" for i in range(4)}
    blocked, uniform, with_repeats = [], [], []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        queues = plan_assignments(images, [1, 2, 3], 2, rng)
        blocked.append(_position_auc({r: reviewer_queue(q, [], 0.0, source, rng)
                                      for r, q in queues.items()}, truth))
        uniform.append(_position_auc({r: [(i, "main") for i in rng.permutation(q).tolist()]
                                      for r, q in queues.items()}, truth))
        with_repeats.append(_position_auc({r: reviewer_queue(q, [100, 101, 102, 103], 0.25,
                                                             source, rng)
                                           for r, q in queues.items()}, truth))
    assert 0.40 <= min(blocked) and max(blocked) <= 0.60, (min(blocked), max(blocked))
    assert 0.40 <= min(with_repeats) and max(with_repeats) <= 0.60
    outside = sum(not 0.40 <= a <= 0.60 for a in uniform)
    # seeded, the README's figures: blocked within [0.47, 0.54]; the uniform shuffle outside
    # [0.40, 0.60] for 44 of the 200 seeds
    assert (round(min(blocked), 2), round(max(blocked), 2)) == (0.47, 0.54), \
        (min(blocked), max(blocked))
    assert outside == 44, f"the uniform shuffle left the band for {outside} of 200 seeds"
    # the order within each queue is still random: the first image is real about half the time
    rng = np.random.default_rng(0)
    firsts = [truth[reviewer_queue(images, [], 0.0, source, rng)[0][0]] for _ in range(400)]
    assert 0.40 <= np.mean(firsts) <= 0.60


def _burn_cpu() -> subprocess.Popen:
    """A process that keeps one core busy until stopped."""
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_audit_verdict_is_a_property_of_the_study(review_env):
    """Audited ten times with a core busy in between, a study gets the same verdict and the same
    numbers on every gated channel; serving time is reported, never decides. Two planted leaks
    are held: one source served at another byte length, and queues sorted by source."""
    env = review_env
    spec = StudySpec("stable", (RealPool("phantom", 12), SyntheticPool(12, generator="gen-a")),
                     tuple(r.name for r in env.reviewers), overlap=2)
    create_study(env.db, env.workspace, env.admin, spec)
    burner = _burn_cpu()
    try:
        reports = [audit_study(env.db, env.workspace, env.admin, "stable", n_boot=200)
                   for _ in range(10)]
    finally:
        burner.kill()
    gated = {tuple((c.name, c.auc, c.low, c.high, c.leaks) for c in r.channels if c.gated)
             for r in reports}
    assert {r.passed for r in reports} == {True} and len(gated) == 1
    assert not _channel(reports[0], "serve_ms").gated
    for seed in range(1, 6):  # the design passes at creation whatever the seed
        create_study(env.db, env.workspace, env.admin, StudySpec(
            f"seed-{seed}", spec.pools, spec.reviewers, overlap=2, seed=seed))
        assert next(s.audit for s in list_studies(env.db, env.admin)
                    if s.name == f"seed-{seed}") == "passed"

    # leak 1: the synthetic images' served files are a few bytes longer
    from polyp_core.review.studies import served_path

    with env.db.session() as session:
        study = queries.study_by_name(session, "stable")
        for study_image in queries.study_images(session, study.id):
            if study_image.image.kind == "synthetic":
                path = served_path(env.workspace, study.id, study_image.image.sha256)
                path.write_bytes(path.read_bytes() + b"\0" * 16)
    report = audit_study(env.db, env.workspace, env.admin, "stable", n_boot=200)
    assert not report.passed and _channel(report, "byte_length").leaks

    # leak 2: fresh files, but every queue shows its synthetic images first
    create_study(env.db, env.workspace, env.admin, StudySpec(
        "sorted", spec.pools, spec.reviewers, overlap=2, seed=1))
    with env.db.session() as session:
        study = queries.study_by_name(session, "sorted")
        queues: dict = {}
        for assignment, _ in queries.study_rows(session, study.id):
            queues.setdefault(assignment.reviewer_id, []).append(assignment)
        for queue in queues.values():
            queue.sort(key=lambda a: (a.image.kind == "real", a.position))
            for position, assignment in enumerate(queue):
                assignment.position = 10_000 + position  # clear of the unique (reviewer, position)
            session.flush()
            for assignment in queue:
                assignment.position -= 10_000
    report = audit_study(env.db, env.workspace, env.admin, "sorted", n_boot=200)
    assert not report.passed and _channel(report, "position").leaks
    assert _channel(report, "position").auc == pytest.approx(1.0, abs=0.1)


def test_the_demo_study_opens_for_its_reviewers(live_app):
    """The demo workspace as ``ensure_demo_workspace(n_per_class=6, n_frames=90, size=96)``
    makes it (the ``live_app`` fixture): the open study's audit passed at creation, the admin
    reads neither demo study, and reviewer1 has a queue on the first visit."""
    from polyp_core.demo import DEMO_REVIEWERS, DEMO_SIMULATED_STUDY

    db = live_app["db"]
    with db.session() as session:
        for name in (DEMO_STUDY, DEMO_SIMULATED_STUDY):
            settings = queries.study_by_name(session, name).settings
            assert settings["audit"]["passed"] and not settings["held"], name
            assert DEMO_ADMIN[0] not in settings["reviewers"], name
        row = queries.reviewer_by_name(session, DEMO_REVIEWERS[0][0])
        reviewer = Person(row.id, row.name, row.role)
    assert DEMO_STUDY in [s.name for s in list_studies(db, reviewer)]
    assert len(desk.queue(db, reviewer, DEMO_STUDY)) == 16  # 24 images x 2 readers / 3
