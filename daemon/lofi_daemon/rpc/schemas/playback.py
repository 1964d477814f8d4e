"""Params of the playback, playlist, device and prefetch methods."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict
from .options import PrefetchOptions

TrackId = Field(min_length=1, max_length=64)


class PlayParams(Strict):
    track_id: str | None = Field(default=None, min_length=1, max_length=64)


class SeekParams(Strict):
    position_sec: float = Field(ge=0)


class VolumeParams(Strict):
    level: float | None = Field(default=None, ge=0, le=1)


class LoopParams(Strict):
    mode: Literal["off", "track", "playlist"] | None = None


class CrossfadeParams(Strict):
    seconds: float | None = Field(default=None, ge=0, le=30)


class PlaylistAddParams(Strict):
    track_id: str = TrackId
    position: int | None = Field(default=None, ge=0)


class PlaylistRemoveParams(Strict):
    track_id: str = TrackId


class AudioDeviceSetParams(Strict):
    # an index, a (part of a) device name, or null for the system default
    device: int | str | None = None


PrefetchConfigParams = PrefetchOptions  # the same settings as initialize's options.prefetch
