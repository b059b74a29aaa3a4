"""Which real images each fold of an experiment trains on, stops on and is tested on.

An experiment is a list of :class:`Fold`: the fixed split is one fold (the manifest's
train/valid/test); grouped K-fold cross-validation is K folds over the data set's groups
(patient/lesion/video, or each image alone when the data set names none), stratified by class:
fold ``f`` is tested on part ``f`` and its training part is everything else, so every tested
group is tested once and never trains or stops the model that tests it. Networks that stop
early carve an inner validation split out of the training part (:func:`inner_split`: about 15 %
of its groups, at least 2 of each class, grouped and stratified like the folds); the linear
probe and fixed-epoch arms learn from the whole training part. On small grouped sets this
matters: keeping a whole fold for early stopping (as the studio did before) trains each model
on K-2 of K parts, a third of the data with 3 folds.

:func:`choose_folds` picks K for ``--folds auto``: the largest K up to 10 for which every class
has at least 3 groups in every test fold.

Generators are checked per fold: a generator whose recorded training images share a group
with a fold's validation or test part must not feed that fold. The refusal names the
generator, the fold and the groups. ``seen_train`` (the groups some generator learned from)
keeps those groups in every fold's training part, so only groups no generator saw are tested.
Per-fold generators (one trained on each fold's training part) would add an entry to
``generators_of_fold`` and pass the same check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Fold:
    """Indices into the experiment's real images."""

    name: str
    train: tuple[int, ...]
    valid: tuple[int, ...]
    test: tuple[int, ...]
    extra: dict = field(default_factory=dict)


def fixed_folds(splits: Sequence[str]) -> list[Fold]:
    """The manifest's split as the experiment's single fold."""
    def pick(name: str) -> tuple[int, ...]:
        return tuple(i for i, s in enumerate(splits) if s == name)
    return [Fold("split", pick("train"), pick("valid"), pick("test"))]


MAX_AUTO_FOLDS = 10
INNER_VALID = 0.15  # share of a fold's training groups kept for early stopping
MIN_INNER_GROUPS = 2  # of each class in the inner validation split


def _parts(labels: np.ndarray, groups: np.ndarray, rotating: np.ndarray, k: int,
           seed: int) -> list[tuple[int, ...]]:
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return [tuple(sorted(int(i) for i in rotating[test]))
            for _, test in splitter.split(np.zeros(len(rotating)), labels[rotating],
                                          groups[rotating])]


def _rotating(n: int, train_only: Sequence[int]) -> np.ndarray:
    fixed = set(train_only)
    return np.asarray([i for i in range(n) if i not in fixed], dtype=int)


def groups_per_part(parts: Sequence[Sequence[int]], labels: Sequence[int],
                    groups: Sequence[str]) -> list[dict[int, int]]:
    """For every test part, how many groups of each class it holds."""
    out = []
    for part in parts:
        seen: dict[int, set] = {}
        for i in part:
            seen.setdefault(int(labels[i]), set()).add(str(groups[i]))
        out.append({c: len(g) for c, g in seen.items()})
    return out


def choose_folds(labels: Sequence[int], groups: Sequence[str], seed: int = 0,
                 train_only: Sequence[int] = (), min_groups: int = 3,
                 max_k: int = MAX_AUTO_FOLDS) -> int | None:
    """The largest K (2 to ``max_k``) whose folds hold at least ``min_groups`` groups of every
    class in every test part (as dealt with ``seed``); None when no K does."""
    y, g = np.asarray(labels), np.asarray([str(x) for x in groups])
    rotating = _rotating(len(y), train_only)
    present = sorted(set(y[rotating].tolist()))
    if len(rotating) == 0:
        return None
    most = min(len(set(g[rotating][y[rotating] == c])) for c in present) // min_groups
    for k in range(min(max_k, most), 1, -1):
        counts = groups_per_part(_parts(y, g, rotating, k, seed), y, g)
        if all(part.get(c, 0) >= min_groups for part in counts for c in present):
            return k
    return None


