"""The manifest: what a data set holds, how it is labelled and split. Saved as JSON."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from polyp_core.data.labels import available_schemes, get_scheme
from polyp_core.data.splits import SPLITS
from polyp_core.files import atomic_write

if TYPE_CHECKING:
    from polyp_core.data.items import SourceItem

FORMAT_VERSION = 1
#: the group the import gives frames with identical pixels when the source names no group
SAME_PIXELS = "same-pixels:"


def source_group(item: ManifestItem | SourceItem) -> str | None:
    """The group the source named (patient, lesion, video), not one the import made for
    frames with identical pixels (a manifest's item, or a source's before import)."""
    return None if item.group is None or item.group.startswith(SAME_PIXELS) else item.group


@dataclass(frozen=True)
class ManifestItem:
    """One validated image of a data set.

    Attributes:
        id: the data set's own id (file stem or CSV id).
        image: absolute path of the image file.
        sha256: content hash of the image file (keys every cache).
        width, height: decoded size in pixels.
        raw_label: the label as the source wrote it (``ASS``), never changed.
        label: the canonical class (``SSA``).
        split: ``train``, ``valid`` or ``test``.
        mask, mask_sha256: the binary mask, when there is one.
        group: patient / lesion / video id, when known; frames with identical decoded pixels
            share one (:data:`SAME_PIXELS` and the first frame's id where the source named
            none).
        pixels: SHA-256 of the decoded pixels (``images.pixel_sha256``); None in manifests
            written before the studio recorded it.
        extra: every other column of the source row (``Histologia``, ...).
    """

    id: str
    image: str
    sha256: str
    width: int
    height: int
    raw_label: str
    label: str
    split: str
    mask: str | None = None
    mask_sha256: str | None = None
    group: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    pixels: str | None = None


@dataclass(frozen=True)
class Manifest:
    name: str
    layout: str
    source: str
    scheme: str  # the active label scheme; switchable
    split_method: str
    split_seed: int
    split_fractions: tuple[float, float, float]
    items: tuple[ManifestItem, ...]
    created: str
    studio_version: str
    notes: tuple[str, ...] = ()
    format_version: int = FORMAT_VERSION

    @property
    def canonical_labels(self) -> set[str]:
        return {item.label for item in self.items}

    @property
    def schemes(self) -> list[str]:
        return available_schemes(self.canonical_labels)

    @property
    def has_masks(self) -> bool:
        return any(item.mask for item in self.items)

    def label_of(self, item: ManifestItem, scheme: str | None = None) -> str:
        """The item's class in ``scheme`` (default: the active one)."""
        return get_scheme(scheme or self.scheme).map(item.label)

    def split_items(self, split: str) -> list[ManifestItem]:
        return [item for item in self.items if item.split == split]

    def class_counts(self, scheme: str | None = None) -> dict[str, dict[str, int]]:
        """``{split: {class: count}}`` in the scheme's class order, with an ``all`` row."""
        classes = get_scheme(scheme or self.scheme).classes
        table: dict[str, dict[str, int]] = {}
        for split in (*SPLITS, "all"):
            counter = Counter(self.label_of(i, scheme) for i in self.items
                              if split == "all" or i.split == split)
            table[split] = {c: counter.get(c, 0) for c in classes}
        return table

    def with_scheme(self, scheme: str) -> Manifest:
        """A copy with another active scheme.

        Raises:
            ValueError: when the data set's labels cannot be expressed in ``scheme``.
        """
        if scheme not in self.schemes and scheme != "lesion":  # lesion reads any as one class
            get_scheme(scheme)  # unknown names get the list of schemes
            raise ValueError(
                f"data set {self.name!r} has labels {sorted(self.canonical_labels)}, which scheme "
                f"{scheme!r} cannot express; available: {', '.join(self.schemes)}")
        return replace(self, scheme=scheme)

    def to_json(self) -> dict:
        data = asdict(self)
        data["split_fractions"] = list(self.split_fractions)
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_json(cls, data: dict) -> Manifest:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"manifest format {data.get('format_version')!r} is not "
                             f"{FORMAT_VERSION}, which this studio reads")
        items = tuple(ManifestItem(**item) for item in data["items"])
        return cls(**{**data, "items": items,
                      "split_fractions": tuple(data["split_fractions"]),
                      "notes": tuple(data.get("notes", ()))})

    def save(self, path: Path) -> None:
        """Write atomically: a reader never sees half a manifest."""
        atomic_write(path, json.dumps(self.to_json(), indent=1, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls.from_json(json.loads(Path(path).read_text()))
