"""An endless stream for the player (the radio): audio arrives window after window for as long as it runs, and
memory stays bounded. The resampler forgets input it no longer needs and the mixer's source forgets what was
played, so only the unplayed buffer (bounded by the producer, which waits while enough is ahead) is held."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .mixer import Source
from .output import CHANNELS
from .resample import StreamResampler, resample, to_channels
from .stream import STREAM_MIN_BUFFER_SEC, can_play_through


class LiveStream:
    """The producer calls `push(chunk)` ([frames, channels] float32 at `sample_rate`) from one thread and `end()`
    when nothing more comes. `next_sec` is how much audio the producer is making now (the window it is in), which
    the start rule needs: playback starts once the rest of that window can play through without a gap."""

    def __init__(
        self,
        stream_id: str,
        sample_rate: int,
        *,
        device_rate: Callable[[], int],
        clock: Callable[[], float],
    ) -> None:
        self.stream_id = stream_id
        self.sample_rate = int(sample_rate)
        self._device_rate = device_rate
        self._clock = clock
        self.source = Source(stream_id, channels=CHANNELS, forget_played=True)
        self._resampler = StreamResampler(self.sample_rate, device_rate(), keep_input=False)
        self.produced_sec = 0.0  # audio received since `window_started`
        self.window_sec = 0.0  # length of the window being produced
        self.window_started: float | None = None
        self.ended = False

    # -- producer side -------------------------------------------------------------------------------------
    def begin_window(self, seconds: float) -> None:
        """The producer starts a window of `seconds` of audio (the start rule measures its speed on it)."""
        self.window_started = self._clock()
        self.window_sec = float(seconds)
        self.produced_sec = 0.0

    def push(self, chunk: np.ndarray) -> None:
        if self.ended:
            return
        chunk = chunk if chunk.ndim == 2 else chunk[:, None]
        self.produced_sec += chunk.shape[0] / self.sample_rate
        frames = self._resampler.push(chunk)
        if frames.shape[0]:
            self.source.push(to_channels(frames, CHANNELS))

    def end(self) -> None:
        """Nothing more comes: what is buffered plays out."""
        if self.ended:
            return
        self.ended = True
        tail = self._resampler.finish()
        if tail.shape[0]:
            self.source.push(to_channels(tail, CHANNELS))
        self.source.finish()

    # -- player side ---------------------------------------------------------------------------------------
    @property
    def ahead_sec(self) -> float:
        """Audio buffered beyond what has been played."""
        return max(self.source.length - self.source.played, 0) / self._device_rate()

    def can_play(self, now: float | None = None) -> bool:
        """True when playing from the current position on will not run dry before this window is done."""
        if self.ended:
            return self.ahead_sec > 0
        if self.window_started is None or self.ahead_sec < STREAM_MIN_BUFFER_SEC:
            return False
        elapsed = (now if now is not None else self._clock()) - self.window_started
        return can_play_through(self.ahead_sec, self.produced_sec, elapsed, self.window_sec)

    def retarget(self, old_rate: int, rate: int) -> None:
        """The device rate changed: the unplayed buffer is resampled and the stream goes on at the new rate
        (a new source: the caller plays it from its start)."""
        unplayed = self.source.samples[max(self.source.played - self.source.base, 0) :]
        self._resampler = StreamResampler(self.sample_rate, rate, keep_input=False)
        source = Source(self.stream_id, channels=CHANNELS, forget_played=True)
        if unplayed.shape[0]:
            source.push(resample(unplayed, old_rate, rate))
        if self.ended:
            source.finish()
        self.source = source
