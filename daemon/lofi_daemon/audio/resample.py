"""Bring a track to the device's rate and channel count (cached files stay at their native rate)."""

from __future__ import annotations

from math import gcd

import numpy as np


def to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """Mono is duplicated to every channel; extra channels are dropped."""
    x = samples if samples.ndim == 2 else samples[:, None]
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return np.repeat(x, channels, axis=1)
    if x.shape[1] > channels:
        return x[:, :channels]
    return np.concatenate([x, np.repeat(x[:, -1:], channels - x.shape[1], axis=1)], axis=1)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Polyphase resampling along the frame axis (scipy), float32 out."""
    if src_rate == dst_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    g = gcd(int(src_rate), int(dst_rate))
    from scipy.signal import resample_poly  # ~1 s to import: not at module load (`health` imports backends)

    y = resample_poly(samples, int(dst_rate) // g, int(src_rate) // g, axis=0)
    return np.ascontiguousarray(y, dtype=np.float32)


def to_device(
    samples: np.ndarray, src_rate: int, dst_rate: int, channels: int = 2, *, circular: bool = False
) -> np.ndarray:
    """`circular`: the audio is one period of a loop (generate's `loop`), so the filter reads across the wrap
    (its end before its start, its start after its end) instead of silence, and the loop stays seamless."""
    # resample before duplicating channels: half the work for mono tracks
    x = samples if samples.ndim == 2 else samples[:, None]
    if circular and src_rate != dst_rate:
        g = gcd(int(src_rate), int(dst_rate))
        down, up = int(src_rate) // g, int(dst_rate) // g
        pad = down * -(-256 // down)  # ≥ 256 frames of context, a whole number of resampling periods
        if pad <= x.shape[0]:
            y = resample(np.concatenate([x[-pad:], x, x[:pad]]), src_rate, dst_rate)
            cut = pad // down * up
            return np.ascontiguousarray(to_channels(y[cut : y.shape[0] - cut], channels))
    return np.ascontiguousarray(to_channels(resample(x, src_rate, dst_rate), channels))


class StreamResampler:
    """`resample` for audio that arrives in chunks, with output identical to resampling the whole signal at
    once: each push emits only the output frames whose filter support lies inside the input received so far
    (re-filtering a little context from a `down`-aligned start); `finish` emits the rest.

    `keep_input=False` (an endless stream) forgets input once no later output needs it: memory stays bounded,
    and `received()` then returns only what is still held."""

    def __init__(self, src_rate: int, dst_rate: int, *, keep_input: bool = True) -> None:
        g = gcd(int(src_rate), int(dst_rate))
        self.up, self.down = int(dst_rate) // g, int(src_rate) // g
        # scipy's default filter spans 10 * max(up, down) taps at the upsampled rate on each side
        self.context = -(-10 * max(self.up, self.down) // self.up) + 2
        self._chunks: list[np.ndarray] = []
        self._buf: np.ndarray | None = None
        self._base = 0  # input frame index of self._buf's first row
        self.keep_input = keep_input
        self.frames_in = 0
        self.frames_out = 0

    def received(self) -> np.ndarray | None:
        """Every input frame pushed so far (None before the first)."""
        return self._input() if (self._chunks or self._buf is not None) else None

    def _input(self) -> np.ndarray:
        if self._chunks:
            parts = ([self._buf] if self._buf is not None else []) + self._chunks
            self._buf = np.concatenate(parts)
            self._chunks = []
        assert self._buf is not None, "nothing pushed yet"
        return self._buf

    def push(self, chunk: np.ndarray) -> np.ndarray:
        x = chunk if chunk.ndim == 2 else chunk[:, None]
        if self.up == self.down:
            if self.keep_input:
                self._chunks.append(np.asarray(x, dtype=np.float32))  # a device change may need it again
            self.frames_in += x.shape[0]
            return np.ascontiguousarray(x, dtype=np.float32)
        self._chunks.append(np.asarray(x, dtype=np.float32))  # kept: a device change may need it again
        self.frames_in += x.shape[0]
        ready = max(0, (self.frames_in - self.context) * self.up // self.down)
        return self._emit(ready)

    def finish(self) -> np.ndarray:
        if self.up == self.down:
            return np.zeros((0, 1), np.float32)
        total = -(-self.frames_in * self.up // self.down)
        return self._emit(total)

    def _emit(self, until: int) -> np.ndarray:
        if until <= self.frames_out or self.frames_in == 0:
            # nothing to emit; before the first push the width is unknown: one channel, like finish() at 1:1
            width = self._input().shape[1] if self.frames_in else 1
            return np.zeros((0, width), np.float32)
        x = self._input()
        start = max(0, self.frames_out * self.down // self.up - self.context)
        start -= start % self.down  # output frame (start * up / down) is then an integer: same phase
        from scipy.signal import resample_poly

        y = resample_poly(x[start - self._base :], self.up, self.down, axis=0)
        offset = start * self.up // self.down
        out = y[self.frames_out - offset : until - offset]
        self.frames_out = until
        if not self.keep_input:  # the next emit starts no earlier than this (same rule as `start` above)
            forget = max(0, until * self.down // self.up - self.context)
            forget -= forget % self.down
            if forget > self._base:
                self._buf = x[forget - self._base :].copy()
                self._base = forget
        return np.ascontiguousarray(out, dtype=np.float32)
