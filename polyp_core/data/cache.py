"""Decoded pixels cached by content hash, so no image is decoded twice.

``info`` (size, mode) is kept for every decoded file so that a second import can validate
without decoding; resized RGB arrays are kept per size so a training run reads ``.npy``
files instead of decoding JPEGs. Files are written atomically; two processes filling the
cache at once both end with a complete file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from polyp_core.data.images import load_rgb, resize_rgb
from polyp_core.files import atomic_write


class PixelCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.decodes = 0  # how many files this instance had to decode

    def _path(self, sha256: str, suffix: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def info(self, sha256: str) -> dict | None:
        path = self._path(sha256, ".json")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def put_info(self, sha256: str, info: dict) -> None:
        atomic_write(self._path(sha256, ".json"), json.dumps(info))

    def get(self, sha256: str, size: int) -> np.ndarray | None:
        path = self._path(sha256, f"_{size}.npy")
        try:
            return np.load(path)
        except (OSError, ValueError):
            return None

    def put(self, sha256: str, size: int, array: np.ndarray) -> None:
        atomic_write(self._path(sha256, f"_{size}.npy"), lambda h: np.save(h, array))

    def decode(self, path: Path | str) -> np.ndarray:
        self.decodes += 1
        return load_rgb(path)

    def rgb(self, path: Path | str, sha256: str, size: int) -> np.ndarray:
        """The image at ``size`` x ``size``, from the cache or decoded once and stored."""
        cached = self.get(sha256, size)
        if cached is not None:
            return cached
        array = resize_rgb(self.decode(path), size)
        self.put(sha256, size, array)
        return array
