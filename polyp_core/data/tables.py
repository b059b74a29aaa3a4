"""Reading label tables (CSV) as hospitals export them: any delimiter, BOM, Latin-1."""

from __future__ import annotations

import csv
import difflib
import io
from dataclasses import dataclass
from pathlib import Path


def normalise_column(name: str) -> str:
    """``"Image ID"``, ``"image-id"`` and ``"image_id"`` all become ``"image_id"``."""
    return "_".join(name.strip().lower().replace("-", " ").replace("_", " ").split())


@dataclass
class Table:
    path: Path
    columns: list[str]  # as written in the file
    rows: list[dict[str, str]]  # keyed by normalised column name
    first_row: int = 2  # spreadsheet row number of rows[0] (the header is row 1)

    @property
    def normalised(self) -> list[str]:
        return [normalise_column(c) for c in self.columns]

    def find(self, candidates: tuple[str, ...]) -> str | None:
        """The first of ``candidates`` (normalised names) that the table has."""
        present = set(self.normalised)
        for name in candidates:
            if normalise_column(name) in present:
                return normalise_column(name)
        return None

    def suggest(self, candidates: tuple[str, ...]) -> str | None:
        """The column as written in the file that is nearest to any of ``candidates``."""
        by_norm = {normalise_column(c): c for c in self.columns}
        best: tuple[float, str] | None = None
        for want in candidates:
            for norm, original in by_norm.items():
                score = difflib.SequenceMatcher(None, normalise_column(want), norm).ratio()
                if best is None or score > best[0]:
                    best = (score, original)
        return best[1] if best and best[0] >= 0.5 else None

    def missing_message(self, role: str, candidates: tuple[str, ...]) -> str:
        wanted = " or ".join(repr(c) for c in candidates)
        found = ", ".join(repr(c) for c in self.columns) or "none"
        hint = self.suggest(candidates)
        tip = f"; did you mean {hint!r}? (pass it as the {role} column)" if hint else ""
        return f"no {role} column: expected {wanted}, found {found}{tip}"


def read_table(path: Path) -> Table:
    """Read a CSV file, sniffing ``,``/``;``/tab and trying UTF-8 then Latin-1.

    Raises:
        ValueError: the file is empty, binary (a workbook, UTF-16) or has no header.
    """
    raw = Path(path).read_bytes()
    if raw.startswith(b"PK\x03\x04"):
        raise ValueError("a zip container (an Excel .xlsx workbook?), not CSV text; save it as "
                         "CSV and import again")
    if b"\x00" in raw[:8192]:
        raise ValueError("binary data, not CSV text (UTF-16?); save it as UTF-8 CSV")
    for encoding in ("utf-8-sig", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if not text.strip():
        raise ValueError("the file is empty")
    sample = text[:8192]
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    rows = [row for row in reader]
    header, body = rows[0], rows[1:]
    columns = [c.strip() for c in header]
    if not any(columns):
        raise ValueError("the file has no header row")
    keys = [normalise_column(c) for c in columns]
    parsed = []
    for values in body:
        if not any(v.strip() for v in values):
            parsed.append({})  # blank line: kept so row numbers stay true
            continue
        parsed.append({k: (values[i].strip() if i < len(values) else "") for i, k in enumerate(keys)})
    return Table(Path(path), columns, parsed)
