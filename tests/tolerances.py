"""Tolerances from float32 arithmetic, so that they hold on every CPU.

Two runs of the same maths in float32 differ by rounding alone when only the order of their sums differs: ONNX
Runtime against PyTorch, one CPU's kernels against another's (AVX2, AVX-512/AMX, NEON; FMA or not; how the work is
split between threads), or one graph against an equivalent one. Each rounding is off by at most u = 2^-24 relative
(float32 unit roundoff) and in practice by a random amount: a chain of n roundings drifts by a random walk whose
standard deviation is sqrt(n/3)·u (Higham & Mary, "A new approach to probabilistic rounding error analysis",
2019), and the difference of two independent runs by sqrt(2n/3)·u ≈ 0.8·sqrt(n)·u. `f32_tol` allows 4·sqrt(n)·u,
five standard deviations. A wrong weight, a swapped axis or a missing sampling step is an O(1e-2..1) relative
error, orders of magnitude above every bound here.
"""

from __future__ import annotations

import math

U32 = 2.0**-24  # float32 unit roundoff (half of np.finfo(np.float32).eps)


def f32_tol(n: float) -> float:
    """Relative difference allowed between two float32 runs whose longest chain of roundings has length n."""
    return 4.0 * math.sqrt(n) * U32


# Chain lengths of the tiny fixture graphs, counted from the ONNX files in tests/fixtures/: the sum over the
# MatMul/Gemm/Conv nodes of their reduction length (inner dimension; channels × taps), plus 32 for each norm,
# softmax or matmul of dynamic length (32 channels; the tests' sequences are shorter than 32 tokens).
ACE_TEXT = 2560 + 51 * 32  # text_encoder.onnx: UMT5, 10 blocks of width 32
ACE_LYRIC = 1648 + 38 * 32  # transformer_encoder.onnx: lyric encoder and condition projections
ACE_CONDITIONS = ACE_TEXT + ACE_LYRIC
ACE_VELOCITY = 10588 + 101 * 32  # transformer_decoder.onnx: one velocity evaluation (20 blocks)
ACE_VOCODER = 11301 + 14 * 32  # vocoder.onnx


def ace_dcae(frames: int) -> int:
    """dcae_decoder.onnx: its convolutions, and linear attention summing over all 16 × frames latent positions."""
    return 2450 + 8 * 32 + 2 * 16 * frames


def ace_latents(evaluations: int) -> int:
    """Conditions, then `evaluations` chained velocity evaluations (Euler/PingPong: one per step; Heun: 2N-1)."""
    return ACE_CONDITIONS + evaluations * ACE_VELOCITY


def ace_wave(evaluations: int, frames: int) -> int:
    """Latents, then DCAE and vocoder."""
    return ace_latents(evaluations) + ace_dcae(frames) + ACE_VOCODER


def musicgen_audio(frames: int) -> int:
    """encodec_decode.onnx of tests/fixtures/musicgen-tiny: its convolutions (1946) and two LSTM layers of width 16,
    whose state chains through every frame (2 layers × (16 input + 16 hidden) per frame)."""
    return 1946 + 2 * 32 * frames


def audio_tol(frames: int, reference) -> float:
    """Largest sample difference allowed between two EnCodec decodes of the same `frames` codes: relative to the
    peak of `reference` (the last convolution's sum is of that size)."""
    import numpy as np

    return f32_tol(musicgen_audio(frames)) * float(np.abs(reference).max())


# The encode path: a log-mel frame is a length-2048 FFT, then a sum over ≤ 1025 bins (the mel filters);
# dcae_encoder.onnx's convolutions sum over 2396 (counted as above), its norms over 8 × 32 channels, and its
# linear attention over all 16 × frames latent positions.
ACE_LOG_MEL = 2048 + 1025


def ace_dcae_encoder(frames: int) -> int:
    return ACE_LOG_MEL + 2396 + 8 * 32 + 2 * 16 * frames
