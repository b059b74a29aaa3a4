"""A procedural demo data set of colonoscopy-like frames, written in the hospital layout.

No downloaded data is needed by the demo or the tests: this module paints endoscope views
(circular field with a dark vignette, pink-red mucosa with haustral folds and a vessel
network, specular highlights, mild blur and noise) with one polyp per frame and its mask.
The polyp's look follows what endoscopists use to tell histology (NICE / Kudo):

* AD (adenoma): reddish, raised, lobulated outline, tubular or branched surface pattern
  (Kudo IIIL/IV, NICE 2: brown vessels around the pits).
* HP (hyperplastic): small, pale, smooth dome with a regular pattern of fine dots
  (Kudo II, NICE 1).
* SSA (sessile serrated): flat, pale, cloud-like surface, often a yellowish mucus cap and an
  indistinct border.

Each class varies, and SSA and HP overlap (pale, dotted, sometimes mucus on HP, none on
SSA), so a classifier learns them but not trivially. Several frames show the same lesion
from other viewpoints; ``lesion_id`` groups them, so a grouped split keeps them together.
The class mix follows the real data: about 68 % AD, 16 % SSA, 16 % HP.

Every frame is drawn from its own seed ``(seed, lesion, view)``: the output is the same
for a seed whatever the number of worker processes.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from polyp_core.files import write_csv
from polyp_core.progress import Progress, no_progress

#: class -> share of frames (the seed hospital data: ~540 AD, ~120 SSA, ~120 HP)
CLASS_MIX = {"AD": 0.68, "SSA": 0.16, "HP": 0.16}
#: the hospital data spells SSA "ASS"; the phantom writes the same so import is exercised
RAW_LABEL = {"AD": "AD", "SSA": "ASS", "HP": "HP"}
HISTOLOGIA = {"AD": ("Adenoma tubular", "Adenoma tubulovelloso"),
              "SSA": ("Lesión serrada sésil",), "HP": ("Pólipo hiperplásico",)}


@dataclass(frozen=True)
class Lesion:
    """What stays the same across the frames of one polyp."""

    index: int
    cls: str
    seed: int
    n_views: int


def plan_lesions(n_frames: int, seed: int) -> list[Lesion]:
    """Lesions (1-3 views each) whose frames add up to ``n_frames`` in the class mix."""
    rng = np.random.default_rng([seed, 7919])
    targets = {c: int(round(share * n_frames)) for c, share in CLASS_MIX.items()}
    targets["AD"] += n_frames - sum(targets.values())
    lesions: list[Lesion] = []
    for cls in CLASS_MIX:
        left = targets[cls]
        while left > 0:
            views = int(min(left, rng.choice([1, 2, 3], p=[0.35, 0.4, 0.25])))
            lesions.append(Lesion(0, cls, int(rng.integers(2**31)), views))
            left -= views
    order = rng.permutation(len(lesions))
    return [Lesion(i, lesions[j].cls, lesions[j].seed, lesions[j].n_views)
            for i, j in enumerate(order)]


def _noise_grid(rng: np.random.Generator, cells: int) -> np.ndarray:
    return rng.standard_normal((cells + 3, cells + 3))


def _sample(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth noise at coordinates in grid cells (cubic, wraps around)."""
    return ndimage.map_coordinates(grid, [y, x], order=3, mode="grid-wrap")


def _field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    small = rng.standard_normal((cells, cells))
    big = ndimage.zoom(small, size / cells, order=3, mode="grid-wrap", grid_mode=True)
    big = big[:size, :size]
    return (big - big.mean()) / (big.std() + 1e-6)


