"""Stream start timing: a track that plays while it is generated, and when it may start without running dry."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .mixer import Source
from .output import CHANNELS
from .resample import StreamResampler, to_channels

STREAM_SAFETY = 1.25  # margin on the predicted generation time before a streaming track may start
STREAM_MIN_BUFFER_SEC = 0.5


class TrackStream:
    """A track that plays while it is being generated. The generator calls `push(chunk)` with audio at its own
    rate ([frames, channels] float32), then `finish()`; `abort()` if generation fails or is cancelled.
    Playback of it starts only once it can play through without running dry, judged from how fast audio has
    been arriving (`can_start`)."""

    def __init__(
        self,
        track_id: str,
        sample_rate: int,
        channels: int,
        duration_sec: float | None,
        *,
        device_rate: Callable[[], int],
        clock: Callable[[], float],
        on_done: Callable[[TrackStream], None],
    ):
        """`device_rate()`: the mixer's rate now; `clock()`: wall time (tests simulate it); `on_done(stream)`:
        called once the stream finished or was aborted."""
        self.track_id = track_id
        self.sample_rate = int(sample_rate)
        self.duration_sec = duration_sec
        self._device_rate = device_rate
        self._clock = clock
        self._on_done = on_done
        self.source = Source(track_id, channels=CHANNELS)
        self._resampler = StreamResampler(sample_rate, device_rate())
        self.started = clock()
        self.first_chunk_at: float | None = None
        self.produced_sec = 0.0
        self.aborted = False

    def push(self, chunk: np.ndarray) -> None:
        if self.aborted or self.source.complete:
            return
        chunk = chunk if chunk.ndim == 2 else chunk[:, None]
        if self.first_chunk_at is None:
            self.first_chunk_at = self._clock()
        self.produced_sec += chunk.shape[0] / self.sample_rate
        frames = self._resampler.push(chunk)
        if frames.shape[0]:
            self.source.push(to_channels(frames, CHANNELS))

    def finish(self) -> None:
        if self.aborted or self.source.complete:
            return
        tail = self._resampler.finish()
        if tail.shape[0]:
            self.source.push(to_channels(tail, CHANNELS))
        self.source.finish()
        self._on_done(self)

    def retarget(self, rate: int) -> None:
        """The device rate changed: resample everything received so far for the new rate."""
        received = self._resampler.received()
        self._resampler = StreamResampler(self.sample_rate, rate)
        source = Source(self.track_id, channels=CHANNELS)
        if received is not None and received.shape[0]:
            source.push(to_channels(self._resampler.push(received), CHANNELS))
        if self.source.complete:
            tail = self._resampler.finish()
            if tail.shape[0]:
                source.push(to_channels(tail, CHANNELS))
            source.finish()
        self.source = source

    def abort(self) -> None:
        self.aborted = True
        self.source.finish()  # whatever is there plays out; nothing more is coming
        self._on_done(self)

    def can_start(self, now: float | None = None) -> bool:
        """True when playing from now on will not catch up with the generator (or it has finished)."""
        if self.source.complete:
            return self.source.length > 0
        if self.first_chunk_at is None:
            return False
        buffered = self.source.length / self._device_rate()
        if buffered < STREAM_MIN_BUFFER_SEC:
            return False
        if not self.duration_sec:
            return False  # unknown length: wait for the end
        elapsed = (now if now is not None else self._clock()) - self.started
        return can_play_through(buffered, self.produced_sec, elapsed, self.duration_sec)


def can_play_through(buffered_sec: float, produced_sec: float, elapsed_sec: float, total_sec: float) -> bool:
    """The start rule: playing `buffered_sec` from now on will not catch up with a generator that has produced
    `produced_sec` of `total_sec` in `elapsed_sec` of wall time."""
    speed = produced_sec / max(elapsed_sec, 1e-6)  # audio seconds per wall second
    remaining = max(total_sec - produced_sec, 0.0)
    if speed <= 0:
        return False
    # playing starts now; the generator is done after remaining/speed s; we reach its end of audio after
    # `buffered + (generated meanwhile)` s: safe if buffered ≥ remaining * (1/speed - 1), with a margin
    return buffered_sec >= STREAM_SAFETY * remaining * max(1.0 / speed - 1.0, 0.0)
