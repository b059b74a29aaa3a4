"""The database layer on SQLite and PostgreSQL: migrations, settings, constraints."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from review_db import Database
from review_db.models import Base, Rating


def test_migrations_build_exactly_the_models(db):
    with db.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
    tables = set(inspect(db.engine).get_table_names())
    assert {"image", "provenance", "reviewer", "study", "study_image", "assignment", "rating",
            "rating_revision", "job", "run", "auth_session", "audit_event",
            "alembic_version"} <= tables


def test_migrating_twice_is_harmless(db_url):
    Database(db_url).dispose()
    second = Database(db_url)
    with second.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"
    second.dispose()


def test_confidence_migration_keeps_every_rating_at_the_scale_end_it_meant(db_url):
    """Ratings stored before the five-point scale (revision 0002) get 1 (real) or 5
    (synthetic): their verdicts, and so every binary statistic, stay as they were."""
    from review_db.database import create_db_engine, migrate

    engine = create_db_engine(db_url)
    migrate(engine, "0002")
    with engine.begin() as c:
        c.execute(text("INSERT INTO reviewer (id, name, role, password_hash, active, created) "
                       "VALUES (1, 'r', 'reviewer', 'h', true, CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO image (id, sha256, path, kind, created) VALUES "
                       "(1, 'a', 'a.png', 'real', CURRENT_TIMESTAMP), "
                       "(2, 'b', 'b.png', 'synthetic', CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO study (id, name, status, settings, created) VALUES "
                       "(1, 's', 'open', '{}', CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO assignment (id, study_id, reviewer_id, image_id, position, "
                       "token) VALUES (1, 1, 1, 1, 0, 't1'), (2, 1, 1, 2, 1, 't2')"))
        c.execute(text("INSERT INTO rating (id, assignment_id, verdict, quality, revision, "
                       "created) VALUES (1, 1, 'real', 'good', 2, CURRENT_TIMESTAMP), "
                       "(2, 2, 'synthetic', 'poor', 1, CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO rating_revision (id, rating_id, revision, verdict, quality, "
                       "recorded) VALUES (1, 1, 1, 'synthetic', 'good', CURRENT_TIMESTAMP)"))
    migrate(engine)
    with engine.connect() as c:
        assert c.execute(text("SELECT id, verdict, confidence FROM rating ORDER BY id")).all() == \
            [(1, "real", 1), (2, "synthetic", 5)]
        assert c.execute(text("SELECT verdict, confidence FROM rating_revision")).all() == \
            [("synthetic", 5)]
    with pytest.raises(IntegrityError):
        with engine.begin() as c:
            c.execute(text("UPDATE rating SET confidence = 6 WHERE id = 1"))
    engine.dispose()


def test_sqlite_settings(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 's.db'}")
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    db.dispose()


def test_constraints_hold_in_the_database_itself(db):
    """Even code that bypasses the engine's checks cannot store a bad verdict or orphan."""
    with pytest.raises(IntegrityError):
        with db.session() as session:
            session.add(Rating(assignment_id=12345, verdict="real", quality="good"))
    with pytest.raises(IntegrityError):
        with db.session() as session:
            session.execute(text("INSERT INTO reviewer (name, role, password_hash, active, created)"
                                 " VALUES ('x', 'superuser', 'h', true, CURRENT_TIMESTAMP)"))


def test_workspace_default_and_env_url(tmp_path, monkeypatch):
    from review_db.database import database_url

    monkeypatch.delenv("STUDIO_DB_URL", raising=False)
    assert database_url(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'studio.db'}"
    monkeypatch.setenv("STUDIO_DB_URL", "postgresql+psycopg://u@h/db")
    assert database_url(tmp_path) == "postgresql+psycopg://u@h/db"


def test_many_processes_opening_a_new_sqlite_file_at_once(tmp_path):
    """Several processes (accelerate launch, reviewers) may create and migrate it together.

    (This did not reproduce the lock error seen once under accelerate, where a process
    switched to WAL while another was mid-migration; it checks the general property.)
    """
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    url = f"sqlite:///{tmp_path / 'race.db'}"
    import time

    # every process waits at a barrier (a file) until all of them are ready, then opens the
    # file at once: no clock decides whether the race is tested
    barrier = tmp_path / "go"
    code = ("import sys, time, pathlib; sys.path.insert(0, %r); from review_db import Database; "
            "pathlib.Path(%r + '.' + sys.argv[1]).touch(); "
            "exec(\"while not pathlib.Path(%r).exists(): time.sleep(0.001)\"); "
            "d = Database(%r); d.dispose(); print('ok')") % (str(root), str(barrier), str(barrier),
                                                            url)
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.*"))) < 8:
        failed = [p for p in procs if p.poll() is not None]
        assert not failed, failed[0].communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the processes did not start in 120 s"
        time.sleep(0.01)
    barrier.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err[-2000:]
    db = Database(url)
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()
