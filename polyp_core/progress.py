"""Progress reporting and cancellation shared by the CLI, tests, notebooks and the UI."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol


class Progress(Protocol):
    def __call__(self, done: int, total: int, message: str) -> None: ...


def no_progress(done: int, total: int, message: str) -> None:
    """The default callback: report nothing."""


class Cancelled(Exception):
    """Raised inside a long operation when its cancel token is set."""


@dataclass
class CancelToken:
    """Set from another thread (a UI button, a signal handler) to stop a long operation."""

    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


def eta(elapsed: float, done: int, total: int) -> float | None:
    """Seconds left at the rate so far (None before the first unit or after the last)."""
    if not 0 < done < total or elapsed <= 0:
        return None
    return elapsed * (total - done) / done


def clock(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"
