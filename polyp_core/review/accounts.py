"""Reviewer accounts: salted scrypt password hashes (standard library), roles, sign-in."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from review_db import queries
from review_db.database import Database
from review_db.models import ROLES
from polyp_core.review.errors import AuthError, PermissionDenied

# scrypt cost: 2^15 x 8 x 1 takes ~50 ms and 32 MiB here, which slows guessing without
# making sign-in feel slow.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MIN_PASSWORD = 8


def hash_password(password: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=128 * 1024 * 1024,
                            dklen=32)
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"scrypt${n}${r}${p}${b64(salt)}${b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                            p=int(p), maxmem=128 * 1024 * 1024, dklen=32)
    return hmac.compare_digest(actual, base64.b64decode(digest))


@dataclass(frozen=True)
class Person:
    """Who is signed in: what the UI keeps in its per-user state."""

    id: int
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def require_admin(person: Person) -> None:
    if not person.is_admin:
        raise PermissionDenied(f"{person.name} is a reviewer; this needs an admin")


def create_account(db: Database, name: str, password: str, role: str = "reviewer") -> Person:
    """Raises ``ValueError`` for a bad role, short password or taken name."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    if not name or len(name) > 64 or not name.strip() == name:
        raise ValueError("a reviewer name is 1-64 characters without surrounding spaces")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    with db.session() as session:
        reviewer = queries.add_reviewer(session, name, role, hash_password(password))
        return Person(reviewer.id, reviewer.name, reviewer.role)


def sign_in(db: Database, name: str, password: str) -> Person:
    """Raises ``AuthError`` (same message for an unknown name and a wrong password)."""
    with db.session() as session:
        reviewer = queries.reviewer_by_name(session, name)
        stored = reviewer.password_hash if reviewer and reviewer.active else None
    # verify even for unknown names so timing does not tell which names exist
    ok = verify_password(password, stored or hash_password("x" * MIN_PASSWORD))
    if not (ok and stored):
        raise AuthError("unknown name or wrong password")
    return Person(reviewer.id, reviewer.name, reviewer.role)


def change_password(db: Database, name: str, password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    with db.session() as session:
        reviewer = queries.reviewer_by_name(session, name)
        if reviewer is None:
            raise ValueError(f"no reviewer named {name!r}")
        queries.set_password(session, reviewer, hash_password(password))
