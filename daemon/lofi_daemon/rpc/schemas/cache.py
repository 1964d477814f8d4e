"""Params of the cache methods."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict

Sort = Literal["created", "oldest", "last_played", "play_count", "prompt", "duration", "size"]


class CacheListParams(Strict):
    limit: int | None = Field(default=None, ge=1, le=10000)
    sort: Sort = "created"
    backend: str | None = None
    query: str | None = Field(default=None, max_length=1000)
    favourite: bool | None = None


class CacheTrackParams(Strict):
    track_id: str = Field(min_length=1, max_length=64)


class CacheClearParams(Strict):
    keep_favourites: bool = True


class CacheFavouriteParams(Strict):
    track_id: str = Field(min_length=1, max_length=64)
    favourite: bool = True
