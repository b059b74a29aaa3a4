"""Numeric settings from the environment: one reader for every settings dataclass."""

from __future__ import annotations

import os
import typing
from dataclasses import fields


def numbers_from_env(cls: type, prefix: str,
                     environ: typing.Mapping[str, str] | None = None) -> object:
    """``cls`` built from ``<prefix><FIELD>`` variables (int or float fields, by their default's
    type), the defaults where unset. Raises ``ValueError`` naming a variable that is no number;
    ``cls`` itself checks ranges."""
    environ = os.environ if environ is None else environ
    values = {}
    for f in fields(cls):
        key = f"{prefix}{f.name.upper()}"
        if key in environ:
            kind = float if isinstance(f.default, float) else int
            try:
                values[f.name] = kind(environ[key])
            except ValueError:
                raise ValueError(f"{key}={environ[key]!r} is not a number") from None
    return cls(**values)
