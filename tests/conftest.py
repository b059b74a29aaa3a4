from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from polyp_core.workspace import Workspace

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NEOPOLYP = SHARED_DATA / "neopolyp"


def requires_neopolyp():
    return pytest.mark.skipif(
        not (NEOPOLYP / "labels.csv").is_file(),
        reason=f"real NeoPolyp data not present at {NEOPOLYP} (../shared/data is for development)")


@pytest.fixture
def workspace(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws")


def write_image(path: Path, rgb: np.ndarray | None = None, size=(40, 32), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if rgb is None:
        rgb = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def write_mask(path: Path, size=(40, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[size[1] // 4: size[1] // 2, size[0] // 4: size[0] // 2] = 255
    Image.fromarray(mask).save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def make_hospital(root: Path, labels: dict[str, str], masks: bool = True,
                  header=("image_id", "cls", "Histologia"), suffix=".png") -> Path:
    """A hospital-layout folder: images/, masks/, labels.csv."""
    rows = []
    for index, (image_id, label) in enumerate(labels.items()):
        write_image(root / "images" / f"{image_id}{suffix}", seed=index)
        if masks:
            write_mask(root / "masks" / f"{image_id}.png")
        rows.append([image_id, label, f"histo-{label}"])
    write_csv(root / "labels.csv", list(header), rows)
    return root


def three_class_labels(n_ad=14, n_ssa=6, n_hp=6, ssa_spelling="ASS") -> dict[str, str]:
    labels = {f"ad{i:03d}": "AD" for i in range(n_ad)}
    labels |= {f"ss{i:03d}": ssa_spelling for i in range(n_ssa)}
    labels |= {f"hp{i:03d}": "HP" for i in range(n_hp)}
    return labels


@pytest.fixture(scope="session")
def small_phantom(tmp_path_factory) -> Path:
    """A small phantom set in the hospital layout (painted once per test session)."""
    from polyp_core.data.phantom import write_phantom

    out = tmp_path_factory.mktemp("phantom") / "phantom"
    write_phantom(out, n_frames=60, size=64, seed=3, workers=1)
    return out
