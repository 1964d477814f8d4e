"""The SQLite index of the track cache: its schema, a track's row, and one connection per thread."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

INDEX_NAME = "index.sqlite3"

SORTS = {
    "created": "created_at DESC",
    "oldest": "created_at ASC",
    "last_played": "COALESCE(last_played, 0) DESC, created_at DESC",
    "play_count": "play_count DESC, created_at DESC",
    "prompt": "prompt COLLATE NOCASE ASC, created_at DESC",
    "duration": "duration_sec DESC, created_at DESC",
    "size": "size_bytes DESC, created_at DESC",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS tracks (
    track_id TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    prompt TEXT NOT NULL,
    backend TEXT NOT NULL,
    params TEXT NOT NULL,
    seed INTEGER NOT NULL,
    duration_sec REAL NOT NULL,
    sample_rate INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    format TEXT NOT NULL,
    model_version TEXT NOT NULL,
    generation_time_sec REAL NOT NULL,
    created_at REAL NOT NULL,
    last_played REAL,
    play_count INTEGER NOT NULL DEFAULT 0,
    favourite INTEGER NOT NULL DEFAULT 0,
    size_bytes INTEGER NOT NULL,
    last_access REAL NOT NULL,
    info TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS tracks_lru ON tracks (favourite, last_access);
"""

COLUMNS = (
    "track_id, file, prompt, backend, params, seed, duration_sec, sample_rate, channels, format, model_version, "
    "generation_time_sec, created_at, last_played, play_count, favourite, size_bytes, last_access, info"
)


@dataclass
class Track:
    track_id: str
    path: str
    prompt: str
    backend: str
    params: dict[str, Any]
    seed: int
    duration_sec: float
    sample_rate: int
    channels: int
    format: str
    model_version: str
    generation_time_sec: float
    created_at: float
    last_played: float | None = None
    play_count: int = 0
    favourite: bool = False
    size_bytes: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("info")
        return d


class ConnectionPool:
    """One connection per thread to the index file (WAL, so readers never wait for the writer), all closed
    together. `before_connect()` runs before each new connection and may refuse it by raising."""

    def __init__(self, db_path: Path, before_connect: Callable[[], None]) -> None:
        self.db_path = db_path
        self._before_connect = before_connect
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def get(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            self._before_connect()
            conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            try:
                c.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()
