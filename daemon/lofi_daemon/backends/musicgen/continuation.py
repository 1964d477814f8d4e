"""The radio's side of MusicGen: an endless sequence of windows, each continuing from the last codes of the one
before (audiocraft's extend stride: the first window is `window_sec` long, every next one re-reads the last
`window_sec - stride_sec` of codes as its prompt and adds `stride_sec`), decoded into one continuous stream.

What is kept between windows is bounded: the context codes (≤ window - stride frames), the decoder's history
(DECODE_LEFT_FRAMES plus the frames still waiting for their lookahead) and the sampler's state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .pipeline import MusicGenPipeline, SamplingParams
from .streaming import ChunkedDecoder

if TYPE_CHECKING:
    from ...cancel import CancelToken


@dataclass
class MusicGenContinuation:
    params: SamplingParams
    rng: np.random.Generator
    window_frames: int = 0  # set from the pipeline at the first window
    stride_frames: int = 0
    context: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    decoder_frames: np.ndarray | None = None  # ChunkedDecoder's frames and position, between windows
    decoder_done: int = 0
    windows: int = 0

    def next_window(
        self,
        pipe: MusicGenPipeline,
        prompt: str,
        cancel: CancelToken | None,
        on_audio: Callable[[np.ndarray], None],
    ) -> dict[str, Any]:
        """Generate the next window with `prompt` and stream its audio through `on_audio` (float32 [n, 1]).
        Returns what the window was: its index, how many context frames it continued from, the new frames."""
        if self.windows == 0:
            fr = pipe.config.frame_rate
            self.window_frames = max(1, int(round(pipe.window_sec * fr)))
            self.stride_frames = max(1, min(self.window_frames, int(round(pipe.stride_sec * fr))))
            self.context = np.zeros((0, pipe.config.num_codebooks), np.int64)
        new = self.window_frames if self.windows == 0 else self.stride_frames
        chunks = ChunkedDecoder(
            pipe, lambda samples: on_audio(np.ascontiguousarray(samples.reshape(-1, 1), dtype=np.float32))
        )
        if self.decoder_frames is not None:
            chunks.frames, chunks.done = self.decoder_frames, self.decoder_done
        context = self.context
        frames = pipe.continue_window(
            prompt, context, new, self.rng, self.params, cancel=cancel, on_frames=chunks.add
        )
        chunks.forget()
        self.decoder_frames, self.decoder_done = chunks.frames, chunks.done
        keep = self.window_frames - self.stride_frames
        self.context = np.concatenate([context, frames])[-keep:] if keep else frames[:0]
        self.windows += 1
        return {
            "index": self.windows - 1,
            "context_frames": int(len(context)),
            "new_frames": int(len(frames)),
            "seconds": len(frames) / pipe.config.frame_rate,
        }
