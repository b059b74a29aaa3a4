"""The report's charts below the answer, as inline SVG: every arm's headline and per-class
figures with their intervals, and the learning curve of a run that trained on shares of the
real data."""

from __future__ import annotations

import math

from polyp_core.experiment.svg import Row, Series, curve, forest
from polyp_core.experiment.verdict import figure
from polyp_core.tasks import task_of

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def class_chart(results: dict) -> str:
    """Each arm's headline figure and each class's score with its 95% interval over test
    groups and seeds, the arms of a class side by side (empty without intervals)."""
    task = task_of(results)
    label, path = task.HEADLINE
    class_label, key = task.CLASS_SCORE
    uncertainty = results.get("uncertainty", {})
    if not uncertainty:
        return ""
    classes = results.get("classes", []) if len(results.get("classes", [])) > 1 else []
    rows = []
    for arm, u in uncertainty.items():
        d = figure(u, path)
        if d is not None:
            rows.append(Row(arm, d["estimate"], d["low"], d["high"],
                            group=f"{label}, all classes" if classes else label))
    for cls in classes:
        for arm, u in uncertainty.items():
            d = u.get("per_class", {}).get(cls, {}).get(key)
            if d is not None:
                rows.append(Row(arm, d["estimate"], d["low"], d["high"],
                                group=f"{cls} {class_label}"))
    if not rows:
        return ""
    return forest(rows, f"{label} and per-class {class_label} of every arm, with 95% intervals "
                        "over test groups and seeds", reference=None, bounds=(0.0, 1.0),
                  signed_values=False, element_id="per-class")


def _share(arm: str) -> tuple[str, float] | None:
    """``augmented 25%`` -> (``augmented``, 0.25); None for an arm on all the real data."""
    base, _, share = arm.rpartition(" ")
    if not share.endswith("%"):
        return None
    try:
        return base, float(share[:-1]) / 100
    except ValueError:
        return None


def learning_curve(results: dict) -> str:
    """The headline figure against the share of real training groups, a line and a band per
    arm (the arm on all the real data at 100%); empty for a run without shares."""
    label, path = task_of(results).HEADLINE
    uncertainty = results.get("uncertainty", {})
    points: dict[str, list] = {}
    for arm, u in uncertainty.items():
        found = _share(arm)
        base, share = found if found else (arm, 1.0)
        d = figure(u, path)
        if d is not None and math.isfinite(d["estimate"]):
            points.setdefault(base, []).append((share, d["estimate"], d["low"], d["high"]))
    if not any(_share(arm) for arm in uncertainty):
        return ""
    series = [Series(base, p, COLOURS[k % len(COLOURS)])
              for k, (base, p) in enumerate(points.items()) if len(p) > 1]
    return curve(series, f"{label} by share of the real training groups (bands: 95% intervals)",
                 "share of the real training groups", label, element_id="learning-curve")
