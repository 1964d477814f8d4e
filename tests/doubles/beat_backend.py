"""A test double backend for the shaping params (loop, bpm): a drum-like click track at a known tempo.

Every beat is a short decaying noise burst (the same burst every bar, so the audio repeats bar by bar) over a
quiet low hum that also repeats every bar; `tempo` is the true tempo in BPM. The requests it received are kept in `requests`, to check what the backend is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from lofi_daemon.backends.base import GeneratedAudio, GenerationRequest
from lofi_daemon.backends.params import BackendParams, parse_params
from pydantic import Field


class BeatParams(BackendParams):
    tempo: float = Field(default=90.0, ge=30, le=300)


def click_track(tempo: float, seconds: float, rate: int, seed: int = 0, beats_per_bar: int = 4) -> np.ndarray:
    """float32 mono: a burst on every beat (accented on the bar's first), identical in every bar."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    burst_len = int(0.06 * rate)
    burst = rng.standard_normal(burst_len) * np.exp(-np.arange(burst_len) / (0.012 * rate))
    bar_sec = beats_per_bar * 60.0 / tempo
    hum = round(55.0 * bar_sec) / bar_sec  # near 55 Hz, a whole number of cycles per bar
    out = 0.05 * np.sin(2 * np.pi * hum * np.arange(n) / rate)
    beat = 60.0 / tempo * rate
    k = 0
    while int(round(k * beat)) < n:
        at = int(round(k * beat))
        gain = 0.8 if k % beats_per_bar == 0 else 0.4
        piece = burst[: n - at] * gain
        out[at : at + len(piece)] += piece
        k += 1
    return out.astype(np.float32)


class BeatBackend:
    name = "beat"
    display_name = "Test click track"
    sample_rate = 16000
    channels = 1
    min_duration_sec = 1.0
    max_duration_sec = 120.0
    default_duration_sec = 8.0
    streams_audio = True

    def __init__(self, settings: Any = None, notify: Any = None) -> None:
        self.requests: list[GenerationRequest] = []

    def validate(self, raw: dict[str, Any]) -> dict[str, Any]:
        return parse_params(BeatParams, raw, self.name).model_dump()

    def model_version(self) -> str:
        return "beat-v1"

    # the rest of the Backend protocol, as the worker uses it: always installed, loading costs nothing
    loaded = True

    def is_installed(self) -> bool:
        return True

    def load(self) -> None:
        pass

    def unload(self) -> None:
        pass

    def generate(self, request: GenerationRequest, progress: Any, cancel: Any, on_audio: Any = None):
        self.requests.append(request)
        p = self.validate(request.params)
        samples = click_track(p["tempo"], request.duration_sec, self.sample_rate, request.seed)
        if on_audio is not None:
            on_audio(samples[:, None])
        progress(1, 1)
        return GeneratedAudio(
            samples=samples[:, None], sample_rate=self.sample_rate, info={"true_tempo": p["tempo"]}
        )
