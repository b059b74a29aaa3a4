"""One validation layer for every request the engine takes (sampling, training, imports,
studies, experiments, diagnostics).

A request dataclass declares what each field accepts with :func:`rule` and is decorated with
:func:`checked`: constructing it with a bad value raises :class:`InvalidRequest`, which names
every field that is wrong and what it accepts, so the UI and the CLI show the same message.

Rules that hold for every field without being declared:

- numbers are finite (no NaN, no infinity) and of the declared type (``2.5`` is not a step
  count; ``True`` is not a number);
- seeds (a field named ``seed`` or ``seeds``) lie in [0, 2**32), what every RNG accepts;
- text is printable and at most 200 characters (``rule(text=True)``: 2,000, for prompts);
- nested requests (a policy inside an experiment, pools inside a study) are checked too.

Cross-field rules (a class *or* a prompt; overlap at most the number of reviewers) stay in
each request's ``validate``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from polyp_core.errors import Problem, StudioError

if TYPE_CHECKING:
    from collections.abc import Callable

SEED_LIMIT = 2**32
NAME_MAX = 200
TEXT_MAX = 2000


class InvalidRequest(StudioError, ValueError):
    """A request with fields out of range; ``problems`` names each field."""

    def __init__(self, kind: str, problems: list[Problem],
                 flags: Mapping[str, str] | None = None) -> None:
        self.kind = kind
        self.problems = list(problems)
        self.flags = dict(flags or {})
        super().__init__("; ".join(str(p) for p in self.problems))

    def as_flags(self) -> str:
        """The message with each field written as the CLI's option (``--checkpoint-every``)."""
        return "; ".join(f"{self.as_flag(p.where)}: {p.what}" for p in self.problems)

    def as_flag(self, where: str) -> str:
        """``train.checkpoint_every`` -> ``--checkpoint-every``; ``seeds[2]`` -> ``--seeds``;
        a field whose rule names its option (``rule(flag="--fractions")``) -> that option."""
        field = where.split("[", 1)[0]
        if field in self.flags:
            return self.flags[field]
        return as_option(field.rsplit(".", 1)[-1])


def as_option(field: str) -> str:
    """The CLI's spelling of a field: ``allow_small_test`` -> ``--allow-small-test``."""
    return "--" + field.replace("_", "-")


def rule(default: object = dataclasses.MISSING, *, lo: float | None = None, hi: float | None = None,
         above: float | None = None, below: float | None = None,
         choices: Sequence | None = None, text: bool = False, flag: str | None = None,
         factory: Callable[[], object] | object = dataclasses.MISSING,
         **field_kwargs: object) -> Any:
    """A dataclass field with what it accepts: ``lo <= v <= hi``, ``above < v < below``,
    one of ``choices``; ``text`` allows long printable text (prompts); ``flag``: the CLI's
    option for the field when it is not ``--<field-name>``."""
    metadata = {"lo": lo, "hi": hi, "above": above, "below": below,
                "choices": tuple(choices) if choices is not None else None, "text": text,
                "flag": flag}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata, **field_kwargs)
    return dataclasses.field(default=default, metadata=metadata, **field_kwargs)


def describe(meta: Mapping) -> str:
    """What a field's rule accepts, in words (``1 to 1000``, ``more than 0``)."""
    lo, hi, above, below = meta.get("lo"), meta.get("hi"), meta.get("above"), meta.get("below")
    parts = []
    if lo is not None and hi is not None:
        return f"{lo:g} to {hi:g}" if isinstance(lo, float) or isinstance(hi, float) \
            else f"{lo} to {hi}"
    if lo is not None:
        parts.append(f"at least {lo:g}")
    if above is not None:
        parts.append(f"more than {above:g}")
    if hi is not None:
        parts.append(f"at most {hi:g}")
    if below is not None:
        parts.append(f"less than {below:g}")
    return " and ".join(parts)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _number_type(declared: str) -> type | None:
    """``int`` or ``float`` when the annotation says the field is that number (or None)."""
    kinds = {part.strip() for part in declared.split("|")} - {"None"}
    if kinds == {"int"}:
        return int
    if kinds == {"float"}:
        return float
    return None


