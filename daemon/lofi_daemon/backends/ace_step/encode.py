"""Audio → DCAE latents, as upstream `MusicDCAE.encode`: resample to 44.1 kHz, pad to whole latent frames (4096
samples), log-mel spectrogram (the vocoder's `mel_transform`: n_fft 2048, hop 512, periodic Hann, 128 slaney mels
over 40 Hz–16 kHz, log of clamp 1e-5), then `dcae_encoder.onnx`, which holds the mel normalisation
((mel + 11) / 14, then (x − 0.5) / 0.5) and the latent shift/scale ((z + 1.9091) · 0.1786).

Resampling uses scipy's polyphase filter (as decode.py does for the way out) where upstream uses torchaudio's
windowed-sinc `Resample`; the two differ only near Nyquist (docs/model-formats.md). The encoder runs in one pass
over the whole track as upstream's does (its linear attention is global), or in overlapping windows for tracks
longer than one window (`encode_mel`), as the DCAE decoder does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Protocol

import numpy as np

from .decode import MEL_PER_LATENT, MODEL_RATE, SAMPLES_PER_MEL, windowed

N_FFT = 2048
N_MELS = 128
F_MIN, F_MAX = 40.0, 16000.0
SAMPLES_PER_LATENT = MEL_PER_LATENT * SAMPLES_PER_MEL  # 4096
ENCODER_FILE = "dcae_encoder.onnx"


class Session(Protocol):
    def run(self, output_names, input_feed): ...


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic (27 mels per factor 6.4) above."""
    f = np.asarray(f, np.float64)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, 3.0 * f / 200.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    log_part = 1000.0 * np.exp((math.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log_part, 200.0 * m / 3.0)


def mel_filterbank() -> np.ndarray:
    """[1025, 128] triangular slaney-normalised filters (torchaudio `melscale_fbanks(norm="slaney",
    mel_scale="slaney")`, which the vocoder's `mel_transform` holds), in float64."""
    freqs = np.linspace(0.0, MODEL_RATE // 2, N_FFT // 2 + 1)
    f_pts = _mel_to_hz(np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), N_MELS + 2))
    slopes = f_pts[None, :] - freqs[:, None]
    f_diff = np.diff(f_pts)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))
    return fb * (2.0 / (f_pts[2:] - f_pts[:-2]))


def log_mel(audio: np.ndarray, chunk_frames: int = 1024) -> np.ndarray:
    """[C, n] at 44.1 kHz → [C, 128, n // 512] float32 log-mel: reflect-pad 768 samples each side, uncentred STFT.
    Computed in float64 a chunk of frames at a time (bounded memory for long tracks)."""
    pad = (N_FFT - SAMPLES_PER_MEL) // 2
    y = np.pad(np.asarray(audio, np.float64), ((0, 0), (pad, N_FFT - SAMPLES_PER_MEL - pad)), mode="reflect")
    frames = 1 + (y.shape[-1] - N_FFT) // SAMPLES_PER_MEL
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    fb = mel_filterbank()
    views = np.lib.stride_tricks.sliding_window_view(y, N_FFT, axis=-1)[:, ::SAMPLES_PER_MEL][:, :frames]
    out = np.empty((y.shape[0], N_MELS, frames), np.float32)
    for lo in range(0, frames, chunk_frames):
        spec = np.fft.rfft(views[:, lo : lo + chunk_frames] * window, axis=-1)
        mag = np.sqrt(spec.real**2 + spec.imag**2 + 1e-6)
        out[:, :, lo : lo + chunk_frames] = np.log(np.maximum(mag @ fb, 1e-5)).transpose(0, 2, 1)
    return out


def to_model_audio(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Any audio → stereo [2, n] float64 at 44.1 kHz. `audio` is [n] (mono) or [n, channels] (the project's and
    soundfile's layout); mono is duplicated (upstream's `load_audio`), more than two channels keep the first two
    (front left/right in WAV order)."""
    a = np.asarray(audio)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"audio must be [samples] or [samples, channels] with samples, got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"audio must be floating point samples in [-1, 1], got {a.dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError("audio contains NaN or infinite samples")
    if int(sample_rate) != sample_rate or sample_rate < 1000:
        raise ValueError(f"sample_rate must be a whole number of Hz ≥ 1000, got {sample_rate}")
    a = a[:, :2] if a.shape[1] >= 2 else np.repeat(a, 2, axis=1)
    x = a.T.astype(np.float64)
    ratio = Fraction(MODEL_RATE, int(sample_rate))
    if ratio != 1:
        from scipy.signal import resample_poly  # ~1 s import: only when encoding

        x = resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)
    return x


def encode_mel(
    mel: np.ndarray,
    encoder: Session,
    core: int | None = None,
    margin: int = 0,
    check: Callable[[], None] | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Log-mel [2, 128, 8F] → latents [1, 8, 16, F]: one pass (upstream), or windows of `core` latent frames
    with `margin` frames of context on each side (decode.windowed) when the track is longer than one window,
    which bounds the encoder's activations (≈ 0.5 GB per 30 s at full size) for long tracks."""
    channels, bins, m = mel.shape
    latent_major = mel.reshape(channels, bins, m // MEL_PER_LATENT, MEL_PER_LATENT).transpose(0, 1, 3, 2)

    def run(part: np.ndarray) -> np.ndarray:  # [2, 128, 8, n] → [8, 16, n]
        n = part.shape[-1]
        window = part.transpose(0, 1, 3, 2).reshape(1, channels, bins, n * MEL_PER_LATENT)
        out = encoder.run(None, {"mel_spectrogram": np.ascontiguousarray(window, np.float32)})[0]
        return np.asarray(out[0], np.float32)

    if core is None:
        out = run(latent_major)[None]
        if on_window is not None:
            on_window(1, 1)
        return out
    return windowed(run, latent_major, core, margin, 1, check=check, on_window=on_window)[None]


def encode_audio(
    audio: np.ndarray,
    sample_rate: int,
    encoder: Session,
    core: int | None = None,
    margin: int = 0,
    check: Callable[[], None] | None = None,
    on_window: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Audio ([n] or [n, channels], any rate) → latents [1, 8, 16, ceil(n₄₄ / 4096)] float32, where n₄₄ is the
    length at 44.1 kHz (upstream pads the end to whole latent frames; its `latent_lengths` is the floor).
    `encoder` is the `dcae_encoder.onnx` session; `core`/`margin` window long tracks (`encode_mel`);
    `on_window(done, total)` after each window."""
    x = to_model_audio(audio, sample_rate)
    n = x.shape[-1]
    x = np.pad(x, ((0, 0), (0, -n % SAMPLES_PER_LATENT)))
    return encode_mel(log_mel(x), encoder, core, margin, check, on_window)
