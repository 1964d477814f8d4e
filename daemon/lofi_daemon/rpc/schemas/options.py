"""The `initialize` options: one typed schema, applied as a whole by `Daemon.apply_options`.

Adding an option: a field here, the line that applies it (Settings.apply_options or Daemon.apply_options), and
the plugin's `initialize_options()` in lua/lofi/config.lua (tests/test_options_schema.py checks the two agree).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from .base import Strict

Format = Literal["flac", "wav", "ogg", "mp3"]
LoopMode = Literal["off", "track", "playlist"]
Strategy = Literal["same_prompt", "preset_cycle", "random_preset"]


class ModelOptions(Strict):
    dir: str | None = Field(default=None, min_length=1)  # a local model directory (offline use)
    variant: str | None = Field(default=None, min_length=1)

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        # relative to what? the daemon's working directory is not the user's (the plugin sends absolute paths)
        if value is not None and not Path(value).expanduser().is_absolute():
            raise ValueError(f"must be an absolute path (~ is expanded), got {value!r}")
        return value


class CacheOptions(Strict):
    # A shrinking limit is reported in the reply and applied at the next eviction (after the next generation).
    max_mb: float | None = Field(default=None, gt=0, le=1e7)
    max_tracks: int | None = Field(default=None, ge=1, le=10_000_000)
    format: Format | None = None


class PlaybackOptions(Strict):
    volume: float | None = Field(default=None, ge=0, le=1)
    crossfade_sec: float | None = Field(default=None, ge=0, le=30)
    loop: LoopMode | None = None
    auto_play: bool | None = None
    stream: bool | None = None  # play while generating, when the backend can
    device: int | str | None = None  # an index or (part of) a device name; a missing device only warns


class PrefetchOptions(Strict):
    """Also the params of `prefetch_config`."""

    enabled: bool | None = None
    strategy: Strategy | None = None
    presets: list[str] | None = Field(default=None, min_length=1, max_length=100)
    trigger_percent: float | None = Field(default=None, ge=0, le=100)

    @field_validator("presets")
    @classmethod
    def _some_prompt(cls, presets: list[str] | None) -> list[str] | None:
        if presets is not None and not any(p.strip() for p in presets):
            raise ValueError("presets must contain at least one non-blank prompt")
        return presets


class GeneratorOptions(Strict):
    """A remote generator (docs/protocol.md "Remote generation"); an empty `cmd` turns it off."""

    cmd: list[str] = Field(max_length=64)
    backends: list[str] | None = Field(default=None, max_length=16)  # null = every backend
    retry: bool | None = None
    connect_timeout_sec: float | None = Field(default=None, gt=0, le=600)

    @field_validator("cmd")
    @classmethod
    def _words(cls, cmd: list[str]) -> list[str]:
        if any(not w or "\0" in w for w in cmd):
            raise ValueError("cmd must be a list of non-empty words")
        return cmd


class InitializeOptions(Strict):
    cache_dir: str | None = Field(default=None, min_length=1)
    provider: Literal["auto", "cpu", "cuda", "coreml"] | None = None
    threads: int | None = Field(default=None, ge=0, le=256)
    default_backend: str | None = Field(default=None, min_length=1)
    models: dict[str, ModelOptions] | None = None  # backend name → options
    cache: CacheOptions | None = None
    playback: PlaybackOptions | None = None
    prefetch: PrefetchOptions | None = None
    generator: GeneratorOptions | None = None
