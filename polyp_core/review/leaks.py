"""The leak auditor: can anything but the picture tell a study's real images from its
synthetic ones?

It collects, for every assignment, what a reviewer's browser receives besides the picture's
content (the served file's byte length, which is also its Content-Length header; the length
of its URL; the token's length; the position in the reviewer's queue; the time the server
takes to hand the bytes over) and two content statistics that are known shortcuts (the size
of the served pixels re-encoded at a fixed JPEG quality, and their high-frequency energy).
For each channel, and for all non-pixel channels together (a logistic regression, out-of-fold
over 5 folds grouped by image), it reports the ROC AUC of real against synthetic with a 95 %
interval from a cluster bootstrap over images (an image rated by two reviewers is one case).

A study *fails* when a channel that the study's files and design determine separates the
sources: a packaging channel (byte length, URL, token) or queue position whose interval
excludes 0.5 on either side, or the combined model of those channels whose interval lies
above 0.5 and beats relabelled images (permutation p < 0.01). Queue position is gated because
the queues are a blocked design (``studies.reviewer_queue``): every source is spread evenly over
every queue, so whatever the seed, position cannot separate them, and if it does the design was
broken. The verdict is therefore a property of the study: the same files and queues give the
same verdict on any machine under any load (every resampling is seeded).

Serving time is not part of the verdict: it depends on what else the machine is doing at the
moment of the audit. It is measured on the serving path (the same file read a reviewer's
request makes), as the median of several reads per assignment to average out load, and
reported beside the others. Pixel channels are reported, never gated: they are what the
reviewers are asked to judge, but a gap there says the study's sources differ in more than
realism (resolution, noise).
"""

from __future__ import annotations

import hashlib
import io
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

GATED = ("byte_length", "url_length", "token_length", "position")
MEASURED = ("serve_ms",)  # reported, never gated: it depends on the machine's load
PIXEL = ("jpeg75_bytes", "high_frequency")
#: mask studies: the shape of each mask as the study draws it (content: reported, not gated)
MASK = ("mask_area", "mask_boundary", "mask_smoothness")
CHANNELS = GATED + MEASURED + PIXEL
SERVE_READS = 5  # reads per assignment whose median is its serving time
DESCRIPTIONS = {
    "byte_length": "served file's byte length (= Content-Length)",
    "url_length": "length of the file URL the page receives",
    "token_length": "length of the assignment token",
    "position": "position in the reviewer's queue, 0 first, 1 last (blocked design)",
    "serve_ms": f"time to hand the bytes over, median of {SERVE_READS} reads, whole ms "
                "(reported: depends on the machine's load)",
    "jpeg75_bytes": "pixels re-encoded as JPEG quality 75 (content)",
    "high_frequency": "mean |Laplacian| of the served pixels (content)",
    "mask_area": "mask area, share of the square at the working resolution (content)",
    "mask_boundary": "mask boundary length in pixels over the square's side (content)",
    "mask_smoothness": "4 pi area / boundary^2 of the mask (1: a disk; content)",
    "combined": "all gated channels together (logistic regression, out of fold)",
}


@dataclass(frozen=True)
class ChannelResult:
    name: str
    auc: float
    low: float
    high: float
    gated: bool
    leaks: bool
    p: float | None = None  # combined: permutation p, computed when its interval clears 0.5

    def line(self) -> str:
        flag = "LEAK" if self.leaks else ("ok" if self.gated else "reported")
        p = f" permutation p {self.p:.3f}" if self.p is not None else ""
        return (f"{self.name:15s} AUC {self.auc:.3f} [{self.low:.3f}, {self.high:.3f}]{p}  "
                f"{flag:8s} {DESCRIPTIONS.get(self.name, '')}")


