"""Classification metrics over arrays, and one arm's summary and paired comparison over seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from polyp_core.stats.seeds import paired_difference, spread


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int],
                           classes: Sequence[str]) -> dict:
    """Per-class precision, recall, F1 and support; macro-F1, balanced accuracy, accuracy and
    the confusion matrix (rows: true class, columns: predicted), for class indices.

    A class with no predictions has precision 0 (and no support: recall 0), as sklearn's
    ``zero_division=0`` reports it.
    """
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                                 precision_recall_fscore_support)

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length; got {y_true.shape}, {y_pred.shape}")
    if not y_true.size:
        raise ValueError("no test images to score")
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    present = [i for i in labels if s[i] > 0]  # never empty: every test image has a class
    return {
        "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                          "support": int(s[i])} for i, c in enumerate(classes)},
        "macro_f1": float(np.mean(f[present])),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "classes": list(classes),
    }


SUMMARY_METRICS = ("macro_f1", "balanced_accuracy", "accuracy")
CLASS_METRICS = ("precision", "recall", "f1")


def summarise_arm(per_seed: Sequence[dict]) -> dict:
    """Mean/std/interval of every metric of one arm over its seeds, and the summed confusion."""
    classes = per_seed[0]["classes"]
    return {
        **{m: spread([r[m] for r in per_seed], bounds=(0.0, 1.0)) for m in SUMMARY_METRICS},
        "per_class": {c: {m: spread([r["per_class"][c][m] for r in per_seed], bounds=(0.0, 1.0))
                          for m in CLASS_METRICS}
                      for c in classes},
        "confusion_sum": np.sum([r["confusion"] for r in per_seed], axis=0).tolist(),
        "classes": classes,
    }


def compare_arms(treated: Sequence[dict], control: Sequence[dict]) -> tuple[dict, list[dict]]:
    """Paired differences (treated - control) of every metric, and a warning for every class
    whose recall or F1 fell on average; ``beyond_noise`` when the whole interval is below 0."""
    classes = control[0]["classes"]
    deltas = {m: paired_difference([r[m] for r in treated], [r[m] for r in control])
              for m in SUMMARY_METRICS}
    deltas["per_class"] = {
        c: {m: paired_difference([r["per_class"][c][m] for r in treated],
                                 [r["per_class"][c][m] for r in control]) for m in CLASS_METRICS}
        for c in classes}
    warnings = []
    for c in classes:
        for m in ("recall", "f1"):
            d = deltas["per_class"][c][m]
            if d["mean"] < 0:
                before = float(np.mean([r["per_class"][c][m] for r in control]))
                after = float(np.mean([r["per_class"][c][m] for r in treated]))
                warnings.append({
                    "class": c, "metric": m, "control": before, "treated": after,
                    "delta": d["mean"], "ci": d["ci"], "beyond_noise": d["n"] > 1 and d["ci"][1] < 0,
                    "text": f"{c} {m} fell from {before:.3f} to {after:.3f} "
                            f"({d['mean']:+.3f}, 95% CI {d['ci'][0]:+.3f} to {d['ci'][1]:+.3f})"})
    return deltas, warnings
