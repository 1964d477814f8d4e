"""A test double backend: sine tones, made step by step like a real generator, with knobs for tests.

Loaded by the daemon through LOFI_BACKEND_PLUGINS=tests.doubles.tone_backend:ToneBackend (the generic
extra-backend hook), so protocol, queue and plugin tests run in seconds without model files.

Knobs (environment of the daemon process):
  LOFI_TONE_STEP_SEC      sleep per step (default 0.01)
  LOFI_TONE_STEPS         steps per job (default 20)
  LOFI_TONE_NOT_INSTALLED if set, the model counts as missing until download() runs
Prompts containing "FAIL" raise inside generate, to test that a failing job never stops the worker.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
from lofi_daemon.backends.base import GeneratedAudio, GenerationRequest
from lofi_daemon.backends.params import BackendParams, parse_params
from lofi_daemon.errors import ErrorCode
from pydantic import Field


class ToneParams(BackendParams):
    guidance_scale: float = Field(default=1.0, ge=1, le=10)


class ToneBackend:
    name = "tone"
    display_name = "Test tone"
    sample_rate = 16000
    channels = 1
    min_duration_sec = 1.0
    max_duration_sec = 60.0
    default_duration_sec = 2.0
    streams_audio = False

    def __init__(self, settings: Any, notify: Any) -> None:
        self.notify = notify
        self._loaded = False
        self._installed = not os.environ.get("LOFI_TONE_NOT_INSTALLED")
        self.step_sec = float(os.environ.get("LOFI_TONE_STEP_SEC", "0.01"))
        self.steps = int(os.environ.get("LOFI_TONE_STEPS", "20"))

    def validate(self, raw: dict[str, Any]) -> dict[str, Any]:
        codes = {"guidance_scale": ErrorCode.INVALID_GUIDANCE_SCALE}
        return parse_params(ToneParams, raw, self.name, codes).model_dump()

    def model_version(self) -> str:
        return "tone-v1"

    def is_installed(self) -> bool:
        return self._installed

    def status(self) -> dict[str, Any]:
        return {"variant": "sine"}

    def download(self, progress: Any, cancel: Any) -> None:
        for i in range(1, 4):
            cancel.check()
            progress(
                {
                    "file": "tone.bin",
                    "bytes_downloaded": i * 10,
                    "bytes_total": 30,
                    "files_completed": 0 if i < 3 else 1,
                    "files_total": 1,
                    "percent": i * 100 / 3,
                }
            )
            time.sleep(self.step_sec)
        self._installed = True

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        self._loaded = True

    def unload(self) -> None:
        self._loaded = False

    def frequency(self, seed: int) -> float:
        return 220.0 + (seed % 440)

    def generate(self, request: GenerationRequest, progress: Any, cancel: Any, on_audio: Any = None):
        for step in range(1, self.steps + 1):
            cancel.check()
            if "FAIL" in request.prompt and step == self.steps // 2:
                raise RuntimeError("the tone generator failed on purpose")
            time.sleep(self.step_sec)
            progress(step, self.steps, current_step=step, total_steps=self.steps)
        n = int(round(request.duration_sec * self.sample_rate))
        t = np.arange(n, dtype=np.float64) / self.sample_rate
        samples = (0.5 * np.sin(2 * np.pi * self.frequency(request.seed) * t)).astype(np.float32)[:, None]
        return GeneratedAudio(samples, self.sample_rate, {"steps": self.steps})
