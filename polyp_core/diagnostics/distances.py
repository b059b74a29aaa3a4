"""KID and FID over feature matrices, and the class-pair matrix that makes them readable.

KID is the unbiased MMD² with the cubic polynomial kernel ``k(a, b) = (a·b / d + 1)³``,
averaged over random subsets (mean ± population std, as torchmetrics reports it). It is
unbiased, so it can be compared across sample sizes, which matters when a minority class
has ~120 real images. FID is given beside it, always with the sample size it used.
Every result names the feature extractor its features came from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class KIDResult:
    mean: float
    std: float
    subsets: int
    subset_size: int
    n_x: int
    n_y: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f} ({self.subsets}×{self.subset_size})"


def _as_tensor(features: np.ndarray | torch.Tensor, device: torch.device | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(features) if not torch.is_tensor(features) else features)
    if tensor.ndim != 2:
        raise ValueError(f"features must be a 2-D matrix (samples × dimensions); got shape "
                         f"{tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=dtype or (tensor.dtype if tensor.is_floating_point()
                                                    else torch.float64))


def _kernel_sum(a: torch.Tensor, b: torch.Tensor, gamma: float, out: torch.Tensor,
                drop_diagonal: bool) -> torch.Tensor:
    """Sum of ``(gamma a bᵀ + 1)³`` over all entries (minus the diagonal), in place in ``out``."""
    torch.mm(a, b.T, out=out)
    out.mul_(gamma).add_(1.0)
    out.pow_(3)
    total = out.sum(dtype=torch.float64)
    if drop_diagonal:
        total = total - torch.diagonal(out).sum(dtype=torch.float64)
    return total


def _symmetric_kernel_sum(a: torch.Tensor, gamma: float, out: torch.Tensor,
                          blocks: int = 4) -> torch.Tensor:
    """Sum of ``(gamma a aᵀ + 1)³`` without its diagonal, computing only the upper block
    triangle: the kernel is symmetric, so off-diagonal blocks count twice."""
    m = len(a)
    edges = [round(m * i / blocks) for i in range(blocks + 1)]
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for i in range(blocks):
        rows = a[edges[i]:edges[i + 1]]
        for j in range(i, blocks):
            cols = a[edges[j]:edges[j + 1]]
            part = out.view(-1)[: len(rows) * len(cols)].view(len(rows), len(cols))
            block = _kernel_sum(rows, cols, gamma, part, drop_diagonal=(i == j))
            total = total + (block if i == j else 2 * block)
    return total


def subset_indices(n_x: int, n_y: int, subsets: int, subset_size: int,
                   seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random subsets drawn as torchmetrics draws them (real, then fake, per subset)."""
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randperm(n_x, generator=generator)[:subset_size],
             torch.randperm(n_y, generator=generator)[:subset_size]) for _ in range(subsets)]


def kid(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, subsets: int = 100,
        subset_size: int = 1000, seed: int = 0,
        device: torch.device | None = None) -> KIDResult:
    """Kernel Inception Distance between feature matrices ``x`` (reference) and ``y``.

    Args:
        x, y: ``(n, d)`` features (numpy or torch); float64 inputs are computed in float64.
        subsets: number of random subsets.
        subset_size: samples per subset; reduced to the smaller set's size when larger.
        seed: subset draw seed.

    Raises:
        ValueError: shapes that do not match, or fewer than two samples.
    """
    xt, yt = _as_tensor(x, device), _as_tensor(y, device)
    if xt.shape[1] != yt.shape[1]:
        raise ValueError(f"feature dimensions differ: {xt.shape[1]} and {yt.shape[1]}")
    yt = yt.to(xt.dtype)
    m = min(subset_size, len(xt), len(yt))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples on each side; got {len(xt)} and {len(yt)}")
    gamma = 1.0 / xt.shape[1]
    blocks = 4 if m >= 256 else 1  # small blocks cost more than the symmetry saves
    buffer = torch.empty((m, m), dtype=xt.dtype, device=xt.device)
    scores = []
    for ix, iy in subset_indices(len(xt), len(yt), subsets, m, seed):
        fx, fy = xt[ix.to(xt.device)], yt[iy.to(xt.device)]
        kxx = _symmetric_kernel_sum(fx, gamma, buffer, blocks)
        kyy = _symmetric_kernel_sum(fy, gamma, buffer, blocks)
        kxy = _kernel_sum(fx, fy, gamma, buffer, False)
        scores.append(float((kxx + kyy) / (m * (m - 1)) - 2 * kxy / (m * m)))
    values = np.array(scores)
    return KIDResult(float(values.mean()), float(values.std()), subsets, m, len(xt), len(yt))


