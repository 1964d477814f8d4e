"""The sound device: one long-lived sounddevice OutputStream per process, fed by a render callable.

The stream object is opened once and then only started and stopped (stopping when nothing is audible saves CPU;
reopening would also truncate ALSA `file` captures). It is closed only to change device or to recover from a
device error. PortAudio scans devices once at initialisation, so listing devices and recovering re-initialise it
while no stream is open.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ErrorCode, LofiError

log = logging.getLogger(__name__)

DEFAULT_RATE = 48000
CHANNELS = 2
# Output buffering: long enough to survive a busy CPU while a model runs, short enough that a volume change,
# pause or skip is heard within ~50 ms.
LATENCY_SEC = 0.05

Render = Callable[[np.ndarray], None]


def _sd():
    try:
        import sounddevice as sd
    except OSError as e:  # PortAudio library missing
        raise LofiError(ErrorCode.AUDIO_DEVICE_ERROR, f"audio output unavailable: {e}") from e
    return sd


def device_error(message: str, exc: BaseException | None = None) -> LofiError:
    detail = f": {exc}" if exc else ""
    return LofiError(ErrorCode.AUDIO_DEVICE_ERROR, f"{message}{detail}")


class DeviceOutput:
    """Wraps one sounddevice OutputStream. `failed` is set when the stream dies without being asked to."""

    def __init__(self, render: Render, device: int | str | None = None) -> None:
        self._render = render
        self.device = device
        self._stream: Any = None
        self._stopping = False
        self.failed = threading.Event()
        self.error: str | None = None
        self.callback_errors = 0
        self.underflows = 0

    # ---------------------------------------------------------------------------------------- devices

    def reinitialise(self) -> None:
        """Re-scan devices (hot-plug). Only while no stream is open."""
        if self._stream is not None:
            return
        sd = _sd()
        try:
            sd._terminate()
            sd._initialize()
        except Exception as e:  # noqa: BLE001 - PortAudio may fail in many ways; the caller reports it
            log.warning("PortAudio re-initialisation failed: %s", e)

    def devices(self) -> list[dict[str, Any]]:
        self.reinitialise()  # picks up hot-plugged devices; skipped while a stream is open
        sd = _sd()
        try:
            default_out = sd.default.device[1]
            if default_out is None or default_out < 0:
                default_out = sd.query_hostapis(0)["default_output_device"] if sd.query_hostapis() else -1
            found = sd.query_devices()
        except Exception as e:  # noqa: BLE001
            raise device_error("cannot list audio devices", e) from e
        return [
            {
                "index": int(d["index"]),
                "name": d["name"],
                "is_default": int(d["index"]) == default_out,
                "sample_rate": int(d["default_samplerate"]),
                "channels": int(d["max_output_channels"]),
                "hostapi": sd.query_hostapis(d["hostapi"])["name"],
            }
            for d in found
            if d["max_output_channels"] > 0
        ]

    def resolve(self, device: int | str | None) -> dict[str, Any]:
        """The device description for an index, a name (substring) or None (the default)."""
        sd = _sd()
        try:
            info = sd.query_devices(device, "output")
        except Exception as e:  # noqa: BLE001
            raise device_error(
                f"no audio output device {device!r}" if device is not None else "no audio output", e
            ) from e
        return dict(info)

    def probe_rate(self) -> int:
        """The rate the stream will run at: the device's default rate (fallback 48 kHz if there is no device)."""
        try:
            return int(self.resolve(self.device)["default_samplerate"]) or DEFAULT_RATE
        except LofiError:
            return DEFAULT_RATE

    # ----------------------------------------------------------------------------------------- stream

    @property
    def is_open(self) -> bool:
        return self._stream is not None

    @property
    def active(self) -> bool:
        return self._stream is not None and bool(self._stream.active)

    @property
    def rate(self) -> int:
        return int(self._stream.samplerate) if self._stream is not None else self.probe_rate()

    @property
    def name(self) -> str | None:
        try:
            return self.resolve(self.device)["name"]
        except LofiError:
            return None

    def open(self, rate: int) -> None:
        if self._stream is not None:
            return
        sd = _sd()
        self.failed.clear()
        self.error = None
        try:
            self._stream = sd.OutputStream(
                samplerate=rate,
                channels=CHANNELS,
                dtype="float32",
                device=self.device,
                callback=self._callback,
                finished_callback=self._finished,
                latency=LATENCY_SEC,
            )
        except Exception as e:  # noqa: BLE001
            self._stream = None
            raise device_error("cannot open the audio device", e) from e
        log.info("audio output open: %s at %d Hz", self.name, rate)

    def start(self, rate: int) -> None:
        self.open(rate)
        if self._stream.active:
            return
        self._stopping = False
        try:
            self._stream.start()
        except Exception as e:  # noqa: BLE001
            self._fail(f"cannot start the audio device: {e}")
            raise device_error("cannot start the audio device", e) from e

    def stop(self) -> None:
        """Stop pulling audio (keeps the stream open for the next start)."""
        if self._stream is None or not self._stream.active:
            return
        self._stopping = True
        try:
            self._stream.stop()
        except Exception as e:  # noqa: BLE001
            log.warning("stopping the audio stream failed: %s", e)

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._stopping = True
        try:
            stream.abort() if stream.active else None
            stream.close()
        except Exception as e:  # noqa: BLE001
            log.warning("closing the audio stream failed: %s", e)

    # ---------------------------------------------------------------------------------------- callback

    def _callback(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status and status.output_underflow:
            self.underflows += 1
        try:
            self._render(outdata)
        except Exception:  # never let a mixer bug kill the stream: output silence and count it
            outdata.fill(0)
            self.callback_errors += 1
            if self.callback_errors == 1:
                log.exception("audio render failed")

    def _finished(self) -> None:
        if not self._stopping:
            self._fail("the audio stream stopped unexpectedly (device gone?)")

    def _fail(self, message: str) -> None:
        self.error = message
        log.warning("%s", message)
        self.failed.set()
