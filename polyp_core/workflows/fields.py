"""Request fields in messages: the engine names a request's fields as `field`; each front end
shows its own name for them (the CLI its flag, the browser its label)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from polyp_core.validation import as_option  # noqa: F401  (the CLI's spelling, re-exported)

_FIELD = re.compile(r"`([a-z][a-z0-9_]*)`")


def name_fields(text: str, names: Mapping[str, str],
                otherwise: Callable[[str], str] = lambda field: field) -> str:
    """``text`` with every `field` replaced by the front end's name for it: ``names`` where it
    has one, ``otherwise(field)`` else."""
    return _FIELD.sub(lambda m: names.get(m.group(1)) or otherwise(m.group(1)), text)

