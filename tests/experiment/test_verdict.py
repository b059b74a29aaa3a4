"""The report's answer on constructed runs: the verdict's wording for an interval above zero,
one across zero, one below, a class that fell, and a run too small to detect anything; the
smallest detectable change worked by hand; the forest plot's rows; design warnings grouped
across folds; every arm's real-data counterpart."""

from __future__ import annotations

import math

import pytest

from polyp_core.experiment.design import check_design
from polyp_core.experiment.verdict import (detectable_change, forest_rows, forest_svg, question,
                                           regression_flags, verdict)
from polyp_core.tasks import real_counterpart

CLASSES = ("AD", "SSA", "HP")


def ci(estimate, low, high, p=None):
    return {"estimate": estimate, "low": low, "high": high} | ({"p": p} if p is not None else {})


def classification(macro, falls=None, groups=(100, 40, 40)):
    """A fixed-split classification run with 36 demo-ddpm images, its paired macro-F1 change
    ``macro`` (estimate, low, high, p), every class unchanged but ``falls`` (class -> its recall
    and F1 changes)."""
    unchanged = ci(0.01, -0.05, 0.07, 0.7)
    per_class = {c: {"precision": unchanged, "recall": unchanged, "f1": unchanged}
                 for c in CLASSES}
    for c, (recall, f1) in (falls or {}).items():
        per_class[c] = {"precision": unchanged, "recall": ci(*recall), "f1": ci(*f1)}
    delta = {"macro_f1": ci(*macro), "balanced_accuracy": ci(*macro), "per_class": per_class,
             "groups": sum(groups), "seeds": 3}
    arm = {"macro_f1": ci(0.6, 0.5, 0.7), "per_class": {c: {"f1": ci(0.5, 0.4, 0.6)}
                                                        for c in CLASSES}}
    return {"classes": list(CLASSES), "scheme": "three_class", "evaluation": {"kind": "fixed split"},
            "arms": {"baseline": {}, "augmented": {}},
            "uncertainty": {"baseline": arm, "augmented": arm},
            "test_groups": {"grouped": True, "test_rows": ["test"], "pooled": "test",
                            "table": {"test": {c: {"images": 2 * g, "groups": g}
                                               for c, g in zip(CLASSES, groups)}}},
            "delta_cluster": delta, "versus_real": {"augmented": {"against": "baseline"} | delta},
            "selection": {"counts": {"selected": {"AD": 12, "SSA": 12, "HP": 12}},
                          "generators": [{"generator": "demo-ddpm", "images": 36}]}}


def test_an_interval_above_zero_is_an_improvement():
    run = classification((0.05, 0.012, 0.091, 0.01))
    assert verdict(run) == ("Adding 36 demo-ddpm images changed macro-F1 by +0.050 [+0.012, "
                            "+0.091] (p 0.01): an improvement beyond noise; no class fell.")
    assert regression_flags(run) == []


def test_an_interval_across_zero_says_what_the_design_could_detect():
    # groups 100/40/40: se = sqrt(0.25/100 + 0.25/40 + 0.25/40) / 3 = 0.0408248;
    # 2.8 * sqrt(2) * se = 0.16166
    run = classification((0.023, -0.017, 0.074, 0.33))
    assert detectable_change(run, run["delta_cluster"]["macro_f1"]) == pytest.approx(0.161658,
                                                                                   abs=1e-5)
    assert verdict(run) == ("Adding 36 demo-ddpm images changed macro-F1 by +0.023 [−0.017, "
                            "+0.074] (p 0.33): no effect this design can detect (smallest "
                            "detectable change 0.16); no class fell.")


def test_an_interval_below_zero_is_a_loss():
    run = classification((-0.06, -0.1, -0.02, 0.004))
    assert verdict(run).endswith("by −0.060 [−0.100, −0.020] (p 0.004): a loss beyond noise; "
                                 "no class fell.")
    assert regression_flags(run) == ["augmented − baseline: macro-F1 fell by 0.060 [−0.100, "
                                     "−0.020]"]


def test_a_class_that_fell_is_named_even_when_the_average_did_not_move():
    """The thesis's case: SSA wiped out while macro-F1 barely moved."""
    run = classification((-0.02, -0.07, 0.03, 0.45),
                         falls={"SSA": ((-0.4, -0.55, -0.22, 0.001), (-0.49, -0.62, -0.31, 0.001))})
    assert verdict(run) == (
        "Adding 36 demo-ddpm images changed macro-F1 by −0.020 [−0.070, +0.030] (p 0.45): no "
        "effect this design can detect (smallest detectable change 0.16); SSA recall fell by "
        "0.400 [−0.550, −0.220]; SSA F1 fell by 0.490 [−0.620, −0.310].")
    assert regression_flags(run) == [
        "augmented − baseline: SSA recall fell by 0.400 [−0.550, −0.220]",
        "augmented − baseline: SSA F1 fell by 0.490 [−0.620, −0.310]"]


