"""Errors that carry every problem found, each naming the file, row or field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with user input.

    Attributes:
        where: the file (and row or field) the problem is in, as the user would find it.
        what: what is wrong and, where possible, what would be accepted.
    """

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


class StudioError(Exception):
    """Base class of the errors the engine raises on purpose."""


class DatasetImportError(StudioError):
    """An import found problems; nothing was written. ``problems`` lists all of them."""

    def __init__(self, problems: list[Problem], source: str = "") -> None:
        self.problems = list(dict.fromkeys(problems))  # once each, in the order found
        self.source = source
        head = f"import of {source} failed" if source else "import failed"
        lines = [f"{head}: {len(self.problems)} problem(s)"]
        shown = self.problems[:50]
        lines += [f"  - {p}" for p in shown]
        if len(self.problems) > len(shown):
            lines.append(f"  ... and {len(self.problems) - len(shown)} more")
        super().__init__("\n".join(lines))


class ImageDecodeError(StudioError):
    """An image file could not be decoded into pixels."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class WeightsUnavailableError(StudioError):
    """Pretrained weights that were asked for are not on this machine."""
