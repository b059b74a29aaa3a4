"""Checkpoint sweeps: the class-pair KID matrix per checkpoint, so a checkpoint is picked by
separation, not by looks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from polyp_core.diagnostics.distances import PairMatrix, kid_matrix
from polyp_core.progress import Progress, no_progress

#: (checkpoint, class, n, seed) -> n RGB uint8 images
Sampler = Callable[[str, str, int, int], Sequence[np.ndarray]]


@dataclass(frozen=True)
class SweepResult:
    checkpoints: tuple[str, ...]
    matrices: dict[str, PairMatrix]
    rows: list[dict]  # checkpoint, class, diagonal, nearest_off_diagonal, margin

    def best(self) -> str:
        """The checkpoint with the largest worst-class margin."""
        worst = {c: min(m.margin.values()) for c, m in self.matrices.items()}
        return max(self.checkpoints, key=lambda c: worst[c])


def checkpoint_sweep(sampler: Sampler, checkpoints: Sequence[str], classes: Sequence[str],
                     n_per_class: int, real: dict[str, np.ndarray],
                     embed: Callable[[Sequence[np.ndarray]], np.ndarray], extractor: str,
                     scheme: str, seed: int = 0, subsets: int = 50,
                     progress: Progress = no_progress) -> SweepResult:
    """Sample ``n_per_class`` images per class from each checkpoint (the same seeds for all
    checkpoints) and compute the class-pair KID matrix of each against ``real`` features."""
    matrices, rows = {}, []
    total = len(checkpoints) * len(classes)
    done = 0
    for checkpoint in checkpoints:
        synthetic = {}
        for cls in classes:
            synthetic[cls] = embed(sampler(checkpoint, cls, n_per_class, seed))
            done += 1
            progress(done, total, f"sampled {cls} from {checkpoint}")
        matrix = kid_matrix(synthetic, real, extractor, scheme, subsets=subsets, seed=seed)
        matrices[checkpoint] = matrix
        for cls in matrix.classes:
            off = [matrix.cells[cls][r].mean for r in matrix.classes if r != cls]
            rows.append({"checkpoint": checkpoint, "class": cls,
                         "diagonal": matrix.cells[cls][cls].mean,
                         "nearest_off_diagonal": min(off) if off else float("nan"),
                         "margin": matrix.margin[cls]})
    return SweepResult(tuple(checkpoints), matrices, rows)


def sweep_figure(result: SweepResult, title: str = "Checkpoint sweep"):
    """Margin per class across checkpoints (higher is better), diagonal KID dashed."""
    import plotly.graph_objects as go

    figure = go.Figure()
    classes = sorted({r["class"] for r in result.rows})
    for cls in classes:
        rows = [r for r in result.rows if r["class"] == cls]
        figure.add_trace(go.Scatter(x=[r["checkpoint"] for r in rows],
                                    y=[r["margin"] for r in rows], mode="lines+markers",
                                    name=f"{cls} margin"))
        figure.add_trace(go.Scatter(x=[r["checkpoint"] for r in rows],
                                    y=[r["diagonal"] for r in rows], mode="lines",
                                    line=dict(dash="dash"), name=f"{cls} KID to real {cls}"))
    figure.update_layout(title=title, xaxis_title="checkpoint", yaxis_title="KID",
                         template="plotly_white")
    return figure
