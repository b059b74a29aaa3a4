"""Per-image segmentation scores, and their summaries.

Dice, IoU, pixel precision and recall are computed for every test image that holds a polyp;
images without one (an empty ground-truth mask) are counted apart, by whether the model drew
anything on them (a false positive). An image's scores are NaN where they do not apply.
"""

from __future__ import annotations

import numpy as np

SCORES = ("dice", "iou", "precision", "recall")


def mask_scores(predicted: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Scores of boolean masks ``(N, H, W)``: each of :data:`SCORES` per image (NaN on images
    without a polyp), ``empty`` (no polyp in the truth) and ``false_positive`` (an empty image
    on which something was predicted)."""
    p = predicted.reshape(len(predicted), -1).astype(bool)
    t = truth.reshape(len(truth), -1).astype(bool)
    inter = (p & t).sum(1).astype(float)
    p_sum, t_sum = p.sum(1).astype(float), t.sum(1).astype(float)
    union = (p | t).sum(1).astype(float)
    empty = t_sum == 0
    # a zero denominator always comes with a zero numerator (inter is at most each of them):
    # 0/0 is the only case, numpy's "invalid", and the result is replaced below
    with np.errstate(invalid="ignore"):
        out = {"dice": 2 * inter / (p_sum + t_sum), "iou": inter / union,
               "precision": np.where(p_sum > 0, inter / p_sum, 0.0), "recall": inter / t_sum}
    for name in SCORES:
        out[name] = np.where(empty, np.nan, out[name])
    out["empty"] = empty
    out["false_positive"] = empty & (p_sum > 0)
    return out


def summarise_scores(scores: dict[str, np.ndarray]) -> dict:
    """Means over the images with a polyp, and the empty images apart."""
    polyp = ~scores["empty"]
    out = {name: float(np.nanmean(scores[name])) if polyp.any() else float("nan")
           for name in SCORES}
    n_empty = int(scores["empty"].sum())
    out |= {"images_with_polyp": int(polyp.sum()), "empty_images": n_empty,
            "empty_false_positives": int(scores["false_positive"].sum())}
    return out
