"""2-D projections of real and synthetic features together (UMAP, t-SNE, PCA), cached.

Figures are plotly scatter plots coloured by class and marked by source; every point
carries its image id (``customdata``), and the HTML export shows the point's thumbnail
when the mouse is over it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import plotly.graph_objects as go


def _pca(features: np.ndarray, seed: int, **params: object) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=seed, **params).fit_transform(features)


def _tsne(features: np.ndarray, seed: int, perplexity: float = 30.0,
          **params: object) -> np.ndarray:
    from sklearn.manifold import TSNE

    perplexity = min(perplexity, max(2.0, (len(features) - 1) / 3))
    return TSNE(n_components=2, random_state=seed, perplexity=perplexity, init="pca",
                **params).fit_transform(features)


def _umap(features: np.ndarray, seed: int, n_neighbors: int = 15, min_dist: float = 0.1,
          **params: object) -> np.ndarray:
    import umap

    n_neighbors = min(n_neighbors, len(features) - 1)
    reducer = umap.UMAP(n_components=2, random_state=seed, n_neighbors=n_neighbors,
                        min_dist=min_dist, metric="cosine", **params)
    return reducer.fit_transform(features)


PROJECTIONS: dict[str, Callable[..., np.ndarray]] = {"umap": _umap, "tsne": _tsne, "pca": _pca}


def projection_key(image_ids: Sequence[str], extractor: str, method: str, params: dict,
                   seed: int) -> str:
    blob = json.dumps({"ids": list(image_ids), "extractor": extractor, "method": method,
                       "params": params, "seed": seed}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def project(features: np.ndarray, method: str = "umap", seed: int = 0,
            cache_dir: Path | None = None, image_ids: Sequence[str] = (), extractor: str = "",
            **params: object) -> np.ndarray:
    """``(n, 2)`` coordinates; cached per (image set, extractor, method, parameters, seed).

    Raises:
        ValueError: unknown method (naming the known ones) or fewer than 3 points.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; choose one of: {', '.join(PROJECTIONS)}")
    if len(features) < 3:
        raise ValueError("a projection needs at least 3 images")
    path = None
    if cache_dir is not None and image_ids:
        key = projection_key(image_ids, extractor, method, params, seed)
        path = Path(cache_dir) / f"{method}-{key}.npy"
        if path.is_file():
            return np.load(path)
    coords = np.asarray(PROJECTIONS[method](np.asarray(features, np.float32), seed, **params),
                        dtype=np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, coords)
    return coords


def thumbnail_uri(rgb: np.ndarray, size: int = 96) -> str:
    image = Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def projection_figure(coords: np.ndarray, classes: Sequence[str], sources: Sequence[str],
                      image_ids: Sequence[str], title: str,
                      thumbnails: Sequence[str] | None = None) -> go.Figure:
    """A plotly scatter: colour = class, marker = source; ``customdata`` = (id, thumbnail)."""
    import plotly.graph_objects as go

    symbols = ["circle", "diamond", "x", "square", "triangle-up", "star", "cross"]
    palette = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    class_names = sorted(set(classes))
    source_names = sorted(set(sources), key=lambda s: (s != "real", s))
    figure = go.Figure()
    for ci, cls in enumerate(class_names):
        for si, source in enumerate(source_names):
            idx = [i for i in range(len(coords)) if classes[i] == cls and sources[i] == source]
            if not idx:
                continue
            custom = [[image_ids[i], thumbnails[i] if thumbnails else ""] for i in idx]
            figure.add_trace(go.Scattergl(
                x=coords[idx, 0], y=coords[idx, 1], mode="markers", name=f"{cls} · {source}",
                marker=dict(color=palette[ci % len(palette)], symbol=symbols[si % len(symbols)],
                            size=7 if source == "real" else 8, opacity=0.75,
                            line=dict(width=0.5, color="white")),
                customdata=custom,
                hovertemplate=f"{cls} · {source}<br>%{{customdata[0]}}<extra></extra>"))
    figure.update_layout(title=title, legend_title_text="class · source", template="plotly_white",
                         xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False))
    return figure


#: shows the hovered point's thumbnail (customdata[1]) in a corner of the page; a click pins
#: the image large with its id until the next click
HOVER_THUMBNAIL_JS = """
var plot = document.getElementsByClassName('plotly-graph-div')[0];
var box = document.createElement('img');
box.style = 'position:fixed;right:16px;top:16px;width:192px;height:192px;border:2px solid #444;display:none;z-index:10';
document.body.appendChild(box);
var pinned = document.createElement('figure');
pinned.style = 'position:fixed;left:16px;top:16px;margin:0;padding:6px;background:#fff;border:2px solid #444;display:none;z-index:11;font:12px sans-serif';
pinned.innerHTML = '<img style="width:256px;height:256px;image-rendering:auto"><figcaption></figcaption>';
pinned.onclick = function(){ pinned.style.display = 'none'; };
document.body.appendChild(pinned);
plot.on('plotly_hover', function(d){ var c = d.points[0].customdata; if (c && c[1]) { box.src = c[1]; box.style.display = 'block'; } });
plot.on('plotly_unhover', function(){ box.style.display = 'none'; });
plot.on('plotly_click', function(d){ var c = d.points[0].customdata; if (c && c[1]) {
  pinned.firstChild.src = c[1]; pinned.lastChild.textContent = d.points[0].data.name + ' · ' + c[0];
  pinned.style.display = 'block'; } });
"""


def write_projection_html(figure: go.Figure, path: Path) -> Path:
    """Self-contained HTML (plotly.js inlined: works offline) with thumbnails on hover."""
    figure.write_html(str(path), include_plotlyjs=True, full_html=True,
                      post_script=HOVER_THUMBNAIL_JS)
    return Path(path)
