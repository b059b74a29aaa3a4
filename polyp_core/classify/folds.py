"""Which real images each fold of an experiment trains on, stops on and is tested on.

An experiment is a list of :class:`Fold`: the fixed split is one fold (the manifest's
train/valid/test); grouped K-fold cross-validation is K folds over the data set's groups
(patient/lesion/video, or each image alone when the data set names none), stratified by class:
fold ``f`` is tested on part ``f``, stops early on part ``f + 1`` (mod K) and trains on the
rest, so every tested group is tested once and never trains or stops the model that tests it.

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
    pick = lambda name: tuple(i for i, s in enumerate(splits) if s == name)  # noqa: E731
    return [Fold("split", pick("train"), pick("valid"), pick("test"))]


def grouped_folds(labels: Sequence[int], groups: Sequence[str], k: int, seed: int = 0,
                  train_only: Sequence[int] = (), classes: Sequence[str] = ()) -> list[Fold]:
    """K folds stratified by class and grouped (no group in two parts); the images in
    ``train_only`` are never validated or tested on and train in every fold.

    Raises:
        ValueError: fewer than ``k`` groups of some class among the images to be tested.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if k < 3:
        raise ValueError(f"--folds: {k} folds cannot give every fold a training, a validation "
                         "and a test part; use 3 or more (or 0 for the fixed split)")
    fixed = set(train_only)
    rotating = np.asarray([i for i in range(len(labels)) if i not in fixed], dtype=int)
    y = np.asarray(labels)[rotating]
    g = np.asarray([str(x) for x in groups])[rotating]
    name = lambda c: classes[c] if c < len(classes) else str(c)  # noqa: E731
    present = sorted(set(np.asarray(labels).tolist()))
    short = {name(c): len(set(g[y == c])) for c in present if len(set(g[y == c])) < k}
    if len(rotating) == 0 or short:
        raise ValueError(f"--folds {k}: a class has fewer groups to test on than folds ("
                         + ", ".join(f"{c}: {n}" for c, n in short.items()) +
                         "); use fewer folds or the fixed split")
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    parts = [tuple(sorted(int(i) for i in rotating[test]))
             for _, test in splitter.split(np.zeros(len(y)), y, g)]
    folds = []
    for f in range(k):
        valid = parts[(f + 1) % k]
        train = tuple(sorted(fixed | {i for p, part in enumerate(parts)
                                      if p not in (f, (f + 1) % k) for i in part}))
        folds.append(Fold(f"fold {f + 1}", train, valid, parts[f]))
    return folds


def groups_seen(trained_on: dict[str, set[str]], group_of_sha: dict[str, str]) -> dict[str, set[str]]:
    """The groups of this data set each generator learned from (by its recorded images)."""
    return {gen: {group_of_sha[s] for s in shas if s in group_of_sha}
            for gen, shas in trained_on.items()}


def fold_leaks(folds: Sequence[Fold], generators_of_fold: Sequence[set[str]],
               seen: dict[str, set[str]], group_of: Sequence[str]) -> list[str]:
    """For every fold, the generators feeding it that learned from a group of its validation or
    test part, naming the groups (at most 5, then a count)."""
    problems = []
    for fold, generators in zip(folds, generators_of_fold):
        held = {group_of[i] for i in fold.valid + fold.test}
        for generator in sorted(generators):
            shared = sorted(seen.get(generator, set()) & held)
            if shared:
                named = ", ".join(shared[:5]) + (f" and {len(shared) - 5} more"
                                                 if len(shared) > 5 else "")
                problems.append(f"{fold.name}: {generator} learned from {len(shared)} group(s) "
                                f"of its validation/test part ({named})")
    return problems
