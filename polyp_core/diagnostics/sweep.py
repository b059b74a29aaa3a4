"""Checkpoint sweeps: the class-pair KID matrix per checkpoint, so a checkpoint is picked by
separation, not by looks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from polyp_core.diagnostics.distances import PairMatrix, kid_matrix
from polyp_core.progress import Progress, no_progress

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from polyp_core.workspace import Workspace

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


def sweep_figure(result: SweepResult, title: str = "Checkpoint sweep") -> go.Figure:
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


def sweep_generator(workspace: Workspace, model_id: str, dataset: str, n_per_class: int = 50,
                    checkpoints: Sequence[str] | None = None,
                    extractor_name: str = "efficientnet_lite0",
                    size: int = 224, steps: int = 50, guidance: float = 2.0,
                    scheduler: str = "ddpm",
                    seed: int = 0, subsets: int = 50,
                    progress: Progress = no_progress) -> SweepResult:
    """Sweep every checkpoint of a generator in the workspace against the real training split.

    The same seeds are used at every checkpoint, so differences come from the weights.
    """
    from polyp_core.backbones import WeightsRegistry
    from polyp_core.data.cache import PixelCache
    from polyp_core.data.images import resize_rgb
    from polyp_core.diagnostics.features import FeatureCache, FeatureExtractor
    from polyp_core.generation.backends import load_generator
    from polyp_core.generation.ddpm import list_checkpoints
    from polyp_core.generation.request import SampleRequest

    manifest = workspace.load_manifest(dataset)
    folder = workspace.models_dir / model_id
    checkpoints = list(checkpoints or list_checkpoints(folder))
    if not checkpoints:
        raise ValueError(f"generator {model_id!r} has no checkpoints to sweep")
    extractor = FeatureExtractor(extractor_name, WeightsRegistry(workspace.weights_dir))
    cache = FeatureCache(workspace.features_dir, PixelCache(workspace.pixel_cache_dir))
    first = load_generator(workspace, model_id, checkpoints[0])
    real = {}
    for cls in first.classes:
        items = [i for i in manifest.items if i.split == "train" and manifest.label_of(i) == cls]
        real[cls] = cache.features(extractor, [(i.sha256, i.image) for i in items], size)
    generators = {checkpoints[0]: first}

    def sampler(checkpoint: str | None, cls: str, n: int, sample_seed: int) -> list[np.ndarray]:
        generator = generators.get(checkpoint) or load_generator(workspace, model_id, checkpoint)
        generators[checkpoint] = generator
        request = SampleRequest(class_label=cls, n=n, seed=sample_seed, steps=steps,
                                guidance=guidance, scheduler=scheduler)
        return [resize_rgb(g.rgb, size) for g in generator.sample(request)]

    return checkpoint_sweep(sampler, checkpoints, first.classes, n_per_class, real, extractor,
                            extractor.id, manifest.scheme, seed, subsets, progress)
