"""Blind review end to end on SQLite and PostgreSQL: accounts, studies, blinding, ratings."""

import io
import string
from collections import Counter

import pytest
from PIL import Image
from scipy.stats import binomtest

from conftest import PASSWORD
from polyp_core.review import desk
from polyp_core.review.accounts import create_account, hash_password, sign_in, verify_password
from polyp_core.review.errors import (AuthError, InvalidRating, NotFound, PermissionDenied,
                                      StudyClosed)
from polyp_core.review.studies import (RealPool, StudySpec, SyntheticPool, close_study,
                                       create_study, list_studies)
from review_db import queries


def make_study(env, name="s1", n_real=10, n_a=5, n_b=5, overlap=2, reviewers=None, **kw):
    spec = StudySpec(name=name, pools=(RealPool("phantom", n_real),
                                       SyntheticPool(n_a, generator="gen-a"),
                                       SyntheticPool(n_b, generator="gen-b")),
                     reviewers=tuple(reviewers or [r.name for r in env.reviewers]),
                     overlap=overlap, **kw)
    create_study(env.db, env.workspace, env.admin, spec)
    return spec


def db_state(env):
    with env.db.session() as session:
        rows = queries.study_rows(session, queries.list_studies(session)[0].id)
        return sorted((a.token, r.verdict, r.quality, r.histology, r.revision)
                      for a, r in rows if r is not None)


# accounts ------------------------------------------------------------------------------------

def test_passwords_are_salted_scrypt_hashes(review_env):
    first, second = hash_password("same password"), hash_password("same password")
    assert first != second and first.startswith("scrypt$") and "same" not in first
    assert verify_password("same password", first) and not verify_password("other", first)
    with review_env.db.session() as session:
        stored = queries.reviewer_by_name(session, "rev0").password_hash
    assert PASSWORD not in stored


def test_sign_in_and_roles(review_env):
    person = sign_in(review_env.db, "rev0", PASSWORD)
    assert (person.name, person.role, person.is_admin) == ("rev0", "reviewer", False)
    with pytest.raises(AuthError) as wrong:
        sign_in(review_env.db, "rev0", "not the password")
    with pytest.raises(AuthError) as unknown:
        sign_in(review_env.db, "nobody", PASSWORD)
    assert str(wrong.value) == str(unknown.value)  # does not reveal which names exist
    with pytest.raises(ValueError, match="already exists"):
        create_account(review_env.db, "rev0", PASSWORD)
    with pytest.raises(ValueError, match="role"):
        create_account(review_env.db, "x", PASSWORD, role="owner")
    with pytest.raises(ValueError, match="at least 8"):
        create_account(review_env.db, "y", "short")


# studies -------------------------------------------------------------------------------------

def test_study_mix_overlap_and_orders(review_env):
    make_study(review_env, n_real=10, n_a=6, n_b=4, overlap=2)
    key = desk.answer_key  # hidden while open:
    with pytest.raises(PermissionDenied, match="hidden until it is closed"):
        key(review_env.db, review_env.admin, "s1")
    queues = {r.name: desk.queue(review_env.db, r, "s1") for r in review_env.reviewers}
    assert sum(len(q) for q in queues.values()) == 20 * 2
    assert max(len(q) for q in queues.values()) - min(len(q) for q in queues.values()) <= 1
    tokens = [item.token for q in queues.values() for item in q]
    assert len(set(tokens)) == len(tokens)
    assert all(len(t) >= 40 and set(t) <= set(string.ascii_letters + string.digits + "-_")
               for t in tokens)
    for q in queues.values():
        assert [i.position for i in q] == list(range(len(q)))
    close_study(review_env.db, review_env.admin, "s1")
    answer = key(review_env.db, review_env.admin, "s1")
    assert Counter(row["source"] for row in answer) == {"real": 10, "gen-a@step-100": 6,
                                                        "gen-b@step-100": 4}
    records = desk.rating_records(review_env.db, review_env.admin, "s1")
    assert all(count == 2 for count in Counter(r["image"] for r in records).values())


