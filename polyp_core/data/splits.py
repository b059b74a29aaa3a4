"""Train/valid/test splits: stratified by class, grouped so one lesion never crosses splits."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

SPLITS = ("train", "valid", "test")
SPLIT_METHODS = ("auto", "stratified", "grouped", "files")


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    arr = np.asarray(fractions, dtype=float)
    if arr.shape != (3,) or (arr < 0).any() or not np.isclose(arr.sum(), 1.0):
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1 "
                         f"(train, valid, test); got {tuple(fractions)}")
    return arr


def _counts(n: int, fractions: np.ndarray) -> list[int]:
    """Largest-remainder rounding, then make sure valid/test get one item when n allows."""
    raw = fractions * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in (1, 2):
        if fractions[i] > 0 and counts[i] == 0 and n >= 3 and counts[0] > 1:
            counts[i] += 1
            counts[0] -= 1
    return counts.tolist()


def stratified_split(labels: Sequence[str], fractions: Sequence[float] = (0.7, 0.1, 0.2),
                     seed: int = 0) -> list[str]:
    """Assign each item to a split so every class keeps the same proportions.

    Args:
        labels: the class of each item (the finest labels available).
        fractions: train, valid, test.
        seed: the same seed and labels always give the same split.

    Returns:
        the split name of each item, in input order.
    """
    fr = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    out = [""] * len(labels)
    by_class: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        by_class[label].append(index)
    for label in sorted(by_class):
        indices = np.array(by_class[label])
        rng.shuffle(indices)
        start = 0
        for split, count in zip(SPLITS, _counts(len(indices), fr)):
            for index in indices[start:start + count]:
                out[index] = split
            start += count
    return out


def grouped_split(labels: Sequence[str], groups: Sequence[str],
                  fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0) -> list[str]:
    """Like :func:`stratified_split`, but all items of a group land in one split.

    Groups (patient, lesion, video) are stratified by their majority class and assigned,
    largest first, to the split furthest below its target number of images.
    """
    fr = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = defaultdict(list)
    for index, group in enumerate(groups):
        members[group].append(index)
    group_class = {g: Counter(labels[i] for i in idx).most_common(1)[0][0]
                   for g, idx in members.items()}
    out = [""] * len(labels)
    for label in sorted(set(group_class.values())):
        names = sorted(g for g, c in group_class.items() if c == label)
        rng.shuffle(names)
        names.sort(key=lambda g: -len(members[g]))  # stable: ties keep the seeded order
        total = sum(len(members[g]) for g in names)
        targets = fr * total
        filled = np.zeros(3)
        # each split that should have items gets one group first, when there are enough
        order = [s for s in range(3) if fr[s] > 0]
        for position, group in enumerate(names):
            if position < len(order) and len(names) >= len(order):
                choice = [0, 2, 1][position] if len(order) == 3 else order[position]
            else:
                choice = int(np.argmax(targets - filled))
            filled[choice] += len(members[group])
            for index in members[group]:
                out[index] = SPLITS[choice]
    return out
