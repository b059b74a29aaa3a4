"""The design table of an experiment (groups and images per class in every part of every fold)
and its checks: too few test groups of a class refused, few warned, and the smallest change the
test part can show."""

from __future__ import annotations

import math
from collections.abc import Sequence

from polyp_core.experiment.folds import Fold


def design_table(folds: list[Fold], labels: list[str], group_of: list[str], classes: Sequence[str],
                 grouped: bool) -> dict:
    """The independent units of every part of every fold: groups (patient/lesion/video) and
    images per class, and each tested image's group in the order of the pooled predictions
    (its own id when the data set knows no groups: then every frame counts as independent,
    which the report says)."""
    def count(indices: Sequence[int]) -> dict:
        return {c: {"images": sum(labels[i] == c for i in indices),
                    "groups": len({group_of[i] for i in indices if labels[i] == c})}
                for c in classes}

    single = len(folds) == 1
    table, test_rows = {}, []
    for fold in folds:
        for part in ("train", "valid", "test"):
            if not single and part == "valid" and not fold.valid:
                continue  # no inner validation (fixed epochs or --refit)
            row = part if single else f"{fold.name} {'inner valid' if part == 'valid' else part}"
            table[row] = count(getattr(fold, part))
        test_rows.append("test" if single else f"{fold.name} test")
    tested = [i for fold in folds for i in fold.test]
    if not single:
        table["tested (pooled)"] = count(tested)
    return {"unit": "group (patient/lesion/video)" if grouped else
            "image (the data set names no groups: frames are treated as independent)",
            "grouped": grouped, "table": table, "test_rows": test_rows,
            "pooled": "test" if single else "tested (pooled)",
            "of_image": [group_of[i] for i in tested]}

MIN_TEST_GROUPS = 3  # fewer: refused unless allowed; auto folds keep this many in every test fold

FEW_TEST_GROUPS = 5  # fewer: a warning beside the numbers


def check_design(design: dict, allow_small: bool = False, rests_on: str = "its recall and F1",
                 detectable_change: bool = True) -> list[str]:
    """Refuse a test split with fewer than 3 groups of a class (unless ``allow_small``); warn
    under 5 (a class's ``rests_on`` rests on them); and (``detectable_change``) estimate the
    smallest macro-F1 change the test split can show.

    Raises:
        ValueError: naming the classes, their groups and how to override.
    """
    unit = "groups" if design["grouped"] else "images"
    rows = design.get("test_rows", ["test"])
    small = {}
    for row in rows:
        prefix = "" if row == "test" else row.removesuffix(" test") + ": "
        for c, v in design["table"][row].items():
            if v["groups"] < MIN_TEST_GROUPS:
                small[f"{prefix}{c}"] = v["groups"]
    where = "the test split holds" if rows == ["test"] else "a test fold holds"
    if small and not allow_small:
        raise ValueError(f"{where} too few independent " + unit + " to measure a "
                         "class: " + ", ".join(f"{c} {n}" for c, n in small.items()) +
                         f" (at least {MIN_TEST_GROUPS}); resplit with more groups in test, use "
                         "fewer folds, or run anyway with `allow_small_test` (the report says so)")
    warnings = _grouped(design, unit, rests_on)
    if small:
        warnings.insert(0, "ran with `allow_small_test`: " + _too_few(design, unit))
    pooled = design["table"][design.get("pooled", "test")]
    what = "this test split" if rows == ["test"] else "the pooled out-of-fold predictions"
    if not detectable_change:
        return warnings
    warnings.append(f"smallest macro-F1 change {what} can show (rough, 80% power, unpaired "
                    f"worst case): {minimal_detectable_change(pooled):.2f}")
    return warnings


def _counts(design: dict) -> dict[str, list[int]]:
    """Each class's test groups in every test fold (one entry on a fixed split)."""
    rows = design.get("test_rows", ["test"])
    return {c: [design["table"][row][c]["groups"] for row in rows]
            for c in design["table"][rows[0]]}


def _spread(values: list[int]) -> str:
    return str(values[0]) if min(values) == max(values) else f"{min(values)}–{max(values)}"


def _grouped(design: dict, unit: str, rests_on: str) -> list[str]:
    """One line per class with few test groups, across folds: ``HP: 3–4 test groups in each of
    10 folds; its recall and F1 rest on them`` (a fixed split: ``HP: only 3 test groups``)."""
    lines = []
    for c, counts in _counts(design).items():
        few = [n for n in counts if n < FEW_TEST_GROUPS]
        if not few:
            continue
        if len(counts) == 1:
            where = f"only {few[0]} test {unit}"
        elif len(few) == len(counts):
            where = f"{_spread(few)} test {unit} in each of {len(counts)} folds"
        else:
            where = f"{_spread(few)} test {unit} in {len(few)} of {len(counts)} folds"
        lines.append(f"{c}: {where}; {rests_on} rest on them")
    return lines


def _too_few(design: dict, unit: str) -> str:
    """The classes (and in how many folds) with fewer than ``MIN_TEST_GROUPS`` test groups."""
    parts = []
    for c, counts in _counts(design).items():
        hit = [n for n in counts if n < MIN_TEST_GROUPS]
        if hit:
            parts.append(f"{c} ({_spread(hit)} test {unit}" +
                         (f" in {len(hit)} of {len(counts)} folds)" if len(counts) > 1 else ")"))
    return f"fewer than {MIN_TEST_GROUPS} test {unit}: " + ", ".join(parts)


def minimal_detectable_change(test: dict) -> float:
    """A rough guide: with ``g_c`` independent units of class ``c``, a class's recall has a
    standard error of at most ``sqrt(0.25 / g_c)``; macro-F1 averages K classes; detecting a
    change between two arms at 5% with 80% power needs about 2.8 x sqrt(2) standard errors."""
    k = max(1, len(test))
    se = math.sqrt(sum(0.25 / max(v["groups"], 1) for v in test.values())) / k
    return 2.8 * math.sqrt(2) * se


def validation_words(inner: float, refit: bool, linear_probe: bool = True) -> str:
    """How the networks (and, where the task has one, the linear probe) use a fold's training
    part."""
    if refit:
        networks = ("networks: epoch count chosen by inner grouped 3-fold CV within each fold's "
                    "training part, then trained on the whole training part")
        probe = "the whole training part"
    elif inner > 0:
        networks = (f"networks: early stopping on an inner validation split ({inner:.0%} of each "
                    "fold's training groups, at least 2 of each class, grouped and stratified), "
                    "trained on the rest")
        probe = "the whole training part"
    else:
        networks = "networks: fixed epochs on the whole training part (no validation)"
        probe = "the same"
    return f"{networks}; linear probe: {probe}" if linear_probe else networks