def _lesion_params(lesion: Lesion) -> dict:
    rng = np.random.default_rng(lesion.seed)
    cls = lesion.cls
    p: dict = {"cls": cls}
    p["harmonics"] = [(k, a, rng.uniform(0, 2 * np.pi)) for k, a in zip(
        range(2, 7), rng.uniform(0, 1, 5) * {"AD": 0.13, "HP": 0.04, "SSA": 0.09}[cls])]
    p["aspect"] = rng.uniform(0.75, 1.0)
    if cls == "AD":
        p["radius"] = rng.uniform(0.17, 0.32)
        p["height"] = rng.uniform(0.7, 1.0)
        p["soft"] = rng.uniform(0.03, 0.07)
        pale = rng.random() < 0.15  # some adenomas are pale
        p["colour"] = np.array([0.80, 0.40, 0.38]) if pale else np.array(
            [rng.uniform(0.74, 0.86), rng.uniform(0.28, 0.40), rng.uniform(0.26, 0.36)])
        p["pattern"] = "branched" if rng.random() < 0.7 else "tubular"
        p["pattern_strength"] = rng.uniform(0.25, 0.5)
        p["mucus"] = 0.0
    else:
        # SSA and HP share pale colours and dots; size, flatness and mucus tell them apart
        # on average but not always.
        ssa = cls == "SSA"
        p["radius"] = rng.uniform(0.16, 0.34) if ssa else rng.uniform(0.09, 0.22)
        p["height"] = rng.uniform(0.1, 0.4) if ssa else rng.uniform(0.3, 0.7)
        p["soft"] = rng.uniform(0.08, 0.22) if ssa else rng.uniform(0.04, 0.12)
        p["colour"] = np.array([rng.uniform(0.84, 0.94), rng.uniform(0.55, 0.68),
                                rng.uniform(0.50, 0.62)])
        p["pattern"] = ("cloud" if rng.random() < 0.6 else "dots") if ssa else (
            "dots" if rng.random() < 0.8 else "cloud")
        p["pattern_strength"] = rng.uniform(0.12, 0.3)
        p["mucus"] = (rng.uniform(0.35, 0.75) if rng.random() < 0.7 else 0.0) if ssa else (
            rng.uniform(0.15, 0.35) if rng.random() < 0.15 else 0.0)
    p["pattern_scale"] = rng.uniform(7, 12)
    p["pattern_grid"] = _noise_grid(rng, 48)
    p["warp_grid"] = _noise_grid(rng, 48)
    p["mucus_grid"] = _noise_grid(rng, 16)
    p["histologia"] = HISTOLOGIA[cls][int(rng.integers(len(HISTOLOGIA[cls])))]
    return p


