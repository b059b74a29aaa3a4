"""What the command-line modules share: progress on a terminal, Ctrl-C, the database, the
signed-in person. No command lives here, and nothing here imports a command module."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from polyp_core.progress import clock, eta
from polyp_core.workspace import Workspace

if TYPE_CHECKING:
    from typing import TextIO

    from polyp_core.progress import CancelToken
    from polyp_core.review.accounts import Person
    from review_db.database import Database


class TerminalProgress:
    """A progress callback for long commands: a line with done/total, elapsed time and an ETA
    whenever the work reports and at least every ``every`` seconds (a heartbeat thread repeats
    the last state while the work is silent, e.g. inside a long step). Use as a context
    manager, or call :meth:`close`."""

    def __init__(self, every: float = 10.0, stream: TextIO | None = None) -> None:
        self.every = every
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.state: tuple[int, int, str] | None = None
        self.printed = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def line(self) -> str:
        done, total, message = self.state
        elapsed = time.monotonic() - self.start
        left = eta(elapsed, done, total)
        share = f" {100 * done / total:.0f}%" if total else ""
        return (f"  [{done}/{total}{share}] {message} ({clock(elapsed)} elapsed"
                + (f", ETA {clock(left)})" if left is not None else ")"))

    def __call__(self, done: int, total: int, message: str) -> None:
        with self._lock:
            first = self.state is None
            self.state = (done, total, message)
            now = time.monotonic()
            if first or done >= total or now - self.printed >= self.every:
                self._print(now)

    def _print(self, now: float) -> None:
        print(self.line(), file=self.stream, flush=True)
        self.printed = now

    def _beat(self) -> None:
        while not self._stop.wait(min(1.0, self.every / 4)):
            with self._lock:
                now = time.monotonic()
                if self.state is not None and now - self.printed >= self.every:
                    self._print(now)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def print_counts(counts: dict[str, dict[str, int]]) -> None:
    classes = list(next(iter(counts.values())))
    print(f"  {'split':<6}" + "".join(f"{c:>7}" for c in classes) + f"{'total':>8}")
    for split, row in counts.items():
        print(f"  {split:<6}" + "".join(f"{row[c]:>7}" for c in classes)
              + f"{sum(row.values()):>8}")



def cancel_on_interrupt() -> CancelToken:
    """Ctrl-C stops long work cleanly: a checkpoint is written and resume continues from it."""
    from polyp_core.progress import CancelToken

    token = CancelToken()
    signal.signal(signal.SIGINT, lambda *_: token.cancel())
    return token


def password(args: argparse.Namespace, prompt: str) -> str:
    """From ``--password-stdin``, ``$STUDIO_PASSWORD`` or a prompt; never the command line."""
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    if os.environ.get("STUDIO_PASSWORD"):
        return os.environ["STUDIO_PASSWORD"]
    return getpass.getpass(prompt)


def open_db(args: argparse.Namespace) -> Database:
    from review_db import Database
    from review_db.database import database_url

    return Database(getattr(args, "db", None) or database_url(Workspace(args.workspace).root))


def signed_in(args: argparse.Namespace, db: Database) -> Person:
    from polyp_core.review.accounts import sign_in

    return sign_in(db, args.as_, password(args, f"password for {args.as_}: "))
