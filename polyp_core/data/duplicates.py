"""Frames with identical decoded pixels: one group, whatever the split method.

A data set may hold the same frame twice under two names (NeoPolyp holds four such pairs).
Split apart, one copy trains and the other tests, and every score is optimistic. The import
hashes every frame's decoded pixels (``images.pixel_sha256``) and joins frames that share them,
with every other frame of their source groups, into one group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from polyp_core.data.manifest import SAME_PIXELS


def same_pixel_sets(pixels: Sequence[str | None]) -> list[list[int]]:
    """Indices of the frames that share their pixels with another, one list per picture, in
    order of first appearance (frames without a hash are never joined)."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(pixels):
        if key:
            by_hash[key].append(index)
    return [members for members in by_hash.values() if len(members) > 1]


def joined_groups(ids: Sequence[str], groups: Sequence[str | None],
                  sets: list[list[int]]) -> list[str | None]:
    """Each frame's group once frames with identical pixels are joined: frames of one picture,
    and every frame of a source group one of them belongs to, share a group. It keeps its
    source name where one source group is involved, joins the names with ``+`` where several
    are, and is :data:`SAME_PIXELS` and the first frame's id where the source named none.
    Frames untouched by a duplicate keep their group."""
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(a: int, b: int) -> None:
        parent[root(b)] = root(a)

    first_of_group: dict[str, int] = {}
    for index, group in enumerate(groups):
        if group:
            join(first_of_group.setdefault(group, index), index)
    for members in sets:
        for other in members[1:]:
            join(members[0], other)
    touched = {root(members[0]) for members in sets}
    component: dict[int, list[int]] = defaultdict(list)
    for index in range(len(ids)):
        component[root(index)].append(index)
    out = list(groups)
    for top in touched:
        members = component[top]
        named = sorted({groups[i] for i in members if groups[i]})
        name = "+".join(named) if named else f"{SAME_PIXELS}{ids[members[0]]}"
        for i in members:
            out[i] = name
    return out


def keep_together(splits: list[str], sets: list[list[int]]) -> list[str]:
    """Every frame of a picture in the split of its first frame (the split rule placed frames
    one by one)."""
    out = list(splits)
    for members in sets:
        for other in members[1:]:
            out[other] = out[members[0]]
    return out


def describe(ids: Sequence[str], sets: list[list[int]], labels: Sequence[str]) -> list[str]:
    """The import's notes: how many pictures appear more than once (and how many pairs that
    makes), a few of them by id, and any whose copies carry different classes."""
    if not sets:
        return []
    pairs = sum(len(m) * (len(m) - 1) // 2 for m in sets)
    shown = "; ".join(" = ".join(ids[i] for i in m) for m in sets[:4])
    notes = [f"{sum(map(len, sets))} frames have identical decoded pixels ({len(sets)} "
             f"picture{'s' if len(sets) != 1 else ''}, {pairs} pair{'s' if pairs != 1 else ''}): "
             f"{shown}"
             f"{'; ...' if len(sets) > 4 else ''}. Each picture's frames share one group, so "
             "no split or fold can train on one copy and test on the other."]
    mixed = [m for m in sets if len({labels[i] for i in m}) > 1]
    if mixed:
        notes.append("identical frames with different classes: " + "; ".join(
            ", ".join(f"{ids[i]} ({labels[i]})" for i in m) for m in mixed[:4]))
    return notes
