"""Reviewer accounts: salted scrypt password hashes (standard library), roles, sign-in with
backoff, server-side sessions, and the account changes that end them.

Every sign-in attempt runs exactly one scrypt, whether the name exists or not, so timing does
not tell which names exist; an account or address that failed too often in a short time is
refused *before* the hash runs, with a wait that doubles per further failure (capped, so the
real user is never locked out for long). Every attempt, lockout and account change is written
to the audit log (``review_db.models.AuditEvent``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from polyp_core.settings import numbers_from_env
from review_db import queries
from review_db.database import Database
from review_db.models import ROLES, Reviewer, utcnow
from polyp_core.review.errors import AuthError, PermissionDenied, SignInLocked

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from sqlalchemy.orm import Session

    from review_db.models import AuditEvent

# scrypt cost: 2^15 x 8 x 1 takes ~50 ms and 32 MiB here, which slows guessing without
# making sign-in feel slow.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD = 8
# A hash of a random, forgotten password with the same cost: unknown and inactive names are
# checked against it, so they cost one scrypt like a known name does.
_NOBODY_HASH = ("scrypt$32768$8$1$iWnyHnz1T8A3WCBeo+rdgA==$"
                "POrkrzQ0XI1WM+KyEUkHFQpZh3k2haISvW2Ue5fFXXQ=")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    """The one place a password is hashed (tests count its calls)."""
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=128 * 1024 * 1024, dklen=32)


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(_scrypt(password, salt, n, r, p))}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    return hmac.compare_digest(actual, base64.b64decode(digest))


@dataclass(frozen=True)
class Person:
    """Who is signed in, as the server resolved it from the session for this request."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class AuthPolicy:
    """Sign-in backoff and session lifetimes (seconds). ``from_env`` reads ``STUDIO_<FIELD>``
    (upper case), e.g. ``STUDIO_IDLE_TIMEOUT_S=900``.

    Attributes:
        max_failures: failed sign-ins of one name, in ``window_s`` and since its last success,
            before that name is locked.
        address_max_failures: the same for one client address, whatever the names.
        window_s: how far back failures count.
        lockout_s: the first lock; each further failure doubles it, up to ``max_lockout_s``.
        max_lockout_s: the longest lock.
        idle_timeout_s: a session unused this long has ended.
        max_age_s: a session this old has ended, used or not.
        touch_every_s: how often a session's last use is written (not at every event).
    """

    max_failures: int = 5
    address_max_failures: int = 20
    window_s: float = 900.0
    lockout_s: float = 30.0
    max_lockout_s: float = 900.0
    idle_timeout_s: float = 1800.0
    max_age_s: float = 12 * 3600.0
    touch_every_s: float = 30.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
                    or value != value or value == float("inf"):
                raise ValueError(f"AuthPolicy.{f.name} must be a positive finite number, "
                                 f"not {value!r}")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> AuthPolicy:
        return numbers_from_env(cls, "STUDIO_", environ)


def require_admin(person: Person) -> None:
    if not person.is_admin:
        raise PermissionDenied(f"{person.name} is a reviewer; this needs an admin")


def live_account(session: Session, person: Person, admin: bool = False) -> Reviewer:
    """The person's account as it is now: refused when it was deactivated, deleted, or (for
    ``admin``) is no longer an admin. The engine's review functions call this, so a stale
    ``Person`` cannot act after its account changed."""
    reviewer = session.get(Reviewer, person.id)
    if reviewer is None or not reviewer.active:
        raise PermissionDenied(f"the account {person.name!r} is deactivated; ask an admin")
    if admin and reviewer.role != "admin":
        raise PermissionDenied(f"{person.name} is a reviewer; this needs an admin")
    return reviewer


