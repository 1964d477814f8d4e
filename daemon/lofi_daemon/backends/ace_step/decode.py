"""Latent → stereo waveform: DCAE decoder (latent → two log-mel channels) then the vocoder on both channels as
one batch, then 44.1 → 48 kHz with scipy's polyphase resampler.

Long tracks are decoded in overlapping windows: each window is run with `margin` frames of context on both sides
and only its core is kept, so every kept sample saw (almost) the context a one-pass decode gives it; cores tile
the track with no gaps and no crossfade. The DCAE's linear attention is global within a window, so windowed and
one-pass output differ slightly everywhere (measured in tests/test_ace_step_decode.py), not just at seams.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MODEL_RATE = 44100
OUTPUT_RATE = 48000
MEL_PER_LATENT = 8
SAMPLES_PER_MEL = 512


@dataclass(frozen=True)
class Windowing:
    """Window sizes in input frames (latent frames for the DCAE, mel frames for the vocoder).

    DCAE: 512-frame windows keeping the central 256, as upstream's `decode_overlap` (tracks up to 47.5 s decode in
    one pass). Vocoder: the real ADaMoSHiFiGAN sees about ±90 mel frames (stem 3 + 18 ConvNeXt blocks × 3 +
    pre-conv 6, plus ≈ 27 in the HiFi-GAN head), so a 96-frame margin makes windowed output equal to one pass."""

    dcae_core: int = 256
    dcae_margin: int = 128
    vocoder_core: int = 1024
    vocoder_margin: int = 96
    encoder_core: int = 256  # the DCAE encoder (encode.py) with the decoder's geometry: one pass up to 47.5 s
    encoder_margin: int = 128


def windowed(
    fn: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    core: int,
    margin: int,
    ratio: int,
    fixed: int | None = None,
    check: Callable[[], None] | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Apply `fn` along the last axis of x in overlapping windows; fn maps n frames to n·ratio outputs.
    `fixed` forces every window to exactly that many input frames (graphs with a static length), padding the
    track end with zeros. `on_window(done, total)` after every call of fn."""
    n = x.shape[-1]
    if fixed is None and n <= core + 2 * margin:
        out = fn(x)
        if on_window is not None:
            on_window(1, 1)
        return out
    pieces = []
    starts = range(0, n, core)
    for k, start in enumerate(starts):
        end = min(start + core, n)
        lo, hi = max(0, start - margin), min(n, end + margin)
        if fixed is not None:
            lo = max(0, min(lo, n - fixed)) if n >= fixed else 0
            hi = lo + fixed
        seg = x[..., lo : min(hi, n)]
        if seg.shape[-1] < hi - lo:
            pad = [(0, 0)] * (x.ndim - 1) + [(0, hi - lo - seg.shape[-1])]
            seg = np.pad(seg, pad)
        if check is not None:
            check()
        out = fn(np.ascontiguousarray(seg))
        pieces.append(out[..., (start - lo) * ratio : (end - lo) * ratio])
        if on_window is not None:
            on_window(k + 1, len(starts))
    return np.concatenate(pieces, axis=-1)


def resample_to_output(audio: np.ndarray) -> np.ndarray:
    """[channels, n] at 44.1 kHz → [n', channels] float32 at 48 kHz."""
    # Imported here: scipy.signal takes ~1 s to import, and `lofi-daemon health` loads this module only to ask
    # the backend about its files.
    from scipy.signal import resample_poly

    out = resample_poly(audio.astype(np.float64), 160, 147, axis=-1)
    return np.ascontiguousarray(out.T, dtype=np.float32)
