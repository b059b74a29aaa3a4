"""The answer first: a run's question, its verdict in one sentence and the rows of its forest
plot, built from the stored figures alone (the report, the Retrain tab and ``show-run`` print
the same words).

The verdict reads the first comparison with real data (augmented − baseline where it ran): the
paired difference of the task's headline figure with its interval over test groups and seeds,
what that interval says (above zero, below zero, across zero), the smallest change the design
could detect, and whether any class fell beyond noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from polyp_core.experiment.design import minimal_detectable_change
from polyp_core.experiment.svg import Row, forest, magnitude, signed
from polyp_core.tasks import AUGMENTED, EXPERT, GATED, PAIRS, PROBE, SYNTHETIC, task_of

#: a design whose smallest detectable change of the headline figure is at least this cannot
#: detect any change a synthetic set could plausibly make
TOO_SMALL = 0.25
#: 80% power at a two-sided 5% level: the smallest detectable change is about 2.8 standard
#: errors of the paired difference; a 95% interval spans 2 x 1.96 of them
POWER_FACTOR, Z95 = 2.8, 1.959964


@dataclass(frozen=True)
class Comparison:
    """One paired difference of a run: ``arm − against`` (its stored cluster-bootstrap dict)."""

    arm: str
    against: str
    delta: dict

    @property
    def name(self) -> str:
        return f"{self.arm} − {self.against}"


def comparisons(results: dict) -> list[Comparison]:
    """Every arm against its real-data arm (``versus_real``), then the filters' own comparisons
    (gated − augmented, expert − augmented); runs stored before ``versus_real``: the pairs they
    stored."""
    out = [Comparison(arm, d["against"], d) for arm, d in results.get("versus_real", {}).items()]
    seen = {(c.arm, c.against) for c in out}
    for key, arm, other in PAIRS:
        if f"{key}_cluster" in results and (arm, other) not in seen:
            out.append(Comparison(arm, other, results[f"{key}_cluster"]))
    return out


def figure(node: dict, path: tuple[str, ...]) -> dict | None:
    """The ``{estimate, low, high, p}`` at ``path`` in ``node``; a run stored before scores at
    the mask's own size falls back to the working size's (the path's last key)."""
    for candidate in (path, path[-1:]):
        found: Any = node
        try:
            for key in candidate:
                found = found[key]
        except (KeyError, TypeError):
            continue
        return found
    return None


def _classes(results: dict) -> list[str]:
    return list(results.get("classes", [])) if len(results.get("classes", [])) > 1 else []


def forest_rows(results: dict) -> list[Row]:
    """Per comparison: the headline figure, then the class score of every class."""
    task = task_of(results)
    label, path = task.HEADLINE
    class_label, key = task.CLASS_SCORE
    rows = []
    for c in comparisons(results):
        d = figure(c.delta, path)
        if d is not None:
            rows.append(Row(f"{label}, all classes" if _classes(results) else label,
                            d["estimate"], d["low"], d["high"], _p(d), c.name))
        for cls in _classes(results):
            d = c.delta.get("per_class", {}).get(cls, {}).get(key)
            if d is not None:
                rows.append(Row(f"{cls} {class_label}", d["estimate"], d["low"], d["high"],
                                _p(d), c.name))
    return rows


def forest_svg(results: dict) -> str:
    """The forest plot of every paired difference (empty when the run compared nothing)."""
    rows = forest_rows(results)
    if not rows:
        return ""
    return forest(rows, "Paired differences against real data, with 95% intervals over test "
                        "groups and seeds (right of the dashed line: better)")


def _p(d: dict) -> str:
    p = d.get("p")
    if p is None or not math.isfinite(p):
        return ""
    return "p < 0.001" if p < 0.001 else f"p {p:.2g}"


def detectable_change(results: dict, delta: dict | None) -> float | None:
    """The smallest change of the headline figure the design could detect at 80% power: from
    the design's groups per class where the task estimates it (macro-F1), else from the paired
    difference's own interval (2.8 standard errors)."""
    task = task_of(results)
    design = results.get("test_groups")
    if task.DETECTABLE_CHANGE and design:
        return minimal_detectable_change(design["table"][design.get("pooled", "test")])
    if delta is None or not (math.isfinite(delta["low"]) and math.isfinite(delta["high"])):
        return None
    return POWER_FACTOR * (delta["high"] - delta["low"]) / (2 * Z95)


def class_falls(results: dict, delta: dict) -> list[str]:
    """Each class score that fell with its whole interval below zero, in words."""
    falls = []
    for cls in _classes(results):
        for score in task_of(results).REGRESSION_SCORES:
            d = delta.get("per_class", {}).get(cls, {}).get(score)
            if d is not None and d["high"] < 0:
                name = "F1" if score == "f1" else score.capitalize() if score == "dice" else score
                falls.append(f"{cls} {name} fell by {magnitude(d['estimate'])} "
                             f"[{signed(d['low'])}, {signed(d['high'])}]")
    return falls


def _images(results: dict, arm: str) -> str:
    """What the arm added: ``36 demo-ddpm images`` on a fixed split, ``30–36 demo-ddpm images
    per fold`` in cross-validation (the gated arm: what the gate kept)."""
    selection = results.get("selection", {})
    generators = [g["generator"] for g in selection.get("generators", [])]
    made = " and ".join(generators) if generators else "synthetic"
    base = arm.partition(" ")[0]
    # a gate without a gated arm filtered the augmented arm itself (min_gate_iou)
    in_place = bool(results.get("gate")) and GATED not in results.get("arms", {})
    if results.get("gate") and (base == GATED or (base == AUGMENTED and in_place)):
        kept = [g["kept"] for g in results["gate"]]
    elif selection.get("per_fold"):
        kept = [sum(f["selected"].values()) for f in selection["per_fold"]]
    else:
        kept = [sum(selection.get("counts", {}).get("selected", {}).values())]
    if not any(kept):
        return f"{made} images"
    count = str(kept[0]) if min(kept) == max(kept) else f"{min(kept)}–{max(kept)}"
    return f"{count} {made} images" + (" per fold" if len(kept) > 1 else "")


def _subject(results: dict, c: Comparison) -> str:
    base, _, share = c.arm.partition(" ")
    if c.arm.startswith(PROBE):
        return "For the linear probe, adding the synthetic images"
    if c.against == AUGMENTED:
        return ("Keeping only the images the gate passed (instead of all selected)"
                if base == GATED else
                "Keeping only the images the experts rated well (instead of all selected)")
    images = _images(results, c.arm)
    if base == SYNTHETIC:
        return f"Training on {images} alone instead of the real images"
    where = f" to {share} of the real training groups" if share else ""
    if base == GATED or (base == AUGMENTED and results.get("gate")
                         and GATED not in results.get("arms", {})):
        return f"Adding the gate's {images}{where}"
    if base == EXPERT:
        return f"Adding the experts' {images}{where}"
    return f"Adding {images}{where}"


def question(results: dict, config: dict | None = None) -> str:
    """What the run asks, in words."""
    task = task_of(results)
    label = task.HEADLINE[0]
    dataset = (config or {}).get("dataset")
    where = f" on data set {dataset}" if dataset else ""
    if not comparisons(results):
        return f"How well does a model trained on real images alone score{where} ({label})?"
    return f"Did the synthetic images help{where}? (paired change in {label} against real data)"


def verdict(results: dict) -> str:
    """One sentence from the figures: the first comparison's paired change of the headline
    figure with its interval and p, what it means for this design, and any class that fell."""
    task = task_of(results)
    label, path = task.HEADLINE
    found = comparisons(results)
    if not found:
        arm = next(iter(results["arms"]))
        d = figure(results.get("uncertainty", {}).get(arm, {}), path)
        if d is None:
            return f"Only the {arm} arm ran; nothing was compared."
        return (f"Only the {arm} arm ran: {label} {d['estimate']:.3f} [{d['low']:.3f}, "
                f"{d['high']:.3f}] over {d.get('groups', '?')} test groups; nothing was "
                "compared, so this run says nothing about synthetic images.")
    c = found[0]
    d = figure(c.delta, path)
    if d is None:
        return f"{c.name}: no {label} was stored."
    change = (f"changed {label} by {signed(d['estimate'])} [{signed(d['low'])}, "
              f"{signed(d['high'])}]" + (f" ({_p(d)})" if _p(d) else ""))
    smallest = detectable_change(results, d)
    if d["low"] > 0:
        judged = "an improvement beyond noise"
    elif d["high"] < 0:
        judged = "a loss beyond noise"
    elif d["estimate"] == d["low"] == d["high"] == 0:
        judged = "no change at all: both arms scored every test image alike"
    elif smallest is not None and smallest >= TOO_SMALL:
        judged = (f"this run is too small to detect anything (the smallest change its test "
                  f"part could show is {smallest:.2f})")
    elif smallest is not None:
        judged = f"no effect this design can detect (smallest detectable change {smallest:.2f})"
    else:
        judged = "no effect this design can detect"
    falls = class_falls(results, c.delta)
    tail = "; ".join(falls) if falls else ("no class fell" if _classes(results) else "")
    return f"{_subject(results, c)} {change}: {judged}" + (f"; {tail}" if tail else "") + "."


def regression_flags(results: dict) -> list[str]:
    """Every comparison's class (or overall) score that fell with its interval below zero."""
    flags = []
    label, path = task_of(results).HEADLINE
    for c in comparisons(results):
        d = figure(c.delta, path)
        if d is not None and d["high"] < 0:
            flags.append(f"{c.name}: {label} fell by {magnitude(d['estimate'])} [{signed(d['low'])}, "
                         f"{signed(d['high'])}]")
        flags += [f"{c.name}: {fall}" for fall in class_falls(results, c.delta)]
    return flags