def inner_split(indices: Sequence[int], labels: Sequence[int], groups: Sequence[str],
                share: float = INNER_VALID, seed: int = 0,
                min_groups: int = MIN_INNER_GROUPS) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``indices`` (a fold's training part) as ``(train, inner validation)``: about ``share``
    of each class's groups (at least ``min_groups``, and never all of them) go to validation,
    drawn with ``seed``; a group counts for the class most of its images have."""
    y, g = np.asarray(labels), np.asarray([str(x) for x in groups])
    members: dict[str, list[int]] = {}
    for i in indices:
        members.setdefault(g[i], []).append(int(i))
    by_class: dict[int, list[str]] = {}
    for group, rows in sorted(members.items()):
        majority = int(np.bincount(y[rows]).argmax())
        by_class.setdefault(majority, []).append(group)
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for c in sorted(by_class):
        names = by_class[c]
        n = min(len(names) - 1, max(min_groups, round(share * len(names))))
        held |= {names[j] for j in rng.permutation(len(names))[:max(n, 0)]}
    valid = tuple(sorted(i for group in held for i in members[group]))
    train = tuple(sorted(int(i) for i in indices if g[i] not in held))
    return train, valid


def grouped_folds(labels: Sequence[int], groups: Sequence[str], k: int, seed: int = 0,
                  train_only: Sequence[int] = (), classes: Sequence[str] = (),
                  inner_valid: float = INNER_VALID) -> list[Fold]:
    """K folds stratified by class and grouped (no group in two parts); the images in
    ``train_only`` are never validated or tested on and train in every fold. Each fold's
    training part is everything but its test part; with ``inner_valid`` > 0 an inner
    validation split of that share of its groups (:func:`inner_split`, from the groups that
    rotate) is set apart for early stopping, with 0 there is none (fixed-epoch training).

    Raises:
        ValueError: fewer than ``k`` groups of some class among the images to be tested.
    """
    if k < 2:
        raise ValueError(f"folds: {k} fold(s) cannot test every image on a model that did not "
                         "learn from it; use 2 or more (or 0 for the fixed split)")
    fixed = set(train_only)
    rotating = _rotating(len(labels), train_only)
    y = np.asarray(labels)
    g = np.asarray([str(x) for x in groups])
    def name(c: int) -> str:
        return classes[c] if c < len(classes) else str(c)
    present = sorted(set(y.tolist()))
    short = {name(c): len(set(g[rotating][y[rotating] == c])) for c in present
             if len(set(g[rotating][y[rotating] == c])) < k}
    if len(rotating) == 0 or short:
        raise ValueError(f"folds {k}: a class has fewer groups to test on than folds ("
                         + ", ".join(f"{c}: {n}" for c, n in short.items()) +
                         "); use fewer folds or the fixed split")
    parts = _parts(y, g, rotating, k, seed)
    folds = []
    for f in range(k):
        rest = [i for p, part in enumerate(parts) if p != f for i in part]
        valid: tuple[int, ...] = ()
        if inner_valid > 0:
            rest_train, valid = inner_split(rest, y, g, inner_valid, seed + f)
            rest = list(rest_train)
        folds.append(Fold(f"fold {f + 1}", tuple(sorted(fixed | set(rest))), valid, parts[f]))
    return folds


def inner_folds(indices: Sequence[int], labels: Sequence[int], groups: Sequence[str],
                k: int = 3, seed: int = 0) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Grouped, stratified inner K-fold CV over ``indices`` (a fold's training part): the
    ``(train, validation)`` pairs from which ``--refit`` chooses the epoch count."""
    y, g = np.asarray(labels), np.asarray([str(x) for x in groups])
    idx = np.asarray(list(indices), dtype=int)
    k = max(2, min(k, min(len(set(g[idx][y[idx] == c])) for c in set(y[idx].tolist()))))
    parts = _parts(y, g, idx, k, seed)
    return [(tuple(sorted(i for q, part in enumerate(parts) if q != p for i in part)), part)
            for p, part in enumerate(parts)]


def groups_seen(trained_on: dict[str, set[str]], group_of_sha: dict[str, str]) -> dict[str,
                set[str]]:
    """The groups of this data set each generator learned from (by its recorded images)."""
    return {gen: {group_of_sha[s] for s in shas if s in group_of_sha}
            for gen, shas in trained_on.items()}


def fold_leaks(folds: Sequence[Fold], generators_of_fold: Sequence[set[str]],
               seen: dict[str, set[str]], group_of: Sequence[str],
               names: Sequence[str] | None = None) -> list[str]:
    """For every fold, the generators feeding it that learned from a group of its validation or
    test part, naming the groups (at most 5, then a count) and, with ``names`` (each image as
    ``dataset:id``), the held-out images of each with their part."""
    problems = []
    for fold, generators in zip(folds, generators_of_fold):
        held = {group_of[i] for i in fold.valid + fold.test}
        parts = [(i, part) for part in ("valid", "test") for i in getattr(fold, part)]

        def shown(group: str) -> str:
            if names is None:
                return group
            images = [f"{names[i]} ({part})" for i, part in parts if group_of[i] == group]
            return f"{group}: {', '.join(images[:3])}{', ...' if len(images) > 3 else ''}"

        for generator in sorted(generators):
            shared = sorted(seen.get(generator, set()) & held)
            if shared:
                named = "; ".join(map(shown, shared[:5])) + (f" and {len(shared) - 5} more"
                                                            if len(shared) > 5 else "")
                problems.append(f"{fold.name}: {generator} learned from {len(shared)} group(s) "
                                f"of its validation/test part ({named})")
    return problems
