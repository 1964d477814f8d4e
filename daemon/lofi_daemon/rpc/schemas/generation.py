from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from .base import Strict

MAX_SEED = 2**32 - 1


class GenerateParams(Strict):
    """The params every backend shares. Any other field is a backend parameter: collected in `model_extra` and
    checked by the chosen backend's own strict model, so one that backend does not take is an error."""

    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False)

    prompt: str = ""  # may be empty when a preset gives the words
    preset: str | None = Field(default=None, min_length=1)  # a style preset's tags, then the prompt's words
    backend: str | None = Field(default=None, min_length=1)  # null = the default backend; "" is an error
    duration_sec: float | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    priority: Literal["high", "normal"] = "normal"
    allow_download: bool = False
    format: Literal["flac", "wav", "ogg", "mp3"] | None = None
    loop: bool = False  # a seamless loop (backends/shaping.py)
    bpm: float | None = Field(default=None, ge=40, le=240)  # tempo lock (backends/shaping.py)

    @property
    def backend_params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TrackIdParams(Strict):
    track_id: str = Field(min_length=1, max_length=64)


class QueueClearParams(Strict):
    include_prefetch: bool = True


class DownloadBackendParams(Strict):
    backend: str
    variant: str | None = None
    repair: bool = False  # re-fetch the files that fail verification, even when the model is "installed"