def _mucosa(rng: np.random.Generator, u: np.ndarray, v: np.ndarray,
            size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The colon wall: a tunnel towards the lumen, haustral folds around it, vessels and colour
    noise. Returns ``(rgb float, lumen centre, depth falloff)``."""
    lumen = rng.uniform(-0.55, 0.55, 2)
    r_l = np.hypot(u - lumen[0], v - lumen[1])
    warp = _field(rng, size, 6)
    folds = np.sin(2 * np.pi * (rng.uniform(1.1, 1.9) * np.log(r_l + 0.15) + 0.3 * warp
                                + 0.25 * np.cos(np.arctan2(v - lumen[1], u - lumen[0]) * 2)))
    ridge = np.clip(folds, 0, 1) ** 2 * np.clip(r_l / 0.4, 0, 1)
    depth = 1.0 - 0.85 * np.exp(-(r_l / rng.uniform(0.22, 0.38)) ** 2)
    base = np.array([rng.uniform(0.80, 0.92), rng.uniform(0.38, 0.50), rng.uniform(0.34, 0.44)])
    tint = _field(rng, size, 5)[..., None] * np.array([0.03, 0.03, 0.02])
    rgb = base + tint
    rgb = rgb * (0.78 + 0.22 * ridge[..., None] - 0.08 * np.clip(-folds, 0, 1)[..., None])
    vessels = np.zeros((size, size))
    for cells, width, weight in ((9, 0.06, 0.4), (18, 0.045, 0.3)):
        vessels = np.maximum(vessels, weight * np.exp(-(_field(rng, size, cells) / width) ** 2))
    vessel_colour = np.array([0.50, 0.12, 0.16])
    return rgb * (1 - vessels[..., None]) + vessel_colour * vessels[..., None], lumen, depth


def _polyp_frame(rng: np.random.Generator, p: dict, u: np.ndarray, v: np.ndarray,
                 lumen: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The polyp placed away from the lumen, in its own rotated and scaled coordinates.
    Returns ``(x, y, d)``: lesion coordinates and the distance to its (lobed) edge, < 1 inside."""
    for _ in range(20):
        centre = rng.uniform(-0.5, 0.5, 2)
        if np.hypot(*(centre - lumen)) > 0.35:
            break
    scale = p["radius"] * rng.uniform(0.8, 1.2)
    angle = rng.uniform(0, 2 * np.pi)
    du, dv = u - centre[0], v - centre[1]
    x = (np.cos(angle) * du + np.sin(angle) * dv) / scale
    y = (-np.sin(angle) * du + np.cos(angle) * dv) / (scale * p["aspect"])
    theta = np.arctan2(y, x)
    edge = 1 + sum(a * np.cos(k * theta + phase) for k, a, phase in p["harmonics"])
    return x, y, np.hypot(x, y) / edge


def _polyp_surface(p: dict, x: np.ndarray, y: np.ndarray, d: np.ndarray) -> np.ndarray:
    """The polyp's colour with its surface pattern (and mucus cap), in lesion coordinates, so
    every view shows the same polyp."""
    s = p["pattern_scale"]
    px, py = (x + 1.5) * s, (y + 1.5) * s
    if p["pattern"] in ("branched", "tubular"):
        w = 1.2 * _sample(p["warp_grid"], px / 3, py / 3)
        if p["pattern"] == "branched":
            n = _sample(p["pattern_grid"], px + w, py + w)
            groove = np.exp(-(n / 0.35) ** 2)
        else:
            groove = np.abs(np.sin(2.2 * (px + w))) < 0.35
        pattern = -groove.astype(float)  # darker grooves between the pits
    elif p["pattern"] == "dots":
        jitter = 0.4 * _sample(p["warp_grid"], px / 2, py / 2)
        dots = (np.cos(2 * np.pi * (px * 0.9 + jitter)) * np.cos(2 * np.pi * (py * 0.9 + jitter)))
        pattern = np.clip((dots - 0.55) / 0.45, 0, 1)  # small bright spots on a regular grid
    else:
        pattern = np.tanh(_sample(p["pattern_grid"], px / 3, py / 3))  # cloud-like mottling
    polyp = p["colour"] * (1 + p["pattern_strength"] * pattern[..., None] * np.array([0.8, 1.1, 1.1]))
    if p["mucus"] > 0:
        cap = _sample(p["mucus_grid"], (x + 1.5) * 3, (y + 1.5) * 3) + 0.6 - d
        cap_alpha = p["mucus"] * np.clip(cap, 0, 1)
        polyp = polyp * (1 - cap_alpha[..., None]) + np.array([0.86, 0.74, 0.36]) * cap_alpha[..., None]
    return polyp


def _specular(rng: np.random.Generator, rgb: np.ndarray, height: np.ndarray, mask: np.ndarray,
              size: int) -> np.ndarray:
    """Specular highlights: on the polyp's top and scattered on the wet folds."""
    spots = np.zeros((size, size))
    top = np.argwhere(height > 0.7 * height.max()) if mask.any() else np.empty((0, 2))
    points = [top[i] for i in rng.choice(len(top), min(len(top), 3), replace=False)] if len(top) else []
    points += [rng.integers(0, size, 2) for _ in range(int(rng.integers(4, 10)))]
    rows, cols = np.ogrid[:size, :size]
    for py_, px_ in points:
        sigma = rng.uniform(0.6, 2.2) * size / 256
        spots = np.maximum(spots, np.exp(-((rows - py_) ** 2 + (cols - px_) ** 2) / (2 * sigma ** 2)))
    return rgb * (1 - spots[..., None]) + 1.0 * spots[..., None]


def render_frame(lesion: Lesion, view: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Paint one frame of ``lesion`` seen from viewpoint ``view``.

    Returns:
        ``(rgb uint8 (size, size, 3), mask bool (size, size))``.
    """
    p = _lesion_params(lesion)
    rng = np.random.default_rng([lesion.seed, view, 31])
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    u, v = np.meshgrid(coords, coords)
    r_img = np.hypot(u, v)
    rgb, lumen, depth = _mucosa(rng, u, v, size)
    x, y, d = _polyp_frame(rng, p, u, v, lumen)
    mask = d < 1.0
    alpha = 1 / (1 + np.exp(-(1 - d) / p["soft"]))
    height = p["height"] * np.clip(1 - d ** 2, 0, 1) ** 0.6
    polyp = _polyp_surface(p, x, y, d)

    light = rng.uniform(-1, 1, 2)
    light /= np.linalg.norm(light) + 1e-6
    gy, gx = np.gradient(height * size / 10)
    shade = np.clip(1 + 0.35 * (gx * light[0] + gy * light[1]) / np.sqrt(1 + gx ** 2 + gy ** 2),
                    0.5, 1.4)
    rgb = rgb * (1 - alpha[..., None]) + polyp * alpha[..., None]
    rgb = rgb * (shade * (1 + 0.15 * height))[..., None]
    rgb = _specular(rng, rgb, height, mask, size)

    # Lighting falls off with depth and towards the edge of the circular field.
    rgb = rgb * (depth * (1 - 0.55 * r_img ** 3))[..., None]
    field = r_img < rng.uniform(0.95, 1.05)
    field &= (np.abs(u) + np.abs(v)) < rng.uniform(1.30, 1.45)  # clipped corners, as many scopes
    rgb = rgb * field[..., None]
    rgb = ndimage.gaussian_filter(rgb, sigma=(rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.0), 0))
    rgb = rgb + rng.normal(0, rng.uniform(0.006, 0.018), rgb.shape)
    image = (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)
    return image, mask & field


def frame_id(seed: int, lesion: int, view: int) -> str:
    """An opaque id: nothing in a file name may hint at the class (blind review)."""
    return hashlib.sha256(f"phantom-{seed}-{lesion}-{view}".encode()).hexdigest()[:32]


def _write_lesion(args: tuple[Lesion, int, int, str]) -> list[dict[str, str]]:
    lesion, size, seed, out = args
    rows = []
    params = _lesion_params(lesion)
    for view in range(lesion.n_views):
        image, mask = render_frame(lesion, view, size)
        name = frame_id(seed, lesion.index, view)
        Image.fromarray(image).save(Path(out) / "images" / f"{name}.jpg", quality=92)
        Image.fromarray(mask.astype(np.uint8) * 255).save(Path(out) / "masks" / f"{name}.png")
        rows.append({"image_id": name, "cls": RAW_LABEL[lesion.cls],
                     "Histologia": params["histologia"], "lesion_id": f"L{lesion.index:04d}"})
    return rows


def write_phantom(out: Path | str, n_frames: int = 1100, size: int = 256, seed: int = 0,
                  workers: int | None = None, progress: Progress = no_progress) -> Path:
    """Write the demo data set in the hospital layout: ``images/``, ``masks/``, ``labels.csv``.

    Args:
        out: folder to write (created; must be empty or absent).
        n_frames: number of frames (class mix as :data:`CLASS_MIX`).
        size: frame size in pixels (square).
        seed: the same seed gives the same pixels.
        workers: processes to use (default: all cores).

    Returns:
        the path of ``labels.csv``.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; the phantom is written into a new folder")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    lesions = plan_lesions(n_frames, seed)
    jobs = [(lesion, size, seed, str(out)) for lesion in lesions]
    workers = workers or os.cpu_count() or 1
    rows: list[dict[str, str]] = []
    done = 0
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_write_lesion, jobs, chunksize=8):
                rows.extend(result)
                done += len(result)
                progress(done, n_frames, f"painted {done}/{n_frames} frames")
    else:
        for job in jobs:
            rows.extend(_write_lesion(job))
            done = len(rows)
            progress(done, n_frames, f"painted {done}/{n_frames} frames")
    labels = out / "labels.csv"
    return write_csv(labels, rows, ["image_id", "cls", "Histologia", "lesion_id"])
