"""Who is acting, checked on the server for every workflow entry."""

from __future__ import annotations

from polyp_core.review.accounts import Person, live_account
from polyp_core.review.errors import PermissionDenied
from review_db.database import Database

#: The person at the workstation's terminal (the CLI's commands that name no ``--as`` account):
#: they hold the workspace folder and its database file, so the studio cannot keep anything
#: from them. Only this object is let through unchecked (by identity, not by its fields).
TERMINAL = Person(0, "terminal", "admin")


def authorise(db: Database | None, person: Person, role: str = "admin") -> Person:
    """``person`` if their account, as it is now, may act in ``role`` (``admin`` or
    ``reviewer``).

    Raises:
        PermissionDenied: a reviewer where an admin is needed, or an account that is
            deactivated, deleted or demoted since the person signed in.
    """
    if person is TERMINAL:
        return person
    if role not in ("admin", "reviewer"):
        raise ValueError(f"role {role!r} is not one of: admin, reviewer")
    if role == "admin" and not person.is_admin:
        raise PermissionDenied(f"{person.name} is a reviewer; this needs an admin")
    if db is None:  # only the terminal acts without the accounts' database
        raise PermissionDenied(f"{person.name}: no account database to check the account in")
    with db.session() as session:
        live_account(session, person, admin=role == "admin")
    return person
