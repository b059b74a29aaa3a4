"""Decoded pixels cached by content hash, so no image is decoded twice.

``info`` (size, mode) is kept for every decoded file so that a second import can validate
without decoding; resized RGB arrays are kept per size so a training run reads ``.npy``
files instead of decoding JPEGs. Files are written atomically; two processes filling the
cache at once both end with a complete file.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

from polyp_core.data.images import load_rgb, resize_rgb


class PixelCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.decodes = 0  # how many files this instance had to decode

    def _path(self, sha256: str, suffix: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{suffix}"

    def _write(self, path: Path, write) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                write(handle)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def info(self, sha256: str) -> dict | None:
        path = self._path(sha256, ".json")
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def put_info(self, sha256: str, info: dict) -> None:
        self._write(self._path(sha256, ".json"), lambda h: h.write(json.dumps(info).encode()))

    def get(self, sha256: str, size: int) -> np.ndarray | None:
        path = self._path(sha256, f"_{size}.npy")
        try:
            return np.load(path)
        except (OSError, ValueError):
            return None

    def put(self, sha256: str, size: int, array: np.ndarray) -> None:
        self._write(self._path(sha256, f"_{size}.npy"), lambda h: np.save(h, array))

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
