"""What a source reader returns: labelled items as found, before validation, with the problems
and notes of the scan (``data.sources`` and ``data.lesion`` both make them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from polyp_core.errors import Problem


@dataclass
class SourceItem:
    """One labelled image as found in the source, before validation."""

    id: str
    image: Path
    raw_label: str
    label: str  # canonical class
    origin: str  # "labels.csv row 12" or the file path
    mask: Path | None = None
    group: str | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class SourceScan:
    layout: str
    root: Path
    items: list[SourceItem]
    problems: list[Problem]
    notes: list[str] = field(default_factory=list)
    split_from_files: bool = False
