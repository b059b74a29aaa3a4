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
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    second.dispose()


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

    root = Path(__file__).resolve().parents[1]
    url = f"sqlite:///{tmp_path / 'race.db'}"
    import time

    start_at = time.time() + 4  # every process opens the file at the same instant
    code = ("import sys, time; sys.path.insert(0, %r); from review_db import Database; "
            "time.sleep(max(0, %r - time.time())); "
            "d = Database(%r); d.dispose(); print('ok')") % (str(root), start_at, url)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0 and out.strip() == "ok", err[-2000:]
    db = Database(url)
    with db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    db.dispose()
