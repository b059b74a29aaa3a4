"""The image set the data benchmarks use: ../shared/data/neopolyp (real JPEGs) when present,
else a freshly painted phantom set, imported into a workspace as ``bench``."""

from __future__ import annotations

import argparse
from pathlib import Path

from polyp_core.data.importer import ImportConfig, import_dataset
from polyp_core.data.phantom import write_phantom
from polyp_core.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def bench_workspace(tmp: Path | str, n_frames: int) -> tuple[Workspace, Path]:
    """A workspace in ``tmp`` holding the ``bench`` data set; returns it and the source."""
    workspace = Workspace(Path(tmp) / "ws")
    source = ROOT.parent / "shared" / "data" / "neopolyp"
    if not (source / "labels.csv").is_file():
        source = Path(tmp) / "phantom"
        write_phantom(source, n_frames=n_frames, size=384)
    import_dataset(workspace, ImportConfig(str(source), name="bench"))
    return workspace, source


def throughput_args(n: int) -> argparse.Namespace:
    """The options of the training-throughput benchmarks (studio loop against a plain one)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=n)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain loop")
    return parser.parse_args()
