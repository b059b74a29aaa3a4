"""The spread of a metric over training seeds: mean, sample std and a t interval, and the
paired difference of two arms trained with the same seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def spread(values: Sequence[float], confidence: float = 0.95,
           bounds: tuple[float, float] | None = None) -> dict:
    """Mean, sample std and a t interval of the mean over seeds, clipped to ``bounds`` (a
    proportion cannot leave 0..1, a difference of two cannot leave -1..1).

    With one value the std is 0 and the interval is the value itself (say so in reports:
    one seed tells nothing about seed noise).
    """
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no values")
    mean = float(v.mean())
    if v.size == 1:
        return {"mean": mean, "std": 0.0, "ci": [mean, mean], "n": 1, "values": v.tolist()}
    std = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * std / np.sqrt(v.size))
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return {"mean": mean, "std": std, "ci": [low, high], "n": int(v.size), "values": v.tolist()}


def paired_difference(treated: Sequence[float], control: Sequence[float],
                      confidence: float = 0.95) -> dict:
    """``treated - control`` paired by seed: mean, std and a t interval of the mean difference."""
    a, b = np.asarray(treated, float), np.asarray(control, float)
    if a.shape != b.shape:
        raise ValueError(f"paired values need one per seed in both arms; got {a.size} and {b.size}")
    return spread(a - b, confidence, bounds=(-1.0, 1.0))
