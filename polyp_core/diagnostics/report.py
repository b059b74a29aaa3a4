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
from polyp_core.data.manifest import source_group
from polyp_core.diagnostics.distances import PairMatrix, fid, kid, kid_matrix
from polyp_core.diagnostics.features import FeatureCache, FeatureExtractor
from polyp_core.diagnostics.memorisation import diversity_by_class, memorisation_report
from polyp_core.diagnostics.projections import (project, projection_figure, thumbnail_uri,
                                                write_projection_html)
from polyp_core.pool import register_dataset
from polyp_core.progress import Progress, no_progress
from polyp_core.runs import new_run_dir, save_run
from polyp_core.diagnostics.lesion import REGIONS
from polyp_core.validation import checked, rule
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import plotly.graph_objects as go

    from polyp_core.data.labels import LabelScheme
    from polyp_core.data.manifest import Manifest, ManifestItem


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
        region: ``frame`` (whole images) or ``lesion``: also the same diagnostics on crops
            around each polyp (``diagnostics.lesion``: KID per class pair and per generator with
            intervals over lesions from half-samples, the floor, the nearest real crop), beside
            the whole-frame figures.
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
    region: str = rule("frame", choices=REGIONS)


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
    lesion: dict = field(default_factory=dict)  # region lesion: the crops' figures


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
                    "unit": "groups" if any(source_group(real_items[k]) for k in index)
                    else "images"}
    return out


@dataclass
class _Sides:
    """What one diagnostics run compares: real items, synthetic images (sha, path, label) and
    their generators, a second real source when asked, and every side's features."""

    real_items: list[ManifestItem]
    synthetic: list[tuple[str, str, str | None]]
    made_by: list[str]
    real: np.ndarray
    syn: np.ndarray
    other: Manifest | None
    other_items: list[ManifestItem]
    other_features: np.ndarray

    @property
    def syn_labels(self) -> list[str]:
        return [label or "?" for _, _, label in self.synthetic]

    @property
    def several(self) -> bool:
        return len(set(self.made_by)) > 1


def _gather(db: Database, workspace: Workspace, config: DiagnoseConfig, manifest: Manifest,
            extractor: FeatureExtractor, progress: Progress) -> _Sides:
    """The images of each side and their features (cached by content hash)."""
    register_dataset(db, manifest)
    real_items = [i for i in manifest.items if config.real_split in (None, i.split)]
    with db.session() as session:
        images = queries.synthetic_images(session, config.generator, config.checkpoint)
        synthetic = [(im.sha256, im.path, im.label) for im in images]
        made_by = [im.provenance.generator if im.provenance else "?" for im in images]
    if not synthetic:
        raise ValueError(f"no synthetic images of generator {config.generator or 'any'}"
                         f"{'@' + config.checkpoint if config.checkpoint else ''} in the pool")
    cache = FeatureCache(workspace.features_dir, PixelCache(workspace.pixel_cache_dir))
    progress(0, 1, f"features of {len(real_items)} real and {len(synthetic)} synthetic images")
    real = cache.features(extractor, [(i.sha256, i.image) for i in real_items], config.size,
                          progress)
    syn = cache.features(extractor, [(s, p) for s, p, _ in synthetic], config.size, progress)
    other, other_items, other_features = None, [], np.zeros((0, real.shape[1]))
    if config.against:
        other = workspace.load_manifest(config.against)
        other_items = [i for i in other.items if config.against_split in (None, i.split)]
        if not other_items:
            raise ValueError(f"--against: data set {config.against!r} has no "
                             f"{config.against_split or ''} images".replace("  ", " "))
        register_dataset(db, other)
        other_features = cache.features(extractor, [(i.sha256, i.image) for i in other_items],
                                        config.size, progress)
    return _Sides(real_items, synthetic, made_by, real, syn, other, other_items, other_features)


def _by_class(labels: Sequence[str | None], features: np.ndarray, scheme: LabelScheme,
              keep: Callable[[int], bool] = lambda _k: True) -> dict[str, np.ndarray]:
    """Each class of ``scheme`` with at least two images: their feature rows."""
    out = {}
    for cls in scheme.classes:
        rows = [k for k, label in enumerate(labels) if keep(k) and scheme.mapping.get(label) == cls]
        if len(rows) >= 2:
            out[cls] = features[rows]
    return out


