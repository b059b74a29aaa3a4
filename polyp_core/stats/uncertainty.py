"""Uncertainty over the right unit: a cluster bootstrap over patients/lesions (the groups of
the test images), combined with the spread over training seeds.

A test set of 500 frames from 36 lesions holds 36 independent pieces of evidence, not 500:
frames of one lesion look alike and are classified alike. Each bootstrap replicate draws the
test groups with replacement (every frame of a drawn group comes along, as many times as the
group was drawn) and the training seeds with replacement, and averages the metric over the
drawn seeds; the 2.5th and 97.5th percentiles are the 95% interval. Paired differences
(augmented - baseline) use the same groups and seeds in both arms in every replicate, so what
the arms share cancels; the p-value is the two-sided bootstrap share on the far side of 0.

Everything runs on confusion matrices weighted by how often each image was drawn, so a
replicate costs one ``bincount`` per seed.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

METRICS = ("macro_f1", "balanced_accuracy")
CLASS_METRICS = ("precision", "recall", "f1")


def _metrics_from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of confusion matrices (..., K, K) (rows: truth): arrays over the leading axes."""
    tp = np.diagonal(confusion, axis1=-2, axis2=-1)
    support = confusion.sum(axis=-1)
    predicted = confusion.sum(axis=-2)
    # a zero denominator always comes with a zero numerator (tp is at most each count, and
    # precision + recall is 0 only when both are): only 0/0, numpy's "invalid", can happen
    with np.errstate(invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        present = support > 0
        macro_f1 = np.where(present.any(-1), (f1 * present).sum(-1) / present.sum(-1), np.nan)
        balanced = np.where(present.any(-1), (recall * present).sum(-1) / present.sum(-1), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "macro_f1": macro_f1,
            "balanced_accuracy": balanced}


def _confusions(y_true: np.ndarray, preds: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Weighted confusion matrices: preds (S, N), weights (B, N) -> (B, S, K, K)."""
    cells = y_true[None, :] * k + preds  # (S, N)
    out = np.zeros((weights.shape[0], preds.shape[0], k * k))
    for s in range(preds.shape[0]):
        for b in range(weights.shape[0]):
            out[b, s] = np.bincount(cells[s], weights=weights[b], minlength=k * k)
    return out.reshape(weights.shape[0], preds.shape[0], k, k)


def _draws(groups: Sequence[str], n_seeds: int, n_boot: int,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Image weights (B, N) from groups drawn with replacement, and seed draws (B, S)."""
    names, index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    drawn = rng.integers(0, len(names), size=(n_boot, len(names)))
    counts = np.stack([np.bincount(row, minlength=len(names)) for row in drawn])  # (B, G)
    return counts[:, index].astype(float), rng.integers(0, n_seeds, size=(n_boot, n_seeds))


def _seed_average(values: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """values (B, S, ...) averaged over each replicate's drawn seeds -> (B, ...); NaN where a
    replicate has no value (no drawn image a score applies to)."""
    picked = np.take_along_axis(values, seeds.reshape(seeds.shape + (1,) * (values.ndim - 2)),
                                axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN replicates stay NaN
        return np.nanmean(picked, axis=1)


def _interval(estimate: float, replicates: np.ndarray, level: float) -> dict:
    replicates = replicates[np.isfinite(replicates)]
    if replicates.size == 0:
        return {"estimate": float(estimate), "low": float("nan"), "high": float("nan")}
    low, high = np.percentile(replicates, [50 * (1 - level), 50 * (1 + level)])
    return {"estimate": float(estimate), "low": float(low), "high": float(high)}


def _summaries(point: dict, boot: dict, classes: Sequence[str], level: float) -> dict:
    out = {m: _interval(float(np.nanmean(point[m])), boot[m], level) for m in METRICS}
    out["per_class"] = {c: {m: _interval(float(np.mean(point[m][:, i])), boot[m][:, i], level)
                            for m in CLASS_METRICS} for i, c in enumerate(classes)}
    return out


def cluster_bootstrap(y_true: Sequence[int], preds: Sequence[Sequence[int]], groups: Sequence[str],
                      classes: Sequence[str], n_boot: int = 2000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """95% intervals of macro-F1, balanced accuracy and per-class precision/recall/F1 for one
    arm: ``preds`` is one row of test predictions per training seed; ``groups`` the test
    images' patient/lesion (each image its own group when none is known)."""
    y, p = np.asarray(y_true), np.atleast_2d(np.asarray(preds))
    k = len(classes)
    rng = np.random.default_rng(seed)
    weights, seeds = _draws(groups, p.shape[0], n_boot, rng)
    point = _metrics_from_confusion(_confusions(y, p, np.ones((1, len(y))), k)[0])
    boot = {m: _seed_average(v, seeds)
            for m, v in _metrics_from_confusion(_confusions(y, p, weights, k)).items()}
    out = _summaries(point, boot, classes, level)
    out |= {"groups": int(len(set(map(str, groups)))), "seeds": int(p.shape[0]),
            "n_boot": n_boot, "method": "cluster bootstrap over test groups, with seeds"}
    return out


def paired_cluster_bootstrap(y_true: Sequence[int], treated: Sequence[Sequence[int]],
                             control: Sequence[Sequence[int]], groups: Sequence[str],
                             classes: Sequence[str], n_boot: int = 2000, seed: int = 0,
                             level: float = 0.95) -> dict:
    """``treated - control`` of every metric with its paired cluster-bootstrap interval and a
    two-sided p-value; both arms must have predictions for the same seeds (rows paired)."""
    y = np.asarray(y_true)
    a, b = np.atleast_2d(np.asarray(treated)), np.atleast_2d(np.asarray(control))
    if a.shape != b.shape:
        raise ValueError(f"paired arms need the same seeds and test images; got {a.shape} and "
                         f"{b.shape}")
    k = len(classes)
    rng = np.random.default_rng(seed)
    weights, seeds = _draws(groups, a.shape[0], n_boot, rng)
    ones = np.ones((1, len(y)))
    point_a = _metrics_from_confusion(_confusions(y, a, ones, k)[0])
    point_b = _metrics_from_confusion(_confusions(y, b, ones, k)[0])
    boot_a = _metrics_from_confusion(_confusions(y, a, weights, k))
    boot_b = _metrics_from_confusion(_confusions(y, b, weights, k))
    point = {m: point_a[m] - point_b[m] for m in point_a}
    boot = {m: _seed_average(boot_a[m] - boot_b[m], seeds) for m in boot_a}

    def p_value(replicates: np.ndarray) -> float:
        replicates = replicates[np.isfinite(replicates)]
        if replicates.size == 0:
            return float("nan")
        return float(min(1.0, 2 * min((replicates <= 0).mean(), (replicates >= 0).mean())))

    out = _summaries(point, boot, classes, level)
    for m in METRICS:
        out[m]["p"] = p_value(boot[m])
    for i, c in enumerate(classes):
        for m in CLASS_METRICS:
            out["per_class"][c][m]["p"] = p_value(boot[m][:, i])
    out |= {"groups": int(len(set(map(str, groups)))), "seeds": int(a.shape[0]),
            "n_boot": n_boot, "method": "paired cluster bootstrap over test groups, with seeds"}
    return out


def regression_warnings(delta: dict, classes: Sequence[str]) -> list[dict]:
    """A warning for every class whose recall or F1 fell with an interval that excludes 0."""
    warnings = []
    for c in classes:
        for m in ("recall", "f1"):
            d = delta["per_class"][c][m]
            if d["high"] < 0:
                warnings.append({
                    "class": c, "metric": m, "delta": d["estimate"], "ci": [d["low"], d["high"]],
                    "beyond_noise": True,
                    "p": d.get("p"), "text": f"{c} {m} fell by {-d['estimate']:.3f} (95% CI "
                                             f"{d['low']:+.3f} to {d['high']:+.3f}, excluding 0; "
                                             f"cluster bootstrap over {delta['groups']} test "
                                             f"groups and {delta['seeds']} seeds)"})
    return warnings


def _score_means(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted means over images of per-image scores (S, N) under image weights (B, N) -> (B, S),
    NaN scores (images a score does not apply to) left out."""
    finite = np.isfinite(scores)
    values = np.where(finite, scores, 0.0)
    with np.errstate(invalid="ignore"):  # no drawn image with a score: 0/0, NaN
        return (weights @ values.T) / (weights @ finite.T.astype(float))


def cluster_bootstrap_scores(scores: Sequence[Sequence[float]], groups: Sequence[str],
                             n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """The mean of a per-image score (one row per training seed; NaN where it does not apply)
    with its 95% interval from the same cluster bootstrap over test groups and seeds as
    :func:`cluster_bootstrap`."""
    s = np.atleast_2d(np.asarray(scores, dtype=float))
    rng = np.random.default_rng(seed)
    weights, seeds = _draws(groups, s.shape[0], n_boot, rng)
    point = float(np.nanmean(_score_means(s, np.ones((1, s.shape[1])))[0]))
    boot = _seed_average(_score_means(s, weights), seeds)
    return _interval(point, boot, level) | {"groups": int(len(set(map(str, groups)))),
                                            "seeds": int(s.shape[0]), "n_boot": n_boot}


def paired_cluster_bootstrap_scores(treated: Sequence[Sequence[float]],
                                    control: Sequence[Sequence[float]], groups: Sequence[str],
                                    n_boot: int = 2000, seed: int = 0,
                                    level: float = 0.95) -> dict:
    """``treated - control`` of a per-image score's mean, with its paired interval and a
    two-sided bootstrap p-value (the same groups and seeds in both arms in every replicate)."""
    a = np.atleast_2d(np.asarray(treated, dtype=float))
    b = np.atleast_2d(np.asarray(control, dtype=float))
    if a.shape != b.shape:
        raise ValueError(f"paired arms need the same seeds and test images; got {a.shape} and "
                         f"{b.shape}")
    rng = np.random.default_rng(seed)
    weights, seeds = _draws(groups, a.shape[0], n_boot, rng)
    ones = np.ones((1, a.shape[1]))
    point = float(np.nanmean(_score_means(a, ones)[0] - _score_means(b, ones)[0]))
    boot = _seed_average(_score_means(a, weights) - _score_means(b, weights), seeds)
    finite = boot[np.isfinite(boot)]
    p = float(min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean()))) if finite.size \
        else float("nan")
    return _interval(point, boot, level) | {"p": p, "groups": int(len(set(map(str, groups)))),
                                            "seeds": int(a.shape[0]), "n_boot": n_boot}
