"""Opening the database: SQLite in the workspace by default, PostgreSQL via STUDIO_DB_URL."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.engine.interfaces import DBAPIConnection

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def database_url(workspace_root: Path | str | None = None) -> str:
    """``$STUDIO_DB_URL`` if set, else ``sqlite:///<workspace>/studio.db``."""
    url = os.environ.get("STUDIO_DB_URL")
    if url:
        return url
    if workspace_root is None:
        raise ValueError("no database: set STUDIO_DB_URL or give a workspace folder")
    return f"sqlite:///{Path(workspace_root).resolve() / 'studio.db'}"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: DBAPIConnection, _record: object) -> None:
        # Let SQLAlchemy's "begin" below own transactions (pysqlite's own BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching a new file to WAL needs an exclusive lock, and
        # several processes (accelerate launch, a review team) may open it at once.
        cursor.execute("PRAGMA busy_timeout=30000")
        for attempt in range(100):
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 99:
                    raise
                time.sleep(0.05 * (1 + attempt % 10))
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a rating acknowledged to a reviewer survives a crash or power cut.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front: concurrent writers wait (busy_timeout)
        # instead of failing when a read transaction tries to become a write.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def create_db_engine(url: str) -> Engine:
    """An engine with the studio's settings for SQLite (WAL, FKs, busy timeout) or PostgreSQL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` with Alembic."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            # Alembic's batch mode rebuilds a SQLite table (copy, drop, rename): with foreign
            # keys on, dropping ``rating`` would cascade into ``rating_revision``. The pragma
            # works only outside a transaction; the check below proves nothing dangles.
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration left dangling references: {broken[:5]}")
        finally:
            if sqlite:
                connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")


class Database:
    """An engine plus a session factory; ``session()`` commits on success, rolls back on error."""

    def __init__(self, url: str, upgrade: bool = True) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        if upgrade:
            migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as session:
            with session.begin():
                yield session

    def dispose(self) -> None:
        self.engine.dispose()
