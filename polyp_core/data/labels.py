"""Histology labels and label schemes.

Raw labels from a data set are normalised to canonical classes (``AD``, ``SSA``, ``HP``,
``REST``, and ``LESION`` for a polyp without histology) and then mapped by a scheme. The raw label is always kept beside the canonical
one, so switching scheme never loses information.
"""

from __future__ import annotations

from dataclasses import dataclass

#: canonical classes and the spellings seen in the wild (compared case-insensitively)
CANONICAL_ALIASES: dict[str, tuple[str, ...]] = {
    "AD": ("AD", "ADENOMA", "ADENOMATOUS", "TA", "TVA", "VA", "NEOPLASTIC"),
    # the seed hospital data spells sessile serrated adenoma/lesion "ASS"
    "SSA": ("SSA", "ASS", "SSL", "SSA/P", "SESSILE SERRATED"),
    "HP": ("HP", "HYPERPLASTIC", "HPP"),
    "REST": ("REST", "NON-AD", "NONAD", "NON-NEOPLASTIC", "NON_AD", "OTHER"),
    # a polyp without histology: the public segmentation sets (``data.lesion``)
    "LESION": ("LESION", "POLYP"),
}

_ALIAS_TO_CANONICAL = {
    alias.upper(): canon for canon, aliases in CANONICAL_ALIASES.items() for alias in aliases
}


def canonical_label(raw: str, extra_aliases: dict[str, str] | None = None) -> str | None:
    """Map a raw label to its canonical class, or ``None`` when it is unknown.

    Args:
        raw: the label as written in the data set (``"ASS"``, ``"ad"``, ``"Adenoma"``).
        extra_aliases: user-given spellings, raw label -> canonical class.
    """
    key = str(raw).strip()
    if extra_aliases:
        for alias, canon in extra_aliases.items():
            if alias.strip().upper() == key.upper():
                return canon
    return _ALIAS_TO_CANONICAL.get(key.upper())


@dataclass(frozen=True)
class LabelScheme:
    """How canonical classes map to the classes a model sees.

    Attributes:
        name: registry name (``three_class``, ``ad_vs_rest``).
        classes: the scheme's classes in index order.
        mapping: canonical class -> scheme class; a canonical class absent here cannot be
            expressed in this scheme.
    """

    name: str
    classes: tuple[str, ...]
    mapping: dict[str, str]

    def map(self, canonical: str) -> str:
        """Return the scheme class of a canonical class.

        Raises:
            ValueError: when the class cannot be expressed in this scheme.
        """
        try:
            return self.mapping[canonical]
        except KeyError:
            raise ValueError(
                f"label {canonical!r} cannot be expressed in scheme {self.name!r} "
                f"(it maps {', '.join(sorted(self.mapping))})"
            ) from None

    def index(self, canonical: str) -> int:
        return self.classes.index(self.map(canonical))

    def accepts(self, canonicals: set[str]) -> bool:
        return canonicals <= set(self.mapping)


SCHEMES: dict[str, LabelScheme] = {
    "three_class": LabelScheme(
        "three_class", ("AD", "SSA", "HP"), {"AD": "AD", "SSA": "SSA", "HP": "HP"}
    ),
    "ad_vs_rest": LabelScheme(
        "ad_vs_rest", ("AD", "REST"), {"AD": "AD", "SSA": "REST", "HP": "REST", "REST": "REST"}
    ),
    # one class: every polyp a lesion (segmentation, the gate, inpainting without a class)
    "lesion": LabelScheme(
        "lesion", ("LESION",), {c: "LESION" for c in ("AD", "SSA", "HP", "REST", "LESION")}
    ),
}


def get_scheme(name: str) -> LabelScheme:
    """Look a scheme up by name.

    Raises:
        ValueError: naming the schemes that exist.
    """
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(
            f"unknown label scheme {name!r}; choose one of: {', '.join(SCHEMES)}"
        ) from None


def native_scheme(canonicals: set[str]) -> str:
    """The finest scheme that can express every class present in a data set: ``lesion`` for
    frames without histology."""
    if canonicals and SCHEMES["three_class"].accepts(canonicals):
        return "three_class"
    if not canonicals or SCHEMES["ad_vs_rest"].accepts(canonicals):
        return "ad_vs_rest"
    return "lesion"


def available_schemes(canonicals: set[str]) -> list[str]:
    """The schemes a data set's labels can be read in; ``lesion`` (every label one class) only
    where no histology scheme can (a data set of masks without classes). Any data set may still
    be read as ``lesion`` (``Manifest.with_scheme``)."""
    found = [name for name, scheme in SCHEMES.items() if scheme.accepts(canonicals)]
    return [n for n in found if n != "lesion"] or found
