"""Memorisation (near copies of training images) and within-class diversity.

Diffusion models trained on a few hundred images do copy them, and a synthetic copy of a
patient's image is a privacy leak. For each synthetic image the nearest real training
images are found by cosine similarity of features; pairs above a threshold are flagged.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _unit(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.clip(norms, 1e-12, None)


def nearest_real(synthetic: np.ndarray, real: np.ndarray, k: int = 3,
                 chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosine similarities of the ``k`` nearest real images of each synthetic one.

    Returns:
        ``(indices (n_syn, k), similarities (n_syn, k))``, most similar first.
    """
    if len(real) == 0:
        raise ValueError("no real images to compare with")
    k = min(k, len(real))
    s, r = _unit(synthetic), _unit(real)
    indices = np.empty((len(s), k), np.int64)
    sims = np.empty((len(s), k))
    for start in range(0, len(s), chunk):
        block = s[start:start + chunk] @ r.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sims, axis=1)
        indices[start:start + chunk] = np.take_along_axis(top, order, axis=1)
        sims[start:start + chunk] = np.take_along_axis(top_sims, order, axis=1)
    return indices, sims


@dataclass(frozen=True)
class CopyPair:
    synthetic_id: str
    real_id: str
    similarity: float
    synthetic_class: str


@dataclass(frozen=True)
class MemorisationReport:
    threshold: float
    extractor: str
    pairs: list[CopyPair]  # flagged pairs, most similar first
    share_flagged: dict[str, float]  # synthetic class -> share of its images flagged
    nearest: list[tuple[str, str, float]]  # every synthetic image: (id, nearest real id, sim)

    def to_json(self) -> dict:
        return {"threshold": self.threshold, "extractor": self.extractor,
                "share_flagged": self.share_flagged,
                "pairs": [vars(p) for p in self.pairs],
                "nearest": [list(n) for n in self.nearest]}


def memorisation_report(synthetic: np.ndarray, synthetic_ids: Sequence[str],
                        synthetic_classes: Sequence[str], real: np.ndarray,
                        real_ids: Sequence[str], threshold: float, extractor: str
                        ) -> MemorisationReport:
    """Flag synthetic images whose nearest real image is more similar than ``threshold``."""
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1]; got {threshold}")
    indices, sims = nearest_real(synthetic, real, k=1)
    pairs, per_class = [], defaultdict(list)
    nearest = []
    for i, sid in enumerate(synthetic_ids):
        sim, rid = float(sims[i, 0]), real_ids[indices[i, 0]]
        nearest.append((sid, rid, sim))
        flagged = sim >= threshold
        per_class[synthetic_classes[i]].append(flagged)
        if flagged:
            pairs.append(CopyPair(sid, rid, sim, synthetic_classes[i]))
    pairs.sort(key=lambda p: -p.similarity)
    share = {c: float(np.mean(v)) for c, v in sorted(per_class.items())}
    return MemorisationReport(threshold, extractor, pairs, share, nearest)


def diversity(features: np.ndarray) -> float:
    """Mean pairwise cosine distance within a set (0: all identical)."""
    if len(features) < 2:
        return float("nan")
    unit = _unit(features)
    n = len(unit)
    total = unit.sum(axis=0)
    mean_similarity = (total @ total - n) / (n * (n - 1))  # mean over i != j of cos(i, j)
    return float(1 - mean_similarity)


def diversity_by_class(features: np.ndarray, classes: Sequence[str]) -> dict[str, float]:
    groups = defaultdict(list)
    for index, cls in enumerate(classes):
        groups[cls].append(index)
    return {c: diversity(features[idx]) for c, idx in sorted(groups.items())}


def side_by_side(synthetic_rgb: np.ndarray, real_rgb: np.ndarray, gap: int = 4) -> np.ndarray:
    """A flagged pair as one picture: synthetic left, real right (same height)."""
    height = min(synthetic_rgb.shape[0], real_rgb.shape[0])
    spacer = np.full((height, gap, 3), 255, np.uint8)
    return np.concatenate([synthetic_rgb[:height], spacer, real_rgb[:height]], axis=1)