@dataclass(frozen=True)
class LeakReport:
    """The audit of one study: per channel AUC with a 95 % cluster-bootstrap interval."""

    study: str
    n_real: int
    n_synthetic: int
    n_assignments: int
    channels: tuple[ChannelResult, ...]
    n_boot: int
    passed: bool
    chain: dict = field(default_factory=dict)
    note: str = ""

    def to_json(self) -> dict:
        return {"study": self.study, "n_real": self.n_real, "n_synthetic": self.n_synthetic,
                "n_assignments": self.n_assignments, "n_boot": self.n_boot,
                "passed": self.passed, "chain": self.chain, "note": self.note,
                "channels": [c.__dict__ for c in self.channels]}

    @classmethod
    def from_json(cls, data: dict) -> LeakReport:
        return cls(data["study"], data["n_real"], data["n_synthetic"], data["n_assignments"],
                   tuple(ChannelResult(**c) for c in data["channels"]), data["n_boot"],
                   data["passed"], data.get("chain", {}), data.get("note", ""))

    def lines(self) -> list[str]:
        head = (f"leak audit of {self.study}: {'PASSED' if self.passed else 'FAILED'} · "
                f"{self.n_real} real and {self.n_synthetic} synthetic images, "
                f"{self.n_assignments} assignments; 95% intervals from {self.n_boot} cluster "
                "bootstrap resamples over images; AUC 0.5 = no separation")
        return [head, *([self.note] if self.note else []), *(c.line() for c in self.channels)]


def high_frequency(rgb: np.ndarray) -> float:
    grey = rgb.astype(np.float32).mean(axis=2)
    laplacian = (4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2]
                 - grey[1:-1, 2:])
    return float(np.abs(laplacian).mean())


def jpeg75_bytes(rgb: np.ndarray) -> int:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=75)
    return buffer.tell()


def mask_shape(mask: np.ndarray) -> dict[str, float]:
    """Area, boundary length and smoothness of a mask as a study draws it (bool, square)."""
    from scipy import ndimage

    area = float(mask.sum())
    boundary = float((mask & ~ndimage.binary_erosion(mask)).sum())
    return {"mask_area": area / mask.size, "mask_boundary": boundary / mask.shape[0],
            "mask_smoothness": 4 * np.pi * area / boundary ** 2 if boundary else 0.0}


def served_url(data: bytes) -> str:
    """The shape of the URL Gradio gives the browser for served bytes: a content-hash folder
    under the instance's cache and a fixed file name (the cache root is the same for all)."""
    return f"/gradio_api/file=<cache>/{hashlib.sha256(data).hexdigest()}/image.jpg"


def channel_rows(items: list[dict]) -> list[dict]:  # pragma: no mutate block
    """Measure every channel of each assignment. ``items`` hold ``image`` (the case id),
    ``truth``, ``token``, ``position``, ``queue_length`` and ``fetch`` (a callable returning the
    served bytes, as the reviewer's page gets them)."""
    rows, content = [], {}
    for item in items:
        times = []
        for _ in range(SERVE_READS):
            start = time.perf_counter()
            data = item["fetch"]()
            times.append(1000 * (time.perf_counter() - start))
        serve_ms = float(np.median(times))
        if item["image"] not in content:
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
            content[item["image"]] = (jpeg75_bytes(rgb), high_frequency(rgb))
        rows.append({
            "image": item["image"], "real": item["truth"] == "real",
            "byte_length": len(data), "url_length": len(served_url(data)),
            "token_length": len(item["token"]),
            "position": item["position"] / max(1, item["queue_length"] - 1),
            # whole milliseconds: finer than any browser across a network can observe
            "serve_ms": float(round(serve_ms)),
            "jpeg75_bytes": content[item["image"]][0],
            "high_frequency": content[item["image"]][1],
            **(item.get("mask") or {})})
    return rows


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half): equal to scikit-learn's
    ``roc_auc_score`` (tested) at a fraction of its cost, which matters inside a bootstrap."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    positives = int(y.sum())
    negatives = len(y) - positives
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def cluster_bootstrap_auc(y: np.ndarray, score: np.ndarray, clusters: np.ndarray, n_boot: int,
                          seed: int = 0) -> tuple[float, float, float]:
    """AUC of ``score`` for ``y`` with a 95 % percentile interval, resampling clusters."""
    value = auc(y, score)
    if np.ptp(score) == 0:
        return value, value, value  # a constant says nothing in any resample
    ids, inverse = np.unique(clusters, return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(ids))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        rows = np.concatenate([members[k] for k in rng.integers(0, len(ids), len(ids))])
        if y[rows].all() or not y[rows].any():
            continue
        values.append(auc(y[rows], score[rows]))
    low, high = np.percentile(values, [2.5, 97.5]) if values else (value, value)
    return value, float(low), float(high)


