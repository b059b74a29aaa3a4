"""Twenty reviewers at once, double submissions, and a process killed mid-rating."""

import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


from conftest import PASSWORD
from polyp_core.review import desk
from polyp_core.review.accounts import create_account
from polyp_core.review.studies import RealPool, StudySpec, SyntheticPool, create_study
from review_db import queries

WORKER = Path(__file__).resolve().parents[1] / "review_worker.py"
N_REVIEWERS = 20


def big_study(env, overlap=5):
    names = [f"load{i:02d}" for i in range(N_REVIEWERS)]
    people = [create_account(env.db, name, PASSWORD) for name in names]
    spec = StudySpec("load", (RealPool("phantom", 20), SyntheticPool(10, generator="gen-a"),
                              SyntheticPool(10, generator="gen-b")), tuple(names), overlap)
    create_study(env.db, env.workspace, env.admin, spec)
    return people


def check_counts(env, expected):
    with env.db.session() as session:
        study = queries.study_by_name(session, "load")
        rows = queries.study_rows(session, study.id)
        assert len(rows) == expected
        assert all(r is not None for _, r in rows), "a rating was lost"
        assert queries.count_ratings(session, study.id) == expected, "a rating was duplicated"
        assert all(r.revision == 1 for _, r in rows), "a double submission counted twice"


def test_twenty_reviewers_in_threads_each_submitting_twice_at_once(review_env):
    people = big_study(review_env)
    barrier = threading.Barrier(2 * N_REVIEWERS)

    def work(person):
        items = desk.queue(review_env.db, person, "load")
        barrier.wait()  # all 40 threads start rating together
        return sum(desk.rate(review_env.db, person, i.token, "real", "good", seconds=1.0).changed
                   for i in items)

    with ThreadPoolExecutor(2 * N_REVIEWERS) as pool:
        changed = list(pool.map(work, people + people))  # two threads per reviewer
    check_counts(review_env, 40 * 5)
    assert sum(changed) == 40 * 5  # of each pair of identical submissions, exactly one counted


def test_twenty_reviewers_in_processes(review_env):
    big_study(review_env)
    procs = [subprocess.Popen([sys.executable, str(WORKER), review_env.db.url, "load",
                               f"load{i:02d}", PASSWORD, "all"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(N_REVIEWERS)]
    total = 0
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        total += int(out.split()[-1])
    assert total == 40 * 5
    check_counts(review_env, 40 * 5)


def test_a_killed_process_loses_nothing_it_acknowledged(review_env):
    big_study(review_env, overlap=1)
    proc = subprocess.Popen([sys.executable, str(WORKER), review_env.db.url, "load", "load00",
                             PASSWORD, "forever"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    acked = {}
    try:
        for line in proc.stdout:
            _, token, verdict = line.split()
            acked[token] = verdict
            if len(acked) == 2 and verdict == "synthetic":  # well into its second round
                break
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: it was already rating the next one
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert acked
    newer = 0
    with review_env.db.session() as session:
        for token, verdict in acked.items():
            rating = queries.assignment_by_token(session, token).rating
            assert rating is not None, f"acknowledged rating of {token[:8]} lost"
            if rating.verdict != verdict:
                # committed but killed before it could print: only the one in flight,
                # and only ever a newer round's value
                assert (verdict, rating.verdict) == ("real", "synthetic")
                newer += 1
    assert newer <= 1
    if review_env.db.url.startswith("sqlite"):
        with review_env.db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
