"""Track cache: audio files plus a SQLite index (see store.py)."""

from .store import Track, TrackStore

__all__ = ["Track", "TrackStore"]