def _check_value(where: str, value: object, meta: Mapping, declared: str,  # noqa: C901
                 problems: list[Problem], seed: bool) -> None:
    if value is None:
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        problems.extend(problems_of(value, prefix=f"{where}."))
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_value(f"{where}[{key!r}]", key, {}, "str", problems, False)
            _check_value(f"{where}[{key!r}]", item, meta, "", problems, seed)
        return
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _check_value(f"{where}[{i}]", item, meta, "", problems, seed)
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        problems.append(Problem(where, f"{_short(value)} is not one of: "
                                       f"{', '.join(str(c) for c in choices)}"))
        return
    if isinstance(value, str):
        limit = TEXT_MAX if meta.get("text") else NAME_MAX
        if len(value) > limit:
            problems.append(Problem(where, f"{len(value)} characters; at most {limit} are allowed"))
        elif not value.replace("\n", " ").replace("\t", " ").isprintable():
            problems.append(Problem(where, f"{_short(value)} holds characters that are not "
                                           "printable text"))
        return
    wanted = _number_type(declared)
    if isinstance(value, bool):
        if wanted is not None:
            problems.append(Problem(where, f"{value} is not a number"))
        return
    if not isinstance(value, (int, float)):
        if wanted is not None:
            problems.append(Problem(where, f"{_short(value)} is not a number"))
        return
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(Problem(where, f"{value} is not a finite number"))
        return
    if wanted is int and not isinstance(value, int):
        problems.append(Problem(where, f"{value!r} is not a whole number"))
        return
    if seed and not 0 <= value < SEED_LIMIT:
        problems.append(Problem(where, f"{_short(value)} is out of range; a seed is 0 to "
                                       f"{SEED_LIMIT - 1}"))
        return
    lo, hi, above, below = meta.get("lo"), meta.get("hi"), meta.get("above"), meta.get("below")
    if ((lo is not None and value < lo) or (hi is not None and value > hi)
            or (above is not None and value <= above) or (below is not None and value >= below)):
        problems.append(Problem(where, f"{_short(value)} is out of range; allowed: "
                                       f"{describe(meta)}"))


def problems_of(request: object, prefix: str = "") -> list[Problem]:
    """Every field of ``request`` (a dataclass) that breaks its rule or the common rules."""
    problems: list[Problem] = []
    for field in dataclasses.fields(request):
        if field.name.startswith("_"):
            continue
        declared = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
        seed = field.name in ("seed", "seeds") or field.name.endswith("_seed")
        _check_value(prefix + field.name, getattr(request, field.name), field.metadata, declared,
                     problems, seed)
    return problems


def check_request(request: object) -> None:
    """Raise :class:`InvalidRequest` naming every bad field of ``request``."""
    problems = problems_of(request)
    if problems:
        flags = {f.name: f.metadata["flag"] for f in dataclasses.fields(request)
                 if f.metadata.get("flag")}
        raise InvalidRequest(type(request).__name__, problems, flags)


def checked(cls: type) -> type:
    """Class decorator (above ``@dataclass``): construction checks every field."""
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self: object, *args: object, **kwargs: object) -> None:  # noqa: N807
        init(self, *args, **kwargs)
        check_request(self)

    cls.__init__ = __init__
    return cls


def whole(value: object, where: str) -> int:
    """A form's number as an int, or :class:`InvalidRequest` naming ``where`` (the UI's number
    boxes send floats, NaN and text too; ``int()`` would truncate 2.5 or fail unnamed)."""
    number_ = number(value, where)
    if number_ != int(number_):
        raise InvalidRequest("form", [Problem(where, f"{value!r} is not a whole number")])
    return int(number_)


def number(value: object, where: str) -> float | int:
    """A form's number (int stays int), finite, or :class:`InvalidRequest` naming ``where``."""
    if isinstance(value, bool) or value is None or value == "":
        raise InvalidRequest("form", [Problem(where, "a number is needed")])
    if isinstance(value, int):
        return value
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest("form", [Problem(where, f"{_short(value)} is not a number")]) from None
    if not math.isfinite(out):
        raise InvalidRequest("form", [Problem(where, f"{value} is not a finite number")])
    return out
