"""One diagnostic run over a data set and a synthetic pool: KID/FID per class pair in every
label scheme, memorisation, diversity and projections, stored as a run."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from polyp_core.backbones import WeightsRegistry
from polyp_core.data.cache import PixelCache
from polyp_core.data.labels import get_scheme
from polyp_core.diagnostics.distances import PairMatrix, fid, kid, kid_matrix
from polyp_core.diagnostics.features import FeatureCache, FeatureExtractor
from polyp_core.diagnostics.memorisation import diversity_by_class, memorisation_report
from polyp_core.diagnostics.projections import (project, projection_figure, thumbnail_uri,
                                                write_projection_html)
from polyp_core.pool import register_dataset
from polyp_core.progress import Progress, no_progress
from polyp_core.runs import new_run_dir, save_run
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database

if TYPE_CHECKING:
    from collections.abc import Sequence

    import plotly.graph_objects as go

    from polyp_core.data.labels import LabelScheme
    from polyp_core.data.manifest import ManifestItem


@checked
@dataclass(frozen=True)
class DiagnoseConfig:
    """What to compare.

    Attributes:
        dataset: the real data set.
        generator, checkpoint: which synthetic images (``None``: all in the pool).
        real_split: the real images to compare with and to search for copies in; the
            generator's training split by default (what it could have memorised).
        extractor, size: feature extractor and the image size fed to it.
        subsets, subset_size: KID subsets (the size adapts to the smallest group).
        projections: methods among ``umap``, ``tsne``, ``pca``.
        near_copy: cosine similarity above which a synthetic image is flagged as a copy.
        against, against_split: a second real source (another data set, e.g. another
            hospital's): its classes get their own KID rows against this data set's real
            classes, beside the synthetic rows, and join the projections, so a synthetic gap can
            be read against the gap between two real sources.
    """

    dataset: str
    generator: str | None = None
    checkpoint: str | None = None
    real_split: str | None = "train"
    extractor: str = "efficientnet_lite0"
    size: int = rule(224, lo=32, hi=1024)
    subsets: int = rule(100, lo=1, hi=100_000)
    subset_size: int = rule(1000, lo=2, hi=1_000_000)
    seed: int = 0
    projections: tuple[str, ...] = rule(("umap",), choices=("umap", "tsne", "pca"))
    near_copy: float = rule(0.95, lo=0.0, hi=1.0)
    against: str | None = None
    against_split: str | None = None


@dataclass(frozen=True)
class DiagnoseResult:
    run_id: str
    folder: Path
    extractor: str
    matrices: dict[str, PairMatrix]  # scheme -> matrix
    fid: dict[str, dict[str, dict]]  # scheme -> class -> FID of synthetic c vs real c
    memorisation: dict
    diversity: dict[str, dict[str, float]]  # "real"/"synthetic" -> class -> diversity
    projection_files: dict[str, Path]
    seconds: float
    kid_floor: dict[str, dict[str, dict]] = field(default_factory=dict)  # scheme -> class -> KID
    second_real: dict = field(default_factory=dict)  # the --against source's KID rows


def pair_heatmap(matrix: PairMatrix) -> go.Figure:
    """The class-pair matrix as a heatmap with mean ± std in each cell."""
    import plotly.graph_objects as go

    classes = list(matrix.classes)
    z = [[matrix.cells[s][r].mean for r in classes] for s in classes]
    text = [[f"{matrix.cells[s][r].mean:.4f}<br>± {matrix.cells[s][r].std:.4f}" for r in classes]
            for s in classes]
    figure = go.Figure(go.Heatmap(z=z, x=[f"real {c}" for c in classes],
                                  y=[f"synthetic {c}" for c in classes], text=text,
                                  texttemplate="%{text}", colorscale="Viridis"))
    figure.update_layout(
        title=f"KID, {matrix.scheme} ({matrix.extractor}; {matrix.subsets}×{matrix.subset_size}): "
              "diagonal should be low, off-diagonal high", template="plotly_white")
    figure.update_yaxes(autorange="reversed")
    return figure


def kid_floor(real_features: np.ndarray, real_items: Sequence[ManifestItem], scheme: LabelScheme,
              config: DiagnoseConfig) -> dict:
    """What "close" means: per class, the KID of two group-disjoint halves of the real images
    (patients/lesions split in two, every frame of a group on one side; frames when no groups
    are known). A synthetic-vs-real KID near this floor is as close as real data gets to
    itself; a class with fewer than two groups (or four images) has no floor."""
    rng = np.random.default_rng(config.seed)
    out = {}
    for cls in scheme.classes:
        index = [k for k, i in enumerate(real_items) if scheme.mapping.get(i.label) == cls]
        groups = sorted({real_items[k].group or real_items[k].id for k in index})
        if len(groups) < 2 or len(index) < 4:
            continue
        first = set(rng.permutation(groups)[: len(groups) // 2].tolist())
        a = [k for k in index if (real_items[k].group or real_items[k].id) in first]
        b = [k for k in index if (real_items[k].group or real_items[k].id) not in first]
        if len(a) < 2 or len(b) < 2:
            continue
        result = kid(real_features[a], real_features[b], config.subsets, config.subset_size,
                     config.seed)
        out[cls] = {"mean": result.mean, "std": result.std, "n_a": len(a), "n_b": len(b),
                    "groups": len(groups),
                    "unit": "groups" if any(real_items[k].group for k in index) else "images"}
    return out


def diagnose(db: Database, workspace: Workspace, config: DiagnoseConfig,
             progress: Progress = no_progress) -> DiagnoseResult:
    """Run every diagnostic and store the run (config, image ids, results, figures).

    Raises:
        KeyError: unknown data set.
        ValueError: no synthetic images match, or no class has both kinds.
    """
    start = time.perf_counter()
    manifest = workspace.load_manifest(config.dataset)
    register_dataset(db, manifest)
    real_items = [i for i in manifest.items if config.real_split in (None, i.split)]
    with db.session() as session:
        images = queries.synthetic_images(session, config.generator, config.checkpoint)
        synthetic = [(im.sha256, im.path, im.label) for im in images]
        made_by = [im.provenance.generator if im.provenance else "?" for im in images]
    if not synthetic:
        raise ValueError(f"no synthetic images of generator {config.generator or 'any'}"
                         f"{'@' + config.checkpoint if config.checkpoint else ''} in the pool")
    syn_labels = [label or "?" for _, _, label in synthetic]
    extractor = FeatureExtractor(config.extractor, WeightsRegistry(workspace.weights_dir))
    cache = FeatureCache(workspace.features_dir, PixelCache(workspace.pixel_cache_dir))
    progress(0, 1, f"features of {len(real_items)} real and {len(synthetic)} synthetic images")
    real_features = cache.features(extractor, [(i.sha256, i.image) for i in real_items],
                                   config.size, progress)
    syn_features = cache.features(extractor, [(s, p) for s, p, _ in synthetic], config.size,
                                  progress)
    other, other_items, other_features = None, [], np.zeros((0, real_features.shape[1]))
    if config.against:
        other = workspace.load_manifest(config.against)
        other_items = [i for i in other.items if config.against_split in (None, i.split)]
        if not other_items:
            raise ValueError(f"--against: data set {config.against!r} has no "
                             f"{config.against_split or ''} images".replace("  ", " "))
        register_dataset(db, other)
        other_features = cache.features(extractor, [(i.sha256, i.image) for i in other_items],
                                        config.size, progress)

    matrices, fids, floors, cross, by_generator = {}, {}, {}, {}, {}
    for scheme_name in manifest.schemes:
        scheme = get_scheme(scheme_name)
        real_by, syn_by = {}, {}
        for cls in scheme.classes:
            r = [k for k, i in enumerate(real_items) if scheme.mapping.get(i.label) == cls]
            s = [k for k, (_, _, label) in enumerate(synthetic) if scheme.mapping.get(label) == cls]
            if len(r) >= 2 and len(s) >= 2:
                real_by[cls], syn_by[cls] = real_features[r], syn_features[s]
        if not real_by:
            continue
        matrices[scheme_name] = kid_matrix(syn_by, real_by, extractor.id, scheme_name,
                                           config.subsets, config.subset_size, config.seed)
        floors[scheme_name] = kid_floor(real_features, real_items, scheme, config)
        if other is not None and scheme_name in other.schemes:
            other_by = {}
            for cls in scheme.classes:
                o = [k for k, i in enumerate(other_items) if scheme.mapping.get(i.label) == cls]
                if len(o) >= 2 and cls in real_by:
                    other_by[cls] = other_features[o]
            if other_by:
                cross[scheme_name] = kid_matrix(other_by, real_by, extractor.id, scheme_name,
                                                config.subsets, config.subset_size, config.seed)
        fids[scheme_name] = {c: asdict(fid(real_by[c], syn_by[c], config.seed)) for c in real_by}
        if len(set(made_by)) > 1:  # several generators: each gets its own rows too
            for generator in sorted(set(made_by)):
                own = {}
                for cls in real_by:
                    s = [k for k, (_, _, label) in enumerate(synthetic)
                         if made_by[k] == generator and scheme.mapping.get(label) == cls]
                    if len(s) >= 2:
                        own[cls] = syn_features[s]
                if own:
                    by_generator.setdefault(generator, {})[scheme_name] = kid_matrix(
                        own, real_by, extractor.id, scheme_name, config.subsets,
                        config.subset_size, config.seed).to_json()
        progress(1, 1, f"KID matrix for {scheme_name}")
    if not matrices:
        raise ValueError("no class has at least two real and two synthetic images")

    memo = memorisation_report(syn_features, [s for s, _, _ in synthetic], syn_labels, real_features,
                               [i.sha256 for i in real_items], config.near_copy, extractor.id)
    div = {"real": diversity_by_class(real_features, [i.label for i in real_items]),
           "synthetic": diversity_by_class(syn_features, syn_labels)}

    run_id, folder = new_run_dir(workspace, "diagnose")
    ids = [i.sha256 for i in real_items] + [s for s, _, _ in synthetic] + \
        [i.sha256 for i in other_items]
    classes = [i.label for i in real_items] + syn_labels + [i.label for i in other_items]
    several = len(set(made_by)) > 1
    sources = ["real"] * len(real_items) + \
        [f"synthetic: {g}" if several else "synthetic" for g in made_by] + \
        [f"real: {config.against}"] * len(other_items)
    paths = [i.image for i in real_items] + [p for _, p, _ in synthetic] + \
        [i.image for i in other_items]
    pixels = PixelCache(workspace.pixel_cache_dir)
    thumbs = [thumbnail_uri(pixels.rgb(p, sha, 128), size=128) for sha, p in zip(ids, paths)]
    files = {}
    for method in config.projections:
        coords = project(np.concatenate([real_features, syn_features, other_features]), method,
                         config.seed,
                         workspace.features_dir / "projections", ids, extractor.id)
        figure = projection_figure(coords, classes, sources, ids,
                                   f"{method.upper()} of {extractor.id} features", thumbs)
        files[method] = write_projection_html(figure, folder / f"projection_{method}.html")
        np.save(folder / f"projection_{method}.npy", coords)
    for scheme_name, matrix in matrices.items():
        pair_heatmap(matrix).write_html(str(folder / f"kid_{scheme_name}.html"),
                                        include_plotlyjs=True)

    results = {"extractor": extractor.id, "kid": {s: m.to_json() for s, m in matrices.items()},
               "fid": fids, "kid_floor": floors, "memorisation": memo.to_json(), "diversity": div,
               "projections": {m: str(p) for m, p in files.items()},
               "generators": dict(sorted(Counter(made_by).items()))}
    if by_generator:
        results["kid_by_generator"] = by_generator
    second = {}
    if other is not None:
        shared = {i.sha256 for i in other_items} & {i.sha256 for i in real_items}
        second = {"dataset": config.against, "split": config.against_split,
                  "images": len(other_items), "shared_images": len(shared),
                  "kid": {s: m.to_json() for s, m in cross.items()}}
        results["second_real"] = second
    save_run(db, workspace, run_id, folder, "diagnose", asdict(config) | {"extractor_id": extractor.id},
             results, {"real": [i.sha256 for i in real_items], "synthetic": [s for s, _, _ in synthetic],
                       "second_real": [i.sha256 for i in other_items]})
    return DiagnoseResult(run_id, folder, extractor.id, matrices, fids, memo.to_json(), div, files,
                          time.perf_counter() - start, floors, second)
