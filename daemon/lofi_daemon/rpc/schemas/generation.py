from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Strict

MAX_SEED = 2**32 - 1


class GenerateParams(Strict):
    prompt: str
    backend: str | None = None
    duration_sec: float | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    priority: Literal["high", "normal"] = "normal"
    allow_download: bool = False
    format: Literal["flac", "wav", "ogg", "mp3"] | None = None
    # MusicGen
    guidance_scale: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    temperature: float | None = None
    # ACE-Step
    inference_steps: int | None = None
    scheduler: str | None = None
    cfg_type: str | None = None
    omega: float | None = None
    guidance_interval: float | None = None
    lyrics: str | None = None
    lora: str | None = None
    lora_weight: float | None = None


class TrackIdParams(Strict):
    track_id: str = Field(min_length=1, max_length=64)


class QueueClearParams(Strict):
    include_prefetch: bool = True


class DownloadBackendParams(Strict):
    backend: str
    variant: str | None = None
    repair: bool = False  # re-fetch the files that fail verification, even when the model is "installed"