def test_study_errors(review_env):
    with pytest.raises(PermissionDenied):
        create_study(review_env.db, review_env.workspace, review_env.reviewers[0],
                     StudySpec("x", (RealPool("phantom", 2),), ("rev0",)))
    with pytest.raises(ValueError, match="gen-a has 24 image"):
        make_study(review_env, n_a=50)
    with pytest.raises(ValueError, match="unknown reviewer"):
        make_study(review_env, reviewers=["rev0", "ghost"], overlap=1)
    with pytest.raises(ValueError, match="overlap"):
        make_study(review_env, overlap=4)
    with pytest.raises(ValueError, match="no data set named"):
        create_study(review_env.db, review_env.workspace, review_env.admin,
                     StudySpec("y", (RealPool("missing", 2),), ("rev0",)))
    make_study(review_env)
    with pytest.raises(ValueError, match="already exists"):
        make_study(review_env)


def test_reviewers_see_their_own_studies_only(review_env):
    make_study(review_env, reviewers=["rev0", "rev1"], overlap=1)
    assert [s.name for s in list_studies(review_env.db, review_env.reviewers[0])] == ["s1"]
    assert list_studies(review_env.db, review_env.reviewers[2]) == []
    with pytest.raises(NotFound):
        desk.queue(review_env.db, review_env.reviewers[2], "s1")
    with pytest.raises(PermissionDenied):
        desk.rating_records(review_env.db, review_env.reviewers[0], "s1")
    info = list_studies(review_env.db, review_env.admin)[0]
    assert (info.assigned, info.rated, info.reviewers) == (20, 0, ("rev0", "rev1"))


# rating --------------------------------------------------------------------------------------

def test_rate_revise_resume_and_double_submit(review_env):
    make_study(review_env, overlap=1)
    rev = review_env.reviewers[0]
    items = desk.queue(review_env.db, rev, "s1")
    first = desk.rate(review_env.db, rev, items[0].token, "real", "good", seconds=3.5)
    assert (first.revision, first.changed) == (1, True)
    again = desk.rate(review_env.db, rev, items[0].token, "real", "good", seconds=9.0)
    assert (again.revision, again.changed) == (1, False)  # a double submission counts once
    assert desk.next_unrated(review_env.db, rev, "s1").token == items[1].token
    revised = desk.rate(review_env.db, rev, items[0].token, "synthetic", "poor", "HP", 4.0)
    assert (revised.revision, revised.changed) == (2, True)
    with review_env.db.session() as session:
        assignment = queries.assignment_by_token(session, items[0].token)
        history = queries.rating_history(session, assignment.rating.id)
        assert [(h.revision, h.verdict, h.quality) for h in history] == [(1, "real", "good")]
        assert queries.count_ratings(session) == 1
    now = desk.queue(review_env.db, rev, "s1")[0]
    assert (now.rated, now.verdict, now.quality, now.histology) == (True, "synthetic", "poor", "HP")
    for item in items:
        desk.rate(review_env.db, rev, item.token, "real", "moderate")
    assert desk.next_unrated(review_env.db, rev, "s1") is None


@pytest.mark.parametrize("field, value, message", [
    ("verdict", "maybe", "verdict 'maybe' is not one of: real, synthetic"),
    ("quality", 5, "quality 5 is not one of: good, moderate, poor"),
    ("histology", "XX", "histology 'XX' is not one of"),
    ("seconds", -1, "seconds -1 must be a number"),
    ("seconds", float("nan"), "seconds nan"),
    ("seconds", "12", "seconds '12'"),
    ("confidence", 6, "confidence 6 is not one of: 1"),
    ("confidence", True, "confidence True is not one of"),
    ("confidence", 2, "verdict 'synthetic' contradicts confidence 2"),
])
def test_malformed_values_are_refused_and_change_nothing(review_env, field, value, message):
    make_study(review_env, overlap=1)
    rev = review_env.reviewers[0]
    token = desk.queue(review_env.db, rev, "s1")[0].token
    desk.rate(review_env.db, rev, token, "real", "good", seconds=1.0)
    before = db_state(review_env)
    values = dict(verdict="synthetic", quality="poor", histology=None, seconds=2.0) | {field: value}
    with pytest.raises(InvalidRating, match=message.replace("(", r"\(")):
        desk.rate(review_env.db, rev, token, **values)
    assert db_state(review_env) == before