def test_a_run_too_small_to_detect_anything_says_so():
    # groups 40/10/10: sqrt(0.25/40 + 0.25/10 + 0.25/10) / 3 * 2.8 * sqrt(2) = 0.31305
    run = classification((0.04, -0.08, 0.15, 0.52), groups=(40, 10, 10))
    assert verdict(run).endswith(": this run is too small to detect anything (the smallest "
                                 "change its test part could show is 0.31); no class fell.")
    # an interval that excludes zero is a finding however small the design
    run = classification((0.2, 0.05, 0.35, 0.01), groups=(40, 10, 10))
    assert "an improvement beyond noise" in verdict(run)


def test_cross_validation_counts_images_per_fold():
    run = classification((0.05, 0.012, 0.091, 0.01))
    run["selection"]["per_fold"] = [{"selected": {"AD": 10, "SSA": 10, "HP": 10}},
                                    {"selected": {"AD": 12, "SSA": 12, "HP": 12}}]
    assert verdict(run).startswith("Adding 30–36 demo-ddpm images per fold changed macro-F1")


def test_a_gate_counts_what_it_kept_whether_or_not_a_gated_arm_ran():
    run = classification((0.05, 0.012, 0.091, 0.01))
    run["gate"] = [{"fold": "split", "threshold": 0.7, "scored": 36, "kept": 7}]
    # no gated arm: the gate filtered the augmented arm itself
    assert verdict(run).startswith("Adding the gate's 7 demo-ddpm images changed macro-F1")
    run["arms"]["gated"] = {}  # beside a gated arm, the augmented arm holds every selected image
    assert verdict(run).startswith("Adding 36 demo-ddpm images changed macro-F1")


def segmentation(full, working=None):
    """A segmentation run whose paired Dice at the masks' own size is ``full``."""
    working = working or full
    delta = {"dice": ci(*working), "full": {"dice": ci(*full)}, "groups": 40, "seeds": 2}
    return {"task": "segmentation", "classes": ["LESION"], "scheme": "lesion",
            "arms": {"baseline": {}, "augmented": {}},
            "uncertainty": {"baseline": {"full": {"dice": ci(0.8, 0.77, 0.83)}}},
            "delta_cluster": delta, "versus_real": {"augmented": {"against": "baseline"} | delta},
            "selection": {"counts": {"selected": {"LESION": 100}},
                          "generators": [{"generator": "np-win-inpaint", "images": 100}]}}


def test_segmentation_reads_dice_at_the_masks_size_and_its_own_interval():
    # no design estimate for Dice: 2.8 standard errors of the paired difference, the 95%
    # interval spanning 2 x 1.959964 of them: 2.8 * 0.04 / 3.919928 = 0.02857
    run = segmentation((0.01, -0.01, 0.03, 0.3), working=(0.5, 0.4, 0.6, 0.001))
    assert detectable_change(run, run["delta_cluster"]["full"]["dice"]) == pytest.approx(
        0.028572, abs=1e-5)
    assert verdict(run) == ("Adding 100 np-win-inpaint images changed Dice by +0.010 [−0.010, "
                            "+0.030] (p 0.3): no effect this design can detect (smallest "
                            "detectable change 0.03).")  # one class: no per-class clause
    # a run stored before scores at the mask's size: the working size's
    del run["versus_real"]["augmented"]["full"], run["delta_cluster"]["full"]
    assert "by +0.500 [+0.400, +0.600] (p 0.001): an improvement" in verdict(run)


def test_a_run_with_one_arm_compares_nothing():
    run = segmentation((0.01, -0.01, 0.03, 0.3))
    run["arms"] = {"baseline": {}}
    run["uncertainty"]["baseline"]["full"]["dice"]["groups"] = 40
    del run["versus_real"], run["delta_cluster"]
    assert verdict(run) == ("Only the baseline arm ran: Dice 0.800 [0.770, 0.830] over 40 test "
                            "groups; nothing was compared, so this run says nothing about "
                            "synthetic images.")
    assert question(run, {"dataset": "neo"}).startswith("How well does a model trained on real")
    assert forest_rows(run) == [] and forest_svg(run) == ""


