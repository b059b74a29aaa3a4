"""Writing files so that a reader never sees half of one, even with concurrent writers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: Path | str, content: bytes | str | Callable[[BinaryIO], object]) -> Path:
    """Write ``content`` (bytes, text, or a function that writes to a binary handle) to a
    uniquely named temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as handle:
            if callable(content):
                content(handle)
            else:
                handle.write(content.encode() if isinstance(content, str) else content)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# CSV that a spreadsheet opens as text ----------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A cell a spreadsheet cannot run: text starting with ``=``, ``+``, ``-``, ``@``, a tab or
    a carriage return gets a leading apostrophe (OWASP's CSV-injection rule). Numbers, and text
    that is a plain number (``-0.5``), are left as they are: they cannot be formulas."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
        return value
    except ValueError:
        return "'" + value


def csv_row(values: Iterable[object]) -> list:
    return [csv_cell(v) for v in values]


def write_csv(path: Path | str, rows: list[dict], fieldnames: list[str] | None = None) -> Path:
    """Write dict rows as CSV (UTF-8, header from ``fieldnames`` or the rows' keys in order of
    appearance) through :func:`csv_cell`, atomically. Every CSV the studio writes goes here or
    through :func:`csv_row`."""
    import csv
    import io

    if fieldnames is None:
        fieldnames = []
        for row in rows:
            fieldnames += [k for k in row if k not in fieldnames]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(csv_row(fieldnames))
    for row in rows:
        writer.writerow(csv_row(row.get(k, "") for k in fieldnames))
    return atomic_write(path, buffer.getvalue().encode("utf-8"))
