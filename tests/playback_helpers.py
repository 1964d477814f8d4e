"""Test doubles and helpers for the cache / playback / prefetch tests (never imported by the product)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from lofi_daemon.backends.base import GeneratedAudio, GenerationRequest, track_id_for
from lofi_daemon.errors import ErrorCode, LofiError


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1)


def put_track(
    store,
    prompt: str,
    samples: np.ndarray,
    rate: int,
    *,
    seed: int = 1,
    backend: str = "musicgen",
    fmt: str | None = None,
    params: dict | None = None,
    model_version: str = "test-v1",
):
    req = GenerationRequest(backend, prompt, samples.shape[0] / rate, seed, params or {"guidance_scale": 3.0})
    tid = track_id_for(req, model_version)
    return store.put(
        tid,
        GeneratedAudio(samples, rate, {"test": True}),
        request=req,
        model_version=model_version,
        generation_time_sec=0.5,
        fmt=fmt,
    )


def dominant_freq(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


class ManualOutput:
    """A sound device that renders only when the test says so: `pump(seconds)` pulls audio through the
    player's render function in blocks, like a real-time device would, and records it."""

    def __init__(self, render, device=None, rate: int = 16000, block: int = 512) -> None:
        self._render = render
        self.device = device
        self.rate = rate
        self.base_rate = rate
        self.block = block
        self.is_open = False
        self.active = False
        self.failed = threading.Event()
        self.error: str | None = None
        self.fail_start = False
        self.recorded: list[np.ndarray] = []
        self.starts = 0

    def probe_rate(self) -> int:
        return self.rate

    def start(self, rate: int) -> None:
        if self.fail_start:
            raise LofiError(ErrorCode.AUDIO_DEVICE_ERROR, "cannot start the audio device: gone")
        assert rate == self.rate
        self.is_open = True
        if not self.active:
            self.starts += 1
        self.active = True

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.is_open = self.active = False

    def reinitialise(self) -> None:
        self.failed.clear()
        self.error = None

    # device 0 "manual" runs at the rate given; device 1 "half" at half of it (to test rate changes)
    def devices(self):
        return [
            {"index": 0, "name": "manual", "is_default": True, "sample_rate": self.rate, "channels": 2},
            {
                "index": 1,
                "name": "half",
                "is_default": False,
                "sample_rate": self.base_rate // 2,
                "channels": 2,
            },
        ]

    def resolve(self, device):
        if device in (None, 0, "manual"):
            self.rate = self.base_rate
            return {"index": 0, "name": "manual", "default_samplerate": self.base_rate}
        if device in (1, "half"):
            self.rate = self.base_rate // 2
            return {"index": 1, "name": "half", "default_samplerate": self.base_rate // 2}
        raise LofiError(ErrorCode.AUDIO_DEVICE_ERROR, f"no audio output device {device!r}")

    @property
    def name(self) -> str:
        return "manual"

    def break_device(self, message: str = "device unplugged") -> None:
        self.error = message
        self.active = False
        self.failed.set()

    def pump(self, seconds: float, poll=None) -> np.ndarray:
        """Render `seconds` of audio (only while active), calling `poll()` after every block."""
        out = []
        for _ in range(int(round(seconds * self.rate / self.block))):
            buf = np.zeros((self.block, 2), np.float32)
            if self.active:
                self._render(buf)
            out.append(buf)
            if poll is not None:
                poll()
        data = np.concatenate(out) if out else np.zeros((0, 2), np.float32)
        self.recorded.append(data)
        return data


class Recorder:
    """A notify() that keeps every notification."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []

    def __call__(self, method: str, params: dict) -> None:
        self.items.append((method, dict(params)))

    def of(self, method: str) -> list[dict]:
        return [p for m, p in self.items if m == method]

    def names(self) -> list[str]:
        return [m for m, _ in self.items]


def wav_capture_config(tmp: Path, capture: Path) -> dict[str, str]:
    """Environment that makes PortAudio's default ALSA device write a 48 kHz stereo WAV file
    (no sound card needed)."""
    (tmp / "alsa").mkdir(parents=True, exist_ok=True)
    (tmp / "alsa" / "asoundrc").write_text(
        "pcm.!default {\n"
        "    type plug\n"
        '    slave { pcm "lofi_capture" format S16_LE rate 48000 channels 2 }\n'
        "}\n"
        "pcm.lofi_capture {\n"
        "    type file\n"
        '    slave.pcm "null"\n'
        '    format "wav"\n'
        f'    file {{ @func getenv vars [ LOFI_ALSA_CAPTURE ] default "{capture}" }}\n'
        "}\n"
    )
    return {"XDG_CONFIG_HOME": str(tmp), "LOFI_ALSA_CAPTURE": str(capture)}
