"""A test-double backend for the plugin's end-to-end tests: a sine tone instead of a model, so the real daemon
(queue, worker, cache, notifications) can be driven from Neovim in milliseconds. Loaded by the daemon through
LOFI_BACKEND_PLUGINS=tests.tone_backend:ToneBackend (with the repo root on PYTHONPATH).

Environment: TONE_STEPS (progress steps, default 20), TONE_STEP_SEC (sleep per step, default 0.01),
TONE_INSTALLED=0 (pretend the model is missing)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from lofi_daemon.backends.base import GeneratedAudio, GenerationRequest
from lofi_daemon.errors import ErrorCode, LofiError


class ToneBackend:
    name = "tone"
    display_name = "Test tone"
    sample_rate = 8000
    channels = 1
    min_duration_sec = 1.0
    max_duration_sec = 30.0
    default_duration_sec = 4.0

    def __init__(self, settings: Any, notify: Callable[[str, dict], None]) -> None:
        self._loaded = False

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        freq = float(raw.get("guidance_scale", 3.0))
        if not 1.0 <= freq <= 10.0:
            raise LofiError(ErrorCode.INVALID_GUIDANCE_SCALE, "guidance_scale must be within 1–10")
        return {"guidance_scale": freq}

    def model_version(self) -> str:
        return "tone-1"

    def is_installed(self) -> bool:
        return os.environ.get("TONE_INSTALLED", "1") != "0"

    def status(self) -> dict[str, Any]:
        return {"installed": self.is_installed(), "variant": "sine", "loaded": self._loaded}

    def download(self, progress, cancel) -> None:
        raise LofiError(ErrorCode.MODEL_DOWNLOAD_FAILED, "the tone backend has nothing to download")

    def load(self) -> None:
        self._loaded = True

    def unload(self) -> None:
        self._loaded = False

    @property
    def loaded(self) -> bool:
        return self._loaded

    def generate(self, request: GenerationRequest, progress, cancel, on_audio=None) -> GeneratedAudio:
        steps = int(os.environ.get("TONE_STEPS", "20"))
        step_sec = float(os.environ.get("TONE_STEP_SEC", "0.01"))
        for i in range(steps):
            cancel.check()
            time.sleep(step_sec)
            progress(i + 1, steps)
        frames = int(request.duration_sec * self.sample_rate)
        t = np.arange(frames, dtype=np.float32) / self.sample_rate
        hz = 110.0 * request.params["guidance_scale"] + request.seed % 50
        samples = (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)[:, None]
        return GeneratedAudio(samples=samples, sample_rate=self.sample_rate)