def combined_scores(rows: list[dict], names: tuple[str, ...], seed: int = 0) -> np.ndarray:
    """Out-of-fold probability of "real" from all ``names`` channels together (5 folds,
    grouped by image, so no image is in its own training fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.array([[r[n] for n in names] for r in rows], dtype=float)
    y = np.array([r["real"] for r in rows])
    groups = np.array([r["image"] for r in rows])
    scores = np.full(len(rows), 0.5)
    if np.ptp(x, axis=0).max() == 0:
        return scores  # nothing varies: nothing to learn
    folds = min(5, len(np.unique(groups[y])), len(np.unique(groups[~y])))
    if folds < 2:
        return scores
    for train, test in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
            x, y, groups):
        if y[train].all() or not y[train].any():
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
    return scores


COMBINED_ALPHA = 0.01  # permutation p below which the combined channel holds a study
PERMUTATIONS = 199


def combined_permutation_p(rows: list[dict], observed: float, seed: int = 0,
                           permutations: int = PERMUTATIONS) -> float:
    """How often the combined model's out-of-fold AUC on images whose real/synthetic labels
    were shuffled (image by image) reaches ``observed``: ``(1 + hits) / (1 + permutations)``."""
    images = sorted({r["image"]: r["real"] for r in rows}.items())
    names, truth = [n for n, _ in images], np.array([t for _, t in images])
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        shuffled = dict(zip(names, rng.permutation(truth)))
        fake = [{**r, "real": bool(shuffled[r["image"]])} for r in rows]
        y = np.array([r["real"] for r in fake])
        hits += auc(y, combined_scores(fake, GATED, seed)) >= observed
    return (1 + hits) / (1 + permutations)


def audit_rows(study: str, rows: list[dict], n_boot: int = 1000, seed: int = 0,
               chain: dict | None = None) -> LeakReport:
    """The report for measured rows (see :func:`channel_rows`)."""
    y = np.array([r["real"] for r in rows])
    images = {r["image"]: r["real"] for r in rows}
    if y.all() or not y.any():
        return LeakReport(study, sum(images.values()), len(images) - sum(images.values()),
                          len(rows), (), n_boot, True, chain or {},
                          "only one kind of image (all real or all synthetic): nothing to tell "
                          "apart")
    clusters = np.array([r["image"] for r in rows])
    results = []
    for name in CHANNELS + (MASK if "mask_area" in rows[0] else ()):
        value, low, high = cluster_bootstrap_auc(y, np.array([r[name] for r in rows], float),
                                                 clusters, n_boot, seed)
        gated = name in GATED
        results.append(ChannelResult(name, value, low, high, gated,
                                     gated and not low <= 0.5 <= high))
    value, low, high = cluster_bootstrap_auc(y, combined_scores(rows, GATED, seed),
                                             clusters, n_boot, seed)
    # out-of-fold scores on noise sit below 0.5 on average; only a model that really
    # separates the sources lifts the whole interval above 0.5. The bootstrap interval ignores
    # how the model's fit varies, so a suspected leak must also beat relabelled images
    p = combined_permutation_p(rows, value, seed) if low > 0.5 else None
    results.append(ChannelResult("combined", value, low, high, True,
                                 low > 0.5 and p < COMBINED_ALPHA, p))
    return LeakReport(study, sum(images.values()), len(images) - sum(images.values()), len(rows),
                      tuple(results), n_boot, not any(c.leaks for c in results), chain or {})
