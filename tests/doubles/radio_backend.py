"""A test double for the radio: a backend that continues one stream window after window, like MusicGen's
extend stride, but made of a sine (continuous phase across windows) and integer "codes" (a counter), so a test
can see that every window re-reads the previous one's last codes and that nothing repeats.

`tick(seconds)` is called after every chunk with the wall time the chunk took at `speed` × real time: a test
advances its simulated clock (and renders the device) there, so slow and fast machines run in fast-forward.
Prompts containing "high" sound at 440 Hz, others at 220 Hz (a steer is audible).

In a daemon (LOFI_BACKEND_PLUGINS=tests.doubles.radio_backend:RadioToneBackend) it sleeps instead, at
LOFI_RADIO_TONE_SPEED × real time (default 8)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from lofi_daemon.backends.params import BackendParams, parse_params

FRAME_RATE = 50  # codes per second, as MusicGen


class RadioToneBackend:
    name = "radio_tone"
    display_name = "Radio test tone"
    sample_rate = 32000
    channels = 1
    min_duration_sec = 1.0
    max_duration_sec = 60.0
    default_duration_sec = 4.0
    streams_audio = True

    def __init__(
        self,
        settings: Any = None,
        notify: Any = None,
        *,
        window_sec: float = 6.0,
        stride_sec: float = 4.0,
        speed: float | None = None,
        tick: Callable[[float], None] = time.sleep,
        chunk_sec: float = 0.5,
    ) -> None:
        speed = speed if speed is not None else float(os.environ.get("LOFI_RADIO_TONE_SPEED", "8"))
        self.window_sec, self.stride_sec = window_sec, stride_sec
        self.speed, self.tick, self.chunk_sec = speed, tick, chunk_sec
        self._loaded = False
        self.windows: list[dict[str, Any]] = []  # every window made: prompt, context codes, new codes

    def validate(self, raw: dict[str, Any]) -> dict[str, Any]:
        return parse_params(BackendParams, raw, self.name, {}).model_dump()

    def model_version(self) -> str:
        return "radio-tone-v1"

    def is_installed(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {}

    def download(self, progress: Any, cancel: Any) -> None:
        pass

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        self._loaded = True

    def unload(self) -> None:
        self._loaded = False

    def generate(self, request: Any, progress: Any, cancel: Any, on_audio: Any = None) -> Any:
        raise AssertionError("the radio never calls generate")

    def continuation_windows(self) -> tuple[float, float]:
        return self.window_sec, self.stride_sec

    def start_continuation(self, params: Any, seed: int) -> dict[str, Any]:
        return {"phase": 0.0, "context": np.zeros(0, np.int64), "next_code": 0, "windows": 0}

    def continue_window(self, state: Any, prompt: str, cancel: Any, on_audio: Any) -> dict[str, Any]:
        first = state["windows"] == 0
        seconds = self.window_sec if first else self.stride_sec
        context = state["context"]
        new = np.arange(state["next_code"], state["next_code"] + int(seconds * FRAME_RATE), dtype=np.int64)
        freq = 440.0 if "high" in prompt else 220.0
        n = int(round(seconds * self.sample_rate))
        done = 0
        while done < n:
            cancel.check()
            m = min(int(self.chunk_sec * self.sample_rate), n - done)
            t = np.arange(m) / self.sample_rate
            chunk = 0.5 * np.sin(state["phase"] + 2 * np.pi * freq * t)
            state["phase"] = float((state["phase"] + 2 * np.pi * freq * m / self.sample_rate) % (2 * np.pi))
            self.tick(m / self.sample_rate / self.speed)
            on_audio(chunk.astype(np.float32).reshape(-1, 1))
            done += m
        keep = int((self.window_sec - self.stride_sec) * FRAME_RATE)
        state["context"] = np.concatenate([context, new])[-keep:]
        state["next_code"] = int(new[-1]) + 1
        state["windows"] += 1
        self.windows.append({"prompt": prompt, "context": context.copy(), "new": new})
        return {
            "index": state["windows"] - 1,
            "context_frames": int(len(context)),
            "new_frames": int(len(new)),
            "seconds": seconds,
        }
