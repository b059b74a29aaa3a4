"""Accounts (admins, or the terminal's operator): who can sign in, their roles and sessions, the
changes that end those sessions, and the audit log."""

from __future__ import annotations

from polyp_core.review import accounts as engine
from polyp_core.review.accounts import Person
from polyp_core.workflows.base import TERMINAL, authorise
from review_db import queries
from review_db.database import Database

ACTIONS = ("deactivate", "activate", "make admin", "make reviewer")


def accounts(db: Database, person: Person) -> list[dict]:
    """Every account: name, role, active, open sessions."""
    authorise(db, person)
    with db.session() as session:
        return [{"name": r.name, "role": r.role, "active": r.active,
                 "sessions": queries.count_auth_sessions(session, r.id)}
                for r in queries.list_reviewers(session)]


def reviewer_names(db: Database, person: Person) -> list[str]:
    """The names a study can be given to (every account)."""
    return [a["name"] for a in accounts(db, person)]


def create(db: Database, person: Person, name: str, password: str,
           role: str = "reviewer") -> Person:
    authorise(db, person)
    return engine.create_account(db, name, password, role, by=_by(person))


def change(db: Database, person: Person, name: str, action: str) -> int:
    """Deactivate, activate, make admin or make reviewer; returns how many open sessions of
    that account ended."""
    authorise(db, person)
    if action in ("deactivate", "activate"):
        return engine.set_active(db, name, action == "activate", by=_by(person))
    if action in ("make admin", "make reviewer"):
        return engine.set_role(db, name, action.split()[1], by=_by(person))
    raise ValueError(f"action {action!r} is not one of: {', '.join(ACTIONS)}")


def set_password(db: Database, person: Person, name: str, password: str) -> int:
    authorise(db, person)
    return engine.change_password(db, name, password, by=_by(person))


def audit(db: Database, person: Person, kinds: tuple[str, ...] = (), actor: str | None = None,
          limit: int | None = 200) -> list[dict]:
    """The audit log, newest first."""
    authorise(db, person)
    with db.session() as session:
        return [{"at": queries.as_utc(e.at), "kind": e.kind, "actor": e.actor,
                 "address": e.address, "target": e.target, "detail": e.detail}
                for e in queries.audit_events(session, kinds=kinds, actor=actor, limit=limit)]


def _by(person: Person) -> str:
    import getpass

    return f"cli:{getpass.getuser()}" if person is TERMINAL else person.name