def test_foreign_unknown_closed_and_histology_required(review_env):
    make_study(review_env, overlap=1, ask_histology=True)
    rev0, rev1 = review_env.reviewers[:2]
    mine = desk.queue(review_env.db, rev0, "s1")[0].token
    desk.rate(review_env.db, rev0, mine, "real", "good", "AD")
    before = db_state(review_env)
    with pytest.raises(NotFound, match="unknown assignment token"):
        desk.rate(review_env.db, rev1, mine, "synthetic", "poor", "HP")
    with pytest.raises(NotFound):
        desk.image_for(review_env.db, review_env.workspace, rev1, mine)
    with pytest.raises(NotFound):
        desk.rate(review_env.db, rev0, "made-up-token", "real", "good", "AD")
    with pytest.raises(InvalidRating, match="asks for histology"):
        desk.rate(review_env.db, rev0, mine, "synthetic", "good")
    close_study(review_env.db, review_env.admin, "s1")
    with pytest.raises(StudyClosed):
        desk.rate(review_env.db, rev0, mine, "synthetic", "poor", "HP")
    assert db_state(review_env) == before


# blinding ------------------------------------------------------------------------------------

def _metadata(data: bytes) -> tuple:
    """Everything about a served file except its pixels."""
    image = Image.open(io.BytesIO(data))
    return (image.format, image.size, image.mode, tuple(sorted(image.info)),
            str(image.info.get("jfif_version")), str(image.info.get("dpi")),
            getattr(image, "layers", None), repr(image.quantization),
            image.getexif().tobytes() if len(image.getexif()) else b"",
            image.info.get("progressive"), data[:20])


def test_a_curious_reviewer_cannot_tell_real_from_synthetic_without_the_pixels(review_env):
    """Play a reviewer with browser tools: everything the session receives for a mixed study,
    looked at every way but the pixels, must say nothing about which image is real.

    Real frames are 64 px JPEGs with their own names; synthetic ones 48 px PNGs named by
    hash. What is served must erase all of that.
    """
    make_study(review_env, n_real=20, n_a=10, n_b=10, overlap=1, reviewers=["rev0"])
    rev = review_env.reviewers[0]
    items = desk.queue(review_env.db, rev, "s1")
    served = {item.token: desk.image_for(review_env.db, review_env.workspace, rev, item.token)
              for item in items}
    close_study(review_env.db, review_env.admin, "s1")
    truth = {r["position"]: r["truth"] for r in
             desk.rating_records(review_env.db, review_env.admin, "s1")}
    real = [truth[item.position] == "real" for item in items]
    assert sum(real) == 20

    # 1. every served file has identical non-pixel content: format, size, tables, markers
    assert len({_metadata(data) for data in served.values()}) == 1
    assert Image.open(io.BytesIO(next(iter(served.values())))).size == (512, 512)
    # 2. the queue entries have the same fields and shapes whatever the truth
    assert len({(type(i.token), len(i.token), i.rated) for i in items}) == 1

    # 3. guessing strategies on what remains: order in the queue and the tokens themselves
    def score(guess):
        correct = sum(g == r for g, r in zip(guess, real))
        return binomtest(correct, len(real), 0.5, alternative="greater").pvalue

    half = len(items) // 2
    strategies = {
        "first half of the queue is real": [i.position < half for i in items],
        "lexically small tokens are real": [t < sorted(served)[half] for t in
                                            [i.token for i in items]],
        "tokens starting with a letter are real": [i.token[0].isalpha() for i in items],
    }
    for name, guess in strategies.items():
        assert score(guess) > 1e-3, f"strategy '{name}' beats chance"
        assert score([not g for g in guess]) > 1e-3, f"strategy 'not {name}' beats chance"


def test_ids_of_the_database_are_not_exposed(review_env):
    make_study(review_env, overlap=1)
    item = desk.queue(review_env.db, review_env.reviewers[0], "s1")[0]
    assert set(vars(item)) == {"token", "position", "rated", "verdict", "quality", "histology",
                               "confidence", "mask_quality"}


