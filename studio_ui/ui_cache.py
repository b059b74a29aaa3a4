"""The UI's file cache: one folder per running studio process inside its workspace."""

from __future__ import annotations

import fcntl
import secrets
import shutil
from pathlib import Path

_held_locks: list = []  # lock files held for the life of the process


def instance_cache(workspace_root: Path) -> Path:
    """A fresh cache folder for this studio process inside its workspace
    (``<workspace>/ui-cache/<random>``). Folders of studio processes that are gone (their lock
    is free) are removed, so nothing a previous run served stays on disk."""
    root = Path(workspace_root) / "ui-cache"
    root.mkdir(parents=True, exist_ok=True)
    for lock in root.glob("*.lock"):
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another studio on this workspace is running
            shutil.rmtree(root / lock.stem, ignore_errors=True)
            lock.unlink(missing_ok=True)
    instance = secrets.token_hex(6)
    handle = open(root / f"{instance}.lock", "a")  # noqa: SIM115  (held until exit)
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held_locks.append(handle)
    folder = root / instance
    folder.mkdir(mode=0o700)
    return folder.resolve()
