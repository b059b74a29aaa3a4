"""Analysis and training runs stored as data: config, image list and results, on disk and
in the database, so any figure can be traced back and redone."""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from pathlib import Path

from polyp_core import __version__
from polyp_core.workspace import Workspace
from review_db import queries
from review_db.database import Database


def json_safe(value: object) -> object:
    """JSON cannot hold NaN: store it as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def new_run_dir(workspace: Workspace, kind: str) -> tuple[str, Path]:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    run_id = f"{kind}-{stamp}-{uuid.uuid4().hex[:6]}"
    folder = workspace.runs_dir / run_id
    folder.mkdir(parents=True)
    return run_id, folder


def save_run(db: Database, workspace: Workspace, run_id: str, folder: Path, kind: str,
             config: dict, results: dict, images: dict) -> Path:
    """Write ``config.json``, ``images.json`` and ``results.json`` and record the run."""
    config = {**config, "studio_version": __version__}
    (folder / "config.json").write_text(json.dumps(json_safe(config), indent=1))
    (folder / "images.json").write_text(json.dumps(json_safe(images), indent=1))
    (folder / "results.json").write_text(json.dumps(json_safe(results), indent=1))
    with db.session() as session:
        queries.add_run(session, run_id=run_id, kind=kind, status="done", config=json_safe(config),
                        results_path=str(folder))
    return folder


def load_run(db: Database, run_id: str) -> dict:
    with db.session() as session:
        run = queries.get_run(session, run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r}")
        folder = Path(run.results_path)
    return {**{name: json.loads((folder / f"{name}.json").read_text())
               for name in ("config", "images", "results")}, "folder": folder}
