"""Track cache: audio files plus a SQLite index (see store.py)."""

from .index import Track
from .store import TrackStore

__all__ = ["Track", "TrackStore"]
