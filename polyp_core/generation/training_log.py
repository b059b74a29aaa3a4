"""What a generator's training leaves in its model folder, read back for a dashboard: the loss
log (``loss.csv``: step, loss) and the sample grid of every checkpoint
(``checkpoints/step-*/grid.png``). The trainers write them; nothing else should know where."""

from __future__ import annotations

import csv
from pathlib import Path


def loss_rows(folder: Path) -> list[tuple[int, float]]:
    """``(step, loss)`` per logged step, oldest first (empty before the first row)."""
    path = Path(folder) / "loss.csv"
    if not path.is_file():
        return []
    with open(path) as handle:
        rows = list(csv.reader(handle))[1:]
    return [(int(r[0]), float(r[1])) for r in rows if len(r) >= 2]


def checkpoint_grids(folder: Path) -> list[tuple[str, str]]:
    """``(grid.png path, checkpoint name)`` of every checkpoint that has a sample grid."""
    return [(str(p), p.parent.name)
            for p in sorted((Path(folder) / "checkpoints").glob("step-*/grid.png"))]