def _distances(sides: _Sides, manifest: Manifest, config: DiagnoseConfig, extractor_id: str,
               progress: Progress) -> dict:
    """KID class-pair matrices (all synthetic images, each generator when there are several,
    and the second real source), FID and the real-vs-real floor, per label scheme."""
    out = {"matrices": {}, "fid": {}, "floors": {}, "cross": {}, "by_generator": {}}
    syn_labels = [label for _, _, label in sides.synthetic]
    for scheme_name in manifest.schemes:
        scheme = get_scheme(scheme_name)
        real_all = _by_class([i.label for i in sides.real_items], sides.real, scheme)
        syn_by = _by_class(syn_labels, sides.syn, scheme)
        real_by = {c: f for c, f in real_all.items() if c in syn_by}
        syn_by = {c: f for c, f in syn_by.items() if c in real_by}
        if not real_by:
            continue

        def pairs(synthetic: dict[str, np.ndarray], name: str = scheme_name) -> PairMatrix:
            return kid_matrix(synthetic, real_by, extractor_id, name, config.subsets,
                              config.subset_size, config.seed)

        out["matrices"][scheme_name] = pairs(syn_by)
        out["floors"][scheme_name] = kid_floor(sides.real, sides.real_items, scheme, config)
        if sides.other is not None and scheme_name in sides.other.schemes:
            other_by = {c: f for c, f in _by_class([i.label for i in sides.other_items],
                                                   sides.other_features, scheme).items()
                        if c in real_by}
            if other_by:
                out["cross"][scheme_name] = pairs(other_by)
        out["fid"][scheme_name] = {c: asdict(fid(real_by[c], syn_by[c], config.seed))
                                   for c in real_by}
        if sides.several:  # several generators: each gets its own rows too
            for generator in sorted(set(sides.made_by)):
                own = {c: f for c, f in _by_class(
                    syn_labels, sides.syn, scheme,
                    lambda k, g=generator: sides.made_by[k] == g).items() if c in real_by}
                if own:
                    out["by_generator"].setdefault(generator, {})[scheme_name] = \
                        pairs(own).to_json()
        progress(1, 1, f"KID matrix for {scheme_name}")
    if not out["matrices"]:
        raise ValueError("no class has at least two real and two synthetic images")
    return out


def _figures(workspace: Workspace, folder: Path, sides: _Sides, config: DiagnoseConfig,
             extractor_id: str, matrices: dict[str, PairMatrix]) -> dict[str, Path]:
    """The projections (self-contained HTML with thumbnails, and their coordinates) and a
    heatmap of every KID matrix."""
    ids = [i.sha256 for i in sides.real_items] + [s for s, _, _ in sides.synthetic] + \
        [i.sha256 for i in sides.other_items]
    classes = [i.label for i in sides.real_items] + sides.syn_labels + \
        [i.label for i in sides.other_items]
    sources = ["real"] * len(sides.real_items) + \
        [f"synthetic: {g}" if sides.several else "synthetic" for g in sides.made_by] + \
        [f"real: {config.against}"] * len(sides.other_items)
    paths = [i.image for i in sides.real_items] + [p for _, p, _ in sides.synthetic] + \
        [i.image for i in sides.other_items]
    pixels = PixelCache(workspace.pixel_cache_dir)
    thumbs = [thumbnail_uri(pixels.rgb(p, sha, 128), size=128) for sha, p in zip(ids, paths)]
    files = {}
    for method in config.projections:
        coords = project(np.concatenate([sides.real, sides.syn, sides.other_features]), method,
                         config.seed, workspace.features_dir / "projections", ids, extractor_id)
        figure = projection_figure(coords, classes, sources, ids,
                                   f"{method.upper()} of {extractor_id} features", thumbs)
        files[method] = write_projection_html(figure, folder / f"projection_{method}.html")
        np.save(folder / f"projection_{method}.npy", coords)
    for scheme_name, matrix in matrices.items():
        pair_heatmap(matrix).write_html(str(folder / f"kid_{scheme_name}.html"),
                                        include_plotlyjs=True)
    return files


