"""Which files of the studio's UI cache were sent to which session (the file route serves a
path only to a session that holds an unexpired grant for it)."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from pathlib import Path
from urllib.parse import unquote


def session_key(token: str) -> str:
    """The key grants are kept under: the session token's SHA-256 (never the token)."""
    return hashlib.sha256(token.encode()).hexdigest()


class FileGrants:
    """Which files of the studio's UI cache were sent to which session.

    The middleware reads every JSON or event-stream body it sends to a session and grants that
    session the cache paths it finds; the file route then serves a path only to a session that
    holds an unexpired grant for it. Kept in memory: the cache folder is this process's own.
    """

    def __init__(self, root: Path, ttl_s: float = 3600.0) -> None:
        self.root = str(Path(root).resolve())
        self.ttl_s = ttl_s
        self._pattern = re.compile(re.escape(self.root) + r'/[^"\\\s<>]+')
        self._grants: dict[str, dict[str, float]] = {}
        self._lock = threading.Lock()

    def record(self, key: str, text: str) -> None:
        found = self._pattern.findall(text)
        if not found:
            return
        expires = time.monotonic() + self.ttl_s
        with self._lock:
            grants = self._grants.setdefault(key, {})
            for path in found:
                grants[os.path.normpath(path)] = expires

    def allowed(self, key: str, path: str) -> bool:
        path = os.path.normpath(path)
        with self._lock:
            expires = self._grants.get(key, {}).get(path)
        return expires is not None and expires > time.monotonic()

    def forget(self, key: str) -> None:
        with self._lock:
            self._grants.pop(key, None)


def file_route_path(path: str) -> str | None:
    """The file a Gradio file route asks for, or None for other routes."""
    for marker in ("/file=", "/gradio_api/file/"):
        at = path.find(marker)
        if at >= 0:
            return unquote(path[at + len(marker):])
    return None
