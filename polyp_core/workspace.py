"""The workspace: one folder on disk holding everything a studio session makes."""

from __future__ import annotations

import os
import re
from pathlib import Path

from polyp_core.data.manifest import Manifest

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_name(name: str, what: str = "data set") -> str:
    """Raise ``ValueError`` unless ``name`` is a safe folder name."""
    if not NAME_PATTERN.match(name or ""):
        raise ValueError(f"{what} name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
                         "starting with a letter or digit")
    return name


class Workspace:
    """Paths inside a workspace folder; creating one makes its folders.

    Layout (see DESIGN.md): ``datasets/``, ``models/``, ``synthetic/``, ``features/``,
    ``runs/``, ``cache/pixels/`` and ``weights/``.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        for folder in (self.datasets_dir, self.models_dir, self.synthetic_dir,
                       self.features_dir, self.runs_dir, self.pixel_cache_dir, self.weights_dir,
                       self.staging_dir):
            folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def default(cls) -> Workspace:
        """``$STUDIO_WORKSPACE`` or ``./workspace``."""
        return cls(os.environ.get("STUDIO_WORKSPACE", "workspace"))

    datasets_dir = property(lambda self: self.root / "datasets")
    models_dir = property(lambda self: self.root / "models")
    synthetic_dir = property(lambda self: self.root / "synthetic")
    features_dir = property(lambda self: self.root / "features")
    runs_dir = property(lambda self: self.root / "runs")
    pixel_cache_dir = property(lambda self: self.root / "cache" / "pixels")
    weights_dir = property(lambda self: self.root / "weights")
    staging_dir = property(lambda self: self.root / ".staging")
    sources_dir = property(lambda self: self.root / "sources")

    def dataset_dir(self, name: str) -> Path:
        return self.datasets_dir / check_name(name)

    def manifest_path(self, name: str) -> Path:
        return self.dataset_dir(name) / "manifest.json"

    def datasets(self) -> list[str]:
        return sorted(p.parent.name for p in self.datasets_dir.glob("*/manifest.json"))

    def load_manifest(self, name: str) -> Manifest:
        """Raises ``KeyError`` naming the data sets that exist."""
        path = self.manifest_path(name)
        if not path.is_file():
            known = ", ".join(self.datasets()) or "none"
            raise KeyError(f"no data set named {name!r} in {self.root} (data sets: {known})")
        return Manifest.load(path)

    def set_scheme(self, name: str, scheme: str) -> Manifest:
        """Switch a data set's active label scheme; raw labels are untouched."""
        manifest = self.load_manifest(name).with_scheme(scheme)
        manifest.save(self.manifest_path(name))
        return manifest
