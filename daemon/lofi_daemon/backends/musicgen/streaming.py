"""Play-while-generating: decode EnCodec in overlapping chunks as token frames settle.

EnCodec's decoder is non-causal convolutions (a frame's audio depends on the next frame) around an LSTM (it
depends on everything before). So each chunk [a, b) is decoded together with `left` frames of history and
`right` frames of lookahead, and only the samples of [a, b) are emitted; the defaults are the pipeline's
DECODE_LEFT_FRAMES / DECODE_RIGHT_FRAMES (see there for the measured seam errors).

The saved track is still decoded at the end by `pipe.decode_track` (one EnCodec pass up to 30 s), so a track
is bit-identical whether it was streamed or not; the chunks are for the player only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .pipeline import (
    DECODE_LEFT_FRAMES,
    DECODE_RIGHT_FRAMES,
    GenerationResult,
    MusicGenPipeline,
    SamplingParams,
)

if TYPE_CHECKING:
    from ...cancel import CancelToken


class ChunkedDecoder:
    """Feed it frames as they settle (`add`), it calls `emit(samples)` with float32 mono audio in order."""

    def __init__(
        self,
        pipe: MusicGenPipeline,
        emit: Callable[[np.ndarray], None],
        *,
        first_chunk: int = 25,
        chunk: int = 100,
        left: int = DECODE_LEFT_FRAMES,
        right: int = DECODE_RIGHT_FRAMES,
    ) -> None:
        self.pipe, self.emit = pipe, emit
        self.first_chunk, self.chunk, self.left, self.right = first_chunk, chunk, left, right
        self.frames = np.zeros((0, pipe.config.num_codebooks), dtype=np.int64)
        self.done = 0  # frames whose audio has been emitted
        self.first_audio_at: float | None = None

    def _decode(self, a: int, b: int) -> None:
        lo = max(0, a - self.left)
        hi = min(len(self.frames), b + self.right)
        audio = self.pipe.decode(self.frames[lo:hi])
        hop = self.pipe.config.hop_length
        self.emit(audio[(a - lo) * hop : (b - lo) * hop])
        if self.first_audio_at is None:
            self.first_audio_at = time.perf_counter()
        self.done = b

    def add(self, new_frames: np.ndarray) -> None:
        self.frames = np.concatenate([self.frames, new_frames], axis=0)
        while True:
            size = self.first_chunk if self.done == 0 else self.chunk
            if len(self.frames) < self.done + size + self.right:
                return
            self._decode(self.done, self.done + size)

    def forget(self) -> None:
        """Drop the frames no later chunk needs (all but `left` before `done`): an endless stream stays bounded."""
        drop = max(0, self.done - self.left)
        if drop:
            self.frames = self.frames[drop:]
            self.done -= drop

    def finish(self) -> None:
        """Emit the rest: the true end of the track needs no lookahead (the caller trims to the exact length)."""
        if self.done < len(self.frames):
            lo = max(0, self.done - self.left)
            audio = self.pipe.decode(self.frames[lo:])
            self.emit(audio[(self.done - lo) * self.pipe.config.hop_length :])
            if self.first_audio_at is None:
                self.first_audio_at = time.perf_counter()
            self.done = len(self.frames)


def generate_streaming(
    pipe: MusicGenPipeline,
    prompt: str,
    duration_sec: float,
    seed: int,
    params: SamplingParams,
    progress: Callable[..., None] | None,
    cancel: CancelToken | None,
    on_audio: Callable[[np.ndarray], None],
    **chunking: int,
) -> GenerationResult:
    """Like `pipe.generate`, calling `on_audio(float32 [samples, 1])` as audio becomes final."""
    want = int(round(duration_sec * pipe.config.sample_rate))
    emitted = {"n": 0}

    def emit(samples: np.ndarray) -> None:
        samples = samples[: max(0, want - emitted["n"])]  # never past the requested length
        if len(samples):
            emitted["n"] += len(samples)
            on_audio(np.ascontiguousarray(samples.reshape(-1, 1), dtype=np.float32))

    chunks = ChunkedDecoder(pipe, emit, **chunking)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    frames, plan = pipe.generate_frames(
        prompt,
        duration_sec,
        seed,
        params,
        progress=progress,
        cancel=cancel,
        on_frames=chunks.add,
        timings=timings,
    )
    chunks.finish()
    if chunks.first_audio_at is not None:
        timings["first_audio_sec"] = chunks.first_audio_at - t0
    if cancel is not None:
        cancel.check()
    t1 = time.perf_counter()
    audio = pipe.decode_track(frames)[:want]
    timings["encodec_sec"] = time.perf_counter() - t1
    timings["total_sec"] = time.perf_counter() - t0
    return GenerationResult(frames=frames, audio=audio, timings=timings, windows=plan)
