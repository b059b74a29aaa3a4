"""The demo workspace: the phantom data set painted and imported, ready to browse."""

from __future__ import annotations

import shutil
from pathlib import Path

from polyp_core.data.importer import ImportConfig, ImportResult, import_dataset
from polyp_core.data.phantom import write_phantom
from polyp_core.progress import Progress, no_progress
from polyp_core.workspace import Workspace

DEMO_DATASET = "phantom"


def ensure_demo_dataset(workspace: Workspace, n_frames: int = 1100, size: int = 256,
                        seed: int = 0, name: str = DEMO_DATASET, force: bool = False,
                        progress: Progress = no_progress) -> ImportResult | None:
    """Paint the phantom set into ``sources/<name>`` and import it, unless already there.

    Returns:
        the import result, or ``None`` when the data set already existed.
    """
    if name in workspace.datasets() and not force:
        return None
    out = workspace.sources_dir / name
    if out.exists():
        shutil.rmtree(out)
    write_phantom(out, n_frames=n_frames, size=size, seed=seed, progress=progress)
    # lesion_id groups the views of one polyp, so the default split is grouped.
    return import_dataset(workspace, ImportConfig(source=str(out), name=name, seed=seed,
                                                  overwrite=force), progress=progress)


def sources_path(workspace: Workspace, name: str = DEMO_DATASET) -> Path:
    return workspace.sources_dir / name