def test_the_forest_holds_every_arm_against_real_then_the_filters():
    run = classification((0.05, 0.012, 0.091, 0.01))
    probe = {"against": "linear probe", "macro_f1": ci(-0.03, -0.08, -0.01, 0.02),
             "per_class": run["delta_cluster"]["per_class"]}
    run["versus_real"]["linear probe + synthetic"] = probe
    run["delta_gate_cluster"] = {"macro_f1": ci(0.0, -0.01, 0.01, 1.0), "per_class": {}}
    rows = forest_rows(run)
    assert [(r.group, r.label) for r in rows] == [
        ("augmented − baseline", "macro-F1, all classes"), ("augmented − baseline", "AD F1"),
        ("augmented − baseline", "SSA F1"), ("augmented − baseline", "HP F1"),
        ("linear probe + synthetic − linear probe", "macro-F1, all classes"),
        ("linear probe + synthetic − linear probe", "AD F1"),
        ("linear probe + synthetic − linear probe", "SSA F1"),
        ("linear probe + synthetic − linear probe", "HP F1"),
        ("gated − augmented", "macro-F1, all classes")]
    assert (rows[0].estimate, rows[0].low, rows[0].high, rows[0].note) == (0.05, 0.012, 0.091,
                                                                          "p 0.01")
    svg = forest_svg(run)
    assert svg.startswith("<svg id='forest'") and "<script" not in svg and "http" not in svg
    # above zero green, below zero red, across zero grey: one of each here
    assert svg.count("stroke='#1a7f37'") == 1 and svg.count("stroke='#c62828'") == 1
    assert "+0.050 [+0.012, +0.091] p 0.01" in svg and "−0.030 [−0.080, −0.010] p 0.02" in svg


def test_design_warnings_are_one_line_per_class_across_folds():
    def fold(ad, hp):
        return {"AD": {"images": 2 * ad, "groups": ad}, "HP": {"images": 2 * hp, "groups": hp}}

    design = {"grouped": True, "test_rows": ["fold 1 test", "fold 2 test", "fold 3 test"],
              "pooled": "pooled", "table": {"fold 1 test": fold(9, 3), "fold 2 test": fold(9, 4),
                                            "fold 3 test": fold(4, 2), "pooled": fold(22, 9)}}
    lines = check_design(design, allow_small=True)
    assert lines[:3] == [
        "ran with `allow_small_test`: fewer than 3 test groups: HP (2 test groups in 1 of 3 "
        "folds)",
        "AD: 4 test groups in 1 of 3 folds; its recall and F1 rest on them",
        "HP: 2–4 test groups in each of 3 folds; its recall and F1 rest on them"]
    # 2.8 * sqrt(2) * sqrt(0.25/22 + 0.25/9) / 2 = 0.39166
    assert lines[3].endswith("unpaired worst case): 0.39") and len(lines) == 4
    with pytest.raises(ValueError, match="fold 3: HP 2"):
        check_design(design)
    fixed = {"grouped": True, "test_rows": ["test"], "pooled": "test",
             "table": {"test": fold(12, 4)}}
    assert check_design(fixed, detectable_change=False) == [
        "HP: only 4 test groups; its recall and F1 rest on them"]


def test_every_arm_has_its_real_counterpart():
    arms = ["baseline", "augmented", "gated", "synthetic", "baseline 25%", "augmented 25%",
            "gated 25%", "linear probe", "linear probe + synthetic"]
    assert {a: real_counterpart(a, arms) for a in arms} == {
        "baseline": None, "augmented": "baseline", "gated": "baseline", "synthetic": "baseline",
        "baseline 25%": None, "augmented 25%": "baseline 25%", "gated 25%": "baseline 25%",
        "linear probe": None, "linear probe + synthetic": "linear probe"}
    assert real_counterpart("augmented 50%", arms) is None  # its real arm did not run
    assert real_counterpart("augmented", ["augmented", "gated"]) is None


def test_signed_figures_show_tiny_differences_and_never_a_false_zero():
    from polyp_core.experiment.svg import signed

    assert [signed(v) for v in (0.0234, -0.0171, -0.00042, 0.000042, 0.0, math.nan)] == [
        "+0.023", "−0.017", "−4.2e−04", "+4.2e−05", "0.000", "n/a"]
    from polyp_core.experiment.svg import magnitude

    assert [magnitude(v) for v in (-0.21, -0.000042, 0.0)] == ["0.210", "4.2e−05", "0.000"]