def _lesion_results(db: Database, workspace: Workspace, config: DiagnoseConfig, sides: _Sides,
                    manifest: Manifest, extractor: FeatureExtractor, progress: Progress) -> dict:
    """The diagnostics of crops around each polyp (``diagnostics.lesion``): per scheme the KID
    matrix, the floor and each diagonal cell's interval, per generator too; the nearest real
    crop of each synthetic one; how many images had no polyp region."""
    from polyp_core.diagnostics import lesion

    progress(0, 1, "cutting the polyp regions")
    real_kept, real_crops = lesion.real_crops(sides.real_items, config.size)
    shas = [s for s, _, _ in sides.synthetic]
    syn_kept, syn_crops, syn_units = lesion.synthetic_crops(db, workspace, shas, config.size)
    real = lesion.embed(extractor, real_crops, progress)
    syn = lesion.embed(extractor, syn_crops, progress)
    items = [sides.real_items[k] for k in real_kept]
    real_units = [i.group or i.id for i in items]
    syn_labels = [sides.syn_labels[k] for k in syn_kept]
    made_by = [sides.made_by[k] for k in syn_kept]
    out: dict = {"kid": {}, "kid_floor": {}, "intervals": {}, "by_generator": {},
                 "left_out": {"real": len(sides.real_items) - len(items),
                              "synthetic": len(shas) - len(syn_kept)},
                 "images": {"real": len(items), "synthetic": len(syn_kept)},
                 "unit": "groups" if any(source_group(i) for i in items) else "images"}
    for scheme_name in manifest.schemes:
        scheme = get_scheme(scheme_name)
        real_by = _by_class([i.label for i in items], real, scheme)
        syn_by = {c: f for c, f in _by_class(syn_labels, syn, scheme).items() if c in real_by}
        if not syn_by:
            continue
        real_by = {c: f for c, f in real_by.items() if c in syn_by}
        matrix = kid_matrix(syn_by, real_by, extractor.id, scheme_name, config.subsets,
                            config.subset_size, config.seed)
        out["kid"][scheme_name] = matrix.to_json()
        out["kid_floor"][scheme_name] = kid_floor(real, items, scheme, config)

        def interval(cls: str, keep: Callable[[int], bool] = lambda _k: True,
                     scheme: LabelScheme = scheme) -> dict:
            r = [k for k, i in enumerate(items) if scheme.mapping.get(i.label) == cls]
            s = [k for k, label in enumerate(syn_labels)
                 if keep(k) and scheme.mapping.get(label) == cls]
            return lesion.kid_interval(real[r], [real_units[k] for k in r], syn[s],
                                       [syn_units[k] for k in s], config.seed)

        out["intervals"][scheme_name] = {c: interval(c) for c in matrix.classes}
        for generator in sorted(set(made_by)):
            own = {c: f for c, f in _by_class(syn_labels, syn, scheme,
                                              lambda k, g=generator: made_by[k] == g).items()
                   if c in real_by}
            if not own:
                continue
            cells = kid_matrix(own, {c: real_by[c] for c in own}, extractor.id, scheme_name,
                               config.subsets, config.subset_size, config.seed)
            out["by_generator"].setdefault(generator, {})[scheme_name] = {
                c: {"kid": cells.cells[c][c].mean, "std": cells.cells[c][c].std,
                    "images": len(own[c]),
                    "interval": interval(c, lambda k, g=generator: made_by[k] == g)}
                for c in cells.classes}
    memo = memorisation_report(syn, [shas[k] for k in syn_kept], syn_labels, real,
                               [i.sha256 for i in items], config.near_copy, extractor.id)
    out["memorisation"] = memo.to_json()
    progress(1, 1, "polyp regions compared")
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
    extractor = FeatureExtractor(config.extractor, WeightsRegistry(workspace.weights_dir))
    sides = _gather(db, workspace, config, manifest, extractor, progress)
    found = _distances(sides, manifest, config, extractor.id, progress)
    matrices = found["matrices"]
    memo = memorisation_report(sides.syn, [s for s, _, _ in sides.synthetic], sides.syn_labels,
                               sides.real, [i.sha256 for i in sides.real_items], config.near_copy,
                               extractor.id)
    div = {"real": diversity_by_class(sides.real, [i.label for i in sides.real_items]),
           "synthetic": diversity_by_class(sides.syn, sides.syn_labels)}
    run_id, folder = new_run_dir(workspace, "diagnose")
    files = _figures(workspace, folder, sides, config, extractor.id, matrices)
    results = {"extractor": extractor.id, "kid": {s: m.to_json() for s, m in matrices.items()},
               "fid": found["fid"], "kid_floor": found["floors"], "memorisation": memo.to_json(),
               "diversity": div, "projections": {m: str(p) for m, p in files.items()},
               "generators": dict(sorted(Counter(sides.made_by).items()))}
    if found["by_generator"]:
        results["kid_by_generator"] = found["by_generator"]
    lesion_found = {}
    if config.region == "lesion":
        lesion_found = _lesion_results(db, workspace, config, sides, manifest, extractor,
                                       progress)
        results["lesion"] = lesion_found
    second = {}
    if sides.other is not None:
        shared = {i.sha256 for i in sides.other_items} & {i.sha256 for i in sides.real_items}
        second = {"dataset": config.against, "split": config.against_split,
                  "images": len(sides.other_items), "shared_images": len(shared),
                  "kid": {s: m.to_json() for s, m in found["cross"].items()}}
        results["second_real"] = second
    save_run(db, workspace, run_id, folder, "diagnose",
             asdict(config) | {"extractor_id": extractor.id}, results,
             {"real": [i.sha256 for i in sides.real_items],
              "synthetic": [s for s, _, _ in sides.synthetic],
              "second_real": [i.sha256 for i in sides.other_items]})
    return DiagnoseResult(run_id, folder, extractor.id, matrices, found["fid"], memo.to_json(),
                          div, files, time.perf_counter() - start, found["floors"], second,
                          lesion_found)