@dataclass(frozen=True)
class FIDResult:
    value: float
    n: int  # samples per side actually used (equal on both sides)
    dim: int
    note: str = ""


def fid(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, seed: int = 0,
        equal_sizes: bool = True) -> FIDResult:
    """Fréchet distance between Gaussians fitted to ``x`` and ``y``.

    FID is biased by sample size, so by default both sides are subsampled to the same
    size (seeded), and the result says how many were used; it is only comparable to FIDs
    computed with the same ``n`` and extractor.
    """
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (n, d) matrices of one d; got {a.shape} and {b.shape}")
    if equal_sizes and len(a) != len(b):
        n = min(len(a), len(b))
        rng = np.random.default_rng(seed)
        a = a[rng.choice(len(a), n, replace=False)]
        b = b[rng.choice(len(b), n, replace=False)]
    if min(len(a), len(b)) < 2:
        raise ValueError("FID needs at least 2 samples on each side")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # tr sqrt(A B) from the eigenvalues of sqrt(A) B sqrt(A), which is symmetric PSD
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
    note = ""
    if len(a) <= a.shape[1]:
        note = (f"{len(a)} samples for {a.shape[1]} dimensions: the covariances are singular and "
                "FID is strongly biased; prefer KID")
    return FIDResult(max(value, 0.0), len(a), a.shape[1], note)


@dataclass(frozen=True)
class PairMatrix:
    """KID of synthetic class i against real class j, for every pair.

    Reading it: the diagonal (synthetic AD vs real AD) should be low, off-diagonal cells
    (synthetic AD vs real SSA) high. ``margin[c]`` is the nearest off-diagonal cell minus
    the diagonal: positive when synthetic c is closer to real c than to any other class.
    """

    extractor: str
    scheme: str
    classes: tuple[str, ...]
    cells: dict[str, dict[str, KIDResult]]  # synthetic class -> real class -> KID
    margin: dict[str, float]
    subset_size: int
    subsets: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def direction(self, synthetic: str, real: str) -> str:
        return "lower is better" if synthetic == real else "higher is better"

    def to_json(self) -> dict:
        return {"extractor": self.extractor, "scheme": self.scheme, "classes": list(self.classes),
                "subset_size": self.subset_size, "subsets": self.subsets, "counts": self.counts,
                "margin": self.margin,
                "cells": {s: {r: {"mean": k.mean, "std": k.std, "direction": self.direction(s, r)}
                              for r, k in row.items()} for s, row in self.cells.items()}}

    @classmethod
    def from_json(cls, data: dict) -> PairMatrix:
        """A stored matrix back (subset counts per cell are not stored: they read as the run's)."""
        counts = data.get("counts", {})
        cells = {s: {r: KIDResult(k["mean"], k["std"], data["subsets"], data["subset_size"],
                                  counts.get(s, {}).get(r, 0), 0) for r, k in row.items()}
                 for s, row in data["cells"].items()}
        return cls(data["extractor"], data["scheme"], tuple(data["classes"]), cells, data["margin"],
                   data["subset_size"], data["subsets"], counts)


def kid_matrix(synthetic: dict[str, np.ndarray], real: dict[str, np.ndarray], extractor: str,
               scheme: str, subsets: int = 100, subset_size: int = 1000,
               seed: int = 0) -> PairMatrix:
    """The class-pair KID matrix; the subset size adapts to the smallest group.

    Args:
        synthetic, real: class -> feature matrix (classes of one scheme).
        extractor: the id of the features' extractor (carried into the result).
    """
    classes = tuple(c for c in real if c in synthetic)
    if not classes:
        raise ValueError(f"no class has both synthetic and real images "
                         f"(synthetic: {sorted(synthetic)}, real: {sorted(real)})")
    smallest = min(min(len(synthetic[c]), len(real[c])) for c in classes)
    size = min(subset_size, smallest)
    cells = {s: {r: kid(real[r], synthetic[s], subsets, size, seed) for r in classes}
             for s in classes}
    margin = {}
    for s in classes:
        others = [cells[s][r].mean for r in classes if r != s]
        margin[s] = (min(others) - cells[s][s].mean) if others else math.nan
    counts = {"synthetic": {c: len(synthetic[c]) for c in classes},
              "real": {c: len(real[c]) for c in classes}}
    return PairMatrix(extractor, scheme, classes, cells, margin, size, subsets, counts)