def test_exported_csvs_open_as_text_in_a_spreadsheet(review_env, tmp_path):
    """A study named like a formula, exported: every cell that a spreadsheet would run starts
    with an apostrophe; numbers stay numbers."""
    import csv

    from polyp_core.files import csv_cell
    from polyp_core.review.stats import export_csv

    assert csv_cell('=HYPERLINK("x")') == '\'=HYPERLINK("x")'
    assert [csv_cell(v) for v in ("+1+2", "@SUM(A1)", "\tx", "\rx", "-cmd|' /C calc'!A0")] == \
        ["'+1+2", "'@SUM(A1)", "'\tx", "'\rx", "'-cmd|' /C calc'!A0"]
    assert [csv_cell(v) for v in ("-0.5", -3, 2.5, "AD", "", None)] == ["-0.5", -3, 2.5, "AD", "",
                                                                        None]
    name = '=HYPERLINK("x")'
    make_study(review_env, name=name, overlap=1, reviewers=["rev0"])
    close_study(review_env.db, review_env.admin, name)
    paths = export_csv(desk.rating_records(review_env.db, review_env.admin, name), tmp_path)
    cells = [cell for path in paths for row in csv.reader(open(path, encoding="utf-8"))
             for cell in row]
    assert any(cell == "'" + name for cell in cells)
    assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in cells)
    assert all(cell.startswith("'") or _is_number(cell) for cell in cells if cell.startswith("-"))


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def test_repeats_come_back_far_apart_and_calibration_items_are_scored_apart(review_env):
    """Half of each reader's images come back with a new token at least half the queue
    (without its repeats) later; every reader gets the calibration items; neither kind reaches the reviewer, and
    the statistics score them apart (test-retest, calibration) from the main readings."""
    from polyp_core.review.stats import study_statistics

    make_study(review_env, n_real=6, n_a=5, n_b=5, overlap=3, repeats=0.5,
               calibration=(SyntheticPool(4, generator="gen-b"),))
    with review_env.db.session() as session:
        study = queries.list_studies(session)[0]
        rows = queries.study_rows(session, study.id)
        by_reader: dict = {}
        for assignment, _ in rows:
            by_reader.setdefault(assignment.reviewer_id, []).append(
                (assignment.position, assignment.image_id, assignment.kind))
        pools = {si.image_id: si.pool for si in queries.study_images(session, study.id)}
    for queue in by_reader.values():
        queue.sort()
        kinds = [k for _, _, k in queue]
        assert kinds.count("main") == 16 and kinds.count("calibration") == 4
        assert kinds.count("repeat") == 8  # half of 16
        assert [p for p, _, _ in queue] == list(range(len(queue)))
        first = {image: p for p, image, k in queue if k == "main"}
        for position, image, kind in queue:
            if kind == "repeat":
                assert position - first[image] >= 20 / 2  # half the queue without repeats
            if kind == "calibration":
                assert pools[image].startswith("calibration:") and image not in first
    rev = review_env.reviewers[0]
    items = desk.queue(review_env.db, rev, "s1")
    assert len(items) == 28 and not hasattr(items[0], "kind")
    assert len({i.token for i in items}) == 28  # a repeat has a token of its own
    for item in items:  # the same answer each time: perfect test-retest
        desk.rate(review_env.db, rev, item.token, None, "good", confidence=2)
    for other in review_env.reviewers[1:]:
        for item in desk.queue(review_env.db, other, "s1"):
            desk.rate(review_env.db, other, item.token, "synthetic", "poor")
    close_study(review_env.db, review_env.admin, "s1")
    stats = study_statistics(desk.rating_records(review_env.db, review_env.admin, "s1"))
    me = stats["consistency"][rev.name]
    assert (me["repeats"], me["exact"], me["same_verdict"]) == (8, 1.0, 1.0)
    # calibration items come from gen-b (synthetic): "probably real" is wrong every time
    assert (me["calibration_items"], me["calibration_score"]) == (4, 0.0)
    assert stats["consistency"][review_env.reviewers[1].name]["calibration_score"] == 1.0
    assert stats["verdicts_real_positive"]["pooled"]["n"] == 3 * 16  # main readings only


def test_pool_specs_of_the_cli_and_the_studies_tab_parse_alike():
    from polyp_core.review.studies import RealPool, SyntheticPool, parse_calibration, parse_pool

    assert parse_pool("phantom:test:10", "real") == RealPool("phantom", 10, "test")
    assert parse_pool("gen-a@step-5:3", "synthetic") == SyntheticPool(3, "gen-a", "step-5")
    assert parse_calibration("real:phantom:4") == RealPool("phantom", 4)
    with pytest.raises(ValueError, match="'10': end it with the number of images"):
        parse_pool("10", "synthetic")  # a count alone named no generator
    with pytest.raises(ValueError, match="start it with real: or synthetic:"):
        parse_calibration("fake:gen:3")
