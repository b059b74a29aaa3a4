"""The synthetic pool as a user browses and prunes it: filters, provenance, ratings, and removal
that refuses images a study or a stored run uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polyp_core.pool import PoolFilter, pool_item, pool_page, remove_from_pool
from polyp_core.review import desk
from polyp_core.review.studies import StudySpec, SyntheticPool, create_study
from review_db import queries


def test_filters_pages_and_provenance(review_env):
    db = review_env.db
    everything = pool_page(db, PoolFilter(), 0, 200)
    assert everything.total == len(everything.items) > 30
    gen_a = pool_page(db, PoolFilter(generator="gen-a"), 0, 200)
    assert gen_a.total < everything.total
    assert all(i.provenance["generator"] == "gen-a" for i in gen_a.items)
    ssa = pool_page(db, PoolFilter(class_label="SSA"), 0, 5)
    assert all(i.class_label == "SSA" for i in ssa.items) and len(ssa.items) <= 5
    assert ssa.pages == -(-ssa.total // 5)
    pages = [pool_page(db, PoolFilter(), p, 7) for p in range(-(-everything.total // 7))]
    walked = [i.sha256 for page in pages for i in page.items]
    assert walked == [i.sha256 for i in everything.items]  # every image once, newest first
    assert pool_page(db, PoolFilter(), 999, 7).page == len(pages) - 1  # past the end: the last
    item = pool_item(db, gen_a.items[0].sha256)
    assert item.provenance["scheduler"] == "ddim" and item.provenance["steps"] == 50
    assert "gen-a@step-100 · seed" in item.caption() and item.ratings == ()
    with pytest.raises(ValueError, match="rated 'maybe' is not one of: any, rated, unrated"):
        PoolFilter(rated="maybe")
    with pytest.raises(KeyError, match="no synthetic image"):
        pool_item(db, "0" * 64)


def test_rating_filters_follow_the_reviews(review_env):
    db, admin, rev = review_env.db, review_env.admin, review_env.reviewers[0]
    create_study(db, review_env.workspace, admin,
                 StudySpec("pool", (SyntheticPool(4, generator="gen-a"),), (rev.name,)))
    queue = desk.queue(db, rev, "pool")
    for item, quality in zip(queue, ("good", "good", "poor")):
        desk.rate(db, rev, item.token, "real", quality)
    rated = pool_page(db, PoolFilter(rated="rated"), 0, 200)
    assert rated.total == 3
    good = pool_page(db, PoolFilter(min_quality="good"), 0, 200)
    assert good.total == 2 and all(i.median_quality == "good" for i in good.items)
    assert all(i.studies == ("pool",) for i in good.items)
    unrated = pool_page(db, PoolFilter(rated="unrated"), 0, 200)
    assert unrated.total == pool_page(db, PoolFilter(), 0, 200).total - 3


def test_removal_keeps_what_a_study_or_run_uses(review_env, tmp_path):
    db, workspace, admin = review_env.db, review_env.workspace, review_env.admin
    create_study(db, workspace, admin,
                 StudySpec("keep", (SyntheticPool(2, generator="gen-b"),), ("rev0",)))
    with db.session() as session:
        study = queries.study_by_name(session, "keep")
        in_study = [si.image.sha256 for si in queries.study_images(session, study.id)]
    free = [i.sha256 for i in pool_page(db, PoolFilter(), 0, 200).items
            if i.sha256 not in in_study]
    in_run, gone = free[0], free[1:3]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "images.json").write_text(json.dumps({"synthetic": [{"sha256": in_run}]}))
    with db.session() as session:
        queries.add_run(session, run_id="r-1", kind="retrain", status="done", config={},
                        results_path=str(run_dir))
    paths = {sha: Path(pool_item(db, sha).path) for sha in gone}
    result = remove_from_pool(db, workspace, [in_study[0], in_run, *gone, "f" * 64])
    assert set(result.removed) == set(gone)
    assert result.refused == {in_study[0]: "used by study keep", in_run: "used by run r-1",
                              "f" * 64: "not a synthetic image of the pool"}
    assert not any(p.exists() for p in paths.values())
    for sha in gone:
        with pytest.raises(KeyError):
            pool_item(db, sha)
    assert pool_item(db, in_study[0]).studies == ("keep",)
    assert Path(pool_item(db, in_run).path).is_file()
