"""Each user action declared once: its fields with their defaults, bounds, choices and help.

A :class:`Form` is what a front end needs to ask for a request: the CLI builds its options from
it (:meth:`Form.add_options`), a tab reads its widgets' defaults from it (:meth:`Form.defaults`)
and both hand the plain values to the action's one workflow entry. A field that is a field of
an engine request (``TrainConfig.epochs``, ``InpaintRequest.dilate``) takes its default, choices
and bounds from that request's declaration (:func:`of`), so the number is written once, where
the engine checks it.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polyp_core.validation import InvalidRequest, Problem, as_option, number, whole

#: how a field is read from text: a whole number, a number, on/off, text, or comma-separated
KINDS = ("int", "float", "flag", "text", "names")


@dataclass(frozen=True)
class Field:
    """One field of a form.

    Attributes:
        name: the request's field (the key the workflow entry takes).
        default: the value when the field is not given (a flag: off unless ``True``).
        help: what it means, for ``--help`` and a widget's label or info.
        kind: one of :data:`KINDS`.
        choices: the values it takes (a choice list in the CLI and a radio/dropdown in a tab).
        lo, hi: bounds of a number (from the engine's rule when the field is one of its).
        option: the CLI option when it is not ``--<name>`` (``--size``); for a flag that is on
            by default, the option that turns it off (``--no-augment``).
        required: the CLI refuses to run without it.
        metavar: how ``--help`` writes its value.
        positional: the CLI takes it as an argument, not an option (``import SOURCE``).
        aliases: more spellings of its CLI option (``--citation`` for ``--source-note``).
    """

    name: str
    default: Any = None
    help: str = ""
    kind: str = "text"
    choices: tuple | None = None
    lo: float | None = None
    hi: float | None = None
    option: str | None = None
    required: bool = False
    metavar: str | None = None
    positional: bool = False
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: kind {self.kind!r} is not one of {KINDS}")

    @property
    def flag(self) -> str:
        """The CLI's option for the field."""
        return self.option or as_option(self.name)


def of(request: type, name: str, *, kind: str | None = None, show: Callable[[Any], Any] | None
       = None, **overrides: Any) -> Field:
    """A field declared by an engine request: its default, choices and bounds come from the
    request's dataclass field (``rule(...)``); ``show`` turns the default into what a person
    types (``(0, 7)`` -> ``"0,7"``); ``overrides`` set the rest (help, option...)."""
    found = {f.name: f for f in dataclasses.fields(request)}
    if name not in found:
        raise KeyError(f"{request.__name__} has no field {name!r}")
    spec = found[name]
    if spec.default is not dataclasses.MISSING:
        default = spec.default
    elif spec.default_factory is not dataclasses.MISSING:
        default = spec.default_factory()
    else:
        default = None
    meta = spec.metadata
    if kind is None:
        kind = ("flag" if isinstance(default, bool) else "int" if isinstance(default, int)
                else "float" if isinstance(default, float) else "text")
    values = {"name": overrides.pop("field", name), "default": show(default) if show else default,
              "kind": kind, "choices": meta.get("choices"), "lo": meta.get("lo"),
              "hi": meta.get("hi")}
    return Field(**(values | overrides))


def names_text(values: Sequence[object] | None) -> str | None:
    """``(0, 7)`` -> ``"0,7"``: how a form shows a list it reads as comma-separated text."""
    return None if values is None else ",".join(str(v) for v in values)


@dataclass(frozen=True)
class Form:
    """A user action's fields, in the order a person reads them."""

    action: str
    help: str
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        seen = [f.name for f in self.fields]
        twice = sorted({n for n in seen if seen.count(n) > 1})
        if twice:
            raise ValueError(f"form {self.action}: fields declared twice: {twice}")

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"form {self.action} has no field {name!r}")

    def defaults(self) -> dict[str, Any]:
        """Every field's default, by name: where a tab's widgets start."""
        return {f.name: f.default for f in self.fields}

    def options(self) -> dict[str, str]:
        """Fields whose CLI option is not ``--<name>``: field -> option (for error messages)."""
        return {f.name: f.flag for f in self.fields if f.option}

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        """One CLI option per field, with the field's default, choices and help."""
        for f in self.fields:
            unset = f.default is None or f.default == "" or f.kind == "flag"
            shown = "" if unset else f" (default: {f.default})"
            kwargs: dict[str, Any] = {"dest": f.name, "help": (f.help + shown) or None}
            if f.kind == "flag":
                on = bool(f.default)
                kwargs |= {"action": "store_false" if on else "store_true", "default": on}
            else:
                kwargs |= {"default": f.default, "required": f.required,
                           "type": {"int": int, "float": float}.get(f.kind, str)}
                if f.choices is not None:
                    kwargs["choices"] = list(f.choices)
                if f.metavar:
                    kwargs["metavar"] = f.metavar
            if f.positional:
                parser.add_argument(f.name, help=kwargs["help"], metavar=f.metavar)
                continue
            parser.add_argument(f.flag, *f.aliases, **kwargs)

    def parse(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Every field's value from plain ones (form text and numbers, a parsed namespace's
        dict): a field the form does not have is refused, a missing or empty one takes its
        default, a number is read as one. Every bad field is named at once; the engine's
        request then checks ranges and choices (all at once too).

        Raises:
            InvalidRequest: naming each unknown field and each value that is not a number.
        """
        article = "an" if self.action[0] in "aeiou" else "a"
        problems = [Problem(u, f"is not a field of {article} {self.action} request")
                    for u in sorted(set(fields) - {f.name for f in self.fields})]
        out: dict[str, Any] = {}
        for f in self.fields:
            value = fields.get(f.name)
            if value is None or (isinstance(value, str) and not value.strip()):
                out[f.name] = f.default
                continue
            try:
                out[f.name] = _read(f, value)
            except InvalidRequest as error:
                problems += error.problems
        if problems:
            raise InvalidRequest(self.action, problems, self.options())
        return out

    def values(self, namespace: argparse.Namespace | Mapping[str, Any]) -> dict[str, Any]:
        """The form's fields out of a parsed namespace (or a mapping), by field name."""
        source = vars(namespace) if isinstance(namespace, argparse.Namespace) else namespace
        return {f.name: source[f.name] for f in self.fields if f.name in source}


def _read(f: Field, value: Any) -> Any:
    """One plain value as the field's kind. Numbers that are already numbers pass as they are
    (NaN included: the request names it as not finite, with the rest of its problems)."""
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if f.kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if numeric and (value != value or value in (float("inf"), float("-inf"))):
            return value
        return whole(value, f.name)
    if f.kind == "float":
        return float(value) if numeric else number(value, f.name)
    if f.kind == "flag":
        return bool(value)
    return value.strip() if isinstance(value, str) else value