def create_account(db: Database, name: str, password: str, role: str = "reviewer",
                   by: str | None = None) -> Person:
    """Raises ``ValueError`` for a bad role, short password or taken name."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    if not name or len(name) > 64 or not name.strip() == name or not name.isprintable():
        raise ValueError("a reviewer name is 1-64 printable characters without surrounding "
                         "spaces")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    with db.session() as session:
        reviewer = queries.add_reviewer(session, name, role, hash_password(password))
        queries.add_audit(session, "account_created", actor=by, target=name,
                          detail={"role": role})
        return Person(reviewer.id, reviewer.name, reviewer.role)


# sign-in -------------------------------------------------------------------------------------

def _lock_left(events: Sequence[AuditEvent], limit: int, policy: AuthPolicy, now: dt.datetime,
               reset_on_success: bool) -> float:
    """Seconds a name or address stays locked, from its recent attempts (newest first)."""
    failures = []
    for event in events:
        if event.kind == "sign_in":
            if reset_on_success:
                break
            continue
        if event.kind == "sign_in_failed":
            failures.append(queries.as_utc(event.at))
    if len(failures) < limit:
        return 0.0
    lock = min(policy.lockout_s * 2 ** (len(failures) - limit), policy.max_lockout_s)
    return max(0.0, (failures[0] + dt.timedelta(seconds=lock) - now).total_seconds())


def sign_in(db: Database, name: str, password: str, address: str | None = None,
            policy: AuthPolicy | None = None) -> Person:
    """Check a name and password.

    The attempt is recorded as a failure *before* the hash runs (and turned into a success
    after), so parallel guesses count too.

    Raises:
        SignInLocked: too many recent failures for this name or address; no hash was run.
        AuthError: unknown name, inactive account or wrong password (one message for all).
    """
    policy = policy or AuthPolicy()
    name = name if isinstance(name, str) else ""
    password = password if isinstance(password, str) else ""
    now = utcnow()
    since = now - dt.timedelta(seconds=policy.window_s)
    kinds = ("sign_in", "sign_in_failed")
    with db.session() as session:
        waits = [_lock_left(queries.audit_events(session, kinds=kinds, actor=name[:64],
                                                 since=since), policy.max_failures, policy,
                            now, reset_on_success=True)]
        if address:
            waits.append(_lock_left(queries.audit_events(session, kinds=kinds, address=address,
                                                         since=since),
                                    policy.address_max_failures, policy, now,
                                    reset_on_success=False))
        wait = max(waits)
        if wait > 0:
            queries.add_audit(session, "sign_in_locked", actor=name, address=address,
                              detail={"seconds_left": round(wait, 1)})
        else:
            attempt = queries.add_audit(session, "sign_in_failed", actor=name, address=address)
            reviewer = queries.reviewer_by_name(session, name)
            stored = reviewer.password_hash if reviewer is not None and reviewer.active else None
            person = Person(reviewer.id, reviewer.name, reviewer.role) if stored else None
    if wait > 0:  # refused without running the hash; the refusal is committed above
        raise SignInLocked(f"too many failed sign-ins for this name or from this address; "
                           f"try again in {int(wait) + 1} s", seconds=wait)
    ok = verify_password(password, stored or _NOBODY_HASH)
    if not (ok and person):
        raise AuthError("unknown name or wrong password")
    with db.session() as session:
        queries.audit_event_by_id(session, attempt.id).kind = "sign_in"
    return person


# sessions ------------------------------------------------------------------------------------

def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(db: Database, person: Person, address: str | None = None) -> str:
    """A new session for a signed-in person; returns the token for the cookie (only its
    SHA-256 is stored)."""
    token = secrets.token_urlsafe(32)
    with db.session() as session:
        queries.add_auth_session(session, person.id, _token_hash(token), address)
    return token


def resolve_session(db: Database, token: str | None, policy: AuthPolicy | None = None) -> Person:
    """Who holds this session token now: the account's current name and role.

    Raises:
        AuthError: no such session (signed out, ended by an account change), idle or too old,
            or the account is deactivated. An ended session is deleted.
    """
    policy = policy or AuthPolicy()
    if not isinstance(token, str) or not token or len(token) > 256:
        raise AuthError("not signed in")
    now = utcnow()
    with db.session() as session:
        row = queries.auth_session_by_hash(session, _token_hash(token))
        if row is None:
            raise AuthError("not signed in, or the session has ended: sign in again")
        reviewer = row.reviewer
        idle = (now - queries.as_utc(row.last_seen)).total_seconds()
        age = (now - queries.as_utc(row.created)).total_seconds()
        reason = ("account deactivated" if not reviewer.active else
                  "idle timeout" if idle > policy.idle_timeout_s else
                  "maximum age" if age > policy.max_age_s else None)
        if reason is None:
            if idle > policy.touch_every_s:
                row.last_seen = now
            return Person(reviewer.id, reviewer.name, reviewer.role)
        session.delete(row)
        queries.add_audit(session, "session_ended", actor=reviewer.name, address=row.address,
                          detail={"reason": reason})
    raise AuthError(f"the session has ended ({reason}): sign in again")


def end_session(db: Database, token: str | None) -> None:
    """Sign out: the token stops working at once, on every worker."""
    if not isinstance(token, str) or not token:
        return
    with db.session() as session:
        row = queries.auth_session_by_hash(session, _token_hash(token))
        if row is not None:
            queries.add_audit(session, "sign_out", actor=row.reviewer.name, address=row.address)
            session.delete(row)


# account changes: each ends the account's sessions -------------------------------------------

def _change_account(db: Database, name: str, kind: str, change: Callable[[Session, Reviewer], None],
                    by: str | None,
                    detail: dict | None = None) -> int:
    with db.session() as session:
        reviewer = queries.reviewer_by_name(session, name)
        if reviewer is None:
            raise ValueError(f"no reviewer named {name!r}")
        change(session, reviewer)
        ended = queries.delete_auth_sessions(session, reviewer_id=reviewer.id)
        queries.add_audit(session, kind, actor=by, target=name,
                          detail={**(detail or {}), "sessions_ended": ended})
        return ended


def change_password(db: Database, name: str, password: str, by: str | None = None) -> int:
    """Set a new password; the account's open sessions end. Returns how many ended."""
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    hashed = hash_password(password)
    return _change_account(db, name, "password_changed",
                           lambda s, r: queries.set_password(s, r, hashed), by)


def set_active(db: Database, name: str, active: bool, by: str | None = None) -> int:
    """Deactivate (sessions end at once; the next event of an open page is refused) or
    reactivate an account. Returns how many sessions ended."""
    return _change_account(db, name, "account_activated" if active else "account_deactivated",
                           lambda s, r: queries.set_account(s, r, active=bool(active)), by)


def set_role(db: Database, name: str, role: str, by: str | None = None) -> int:
    """Change an account's role; its sessions end, so the new rights apply from the next
    sign-in. Returns how many sessions ended."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    return _change_account(db, name, "role_changed", lambda s, r: queries.set_account(s, r, role=role), by,
                           {"role": role})


def record_refusal(db: Database, who: str | None, address: str | None, target: str,
                   why: str) -> None:
    """An event or route refused at the edge (the UI's gate or its event guard), in the audit
    log."""
    with db.session() as session:
        queries.add_audit(session, "event_refused", actor=who, address=address, target=target,
                          detail={"why": why})
