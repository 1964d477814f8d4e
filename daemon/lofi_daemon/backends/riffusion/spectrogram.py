"""Riffusion v1 spectrogram images ⇄ audio, in numpy/scipy (no torch at run time).

The parameters are the ones riffusion v1 was trained with (riffusion-hobby `SpectrogramParams` defaults): 44.1 kHz
mono, hop 441 (10 ms), Hann window 4410 (100 ms) centred in an FFT of 17640 (400 ms), 512 HTK mel bands over
0–10 kHz without normalisation, image pixel = 255·(1 − (mel / max)^0.25), frequency upwards (row 0 is the top),
512 px wide = 5.12 s.

Image → audio follows riffusion's converter step by step: flip Y, invert, /255, power 1/0.25, × 30e6; inverse mel;
Griffin–Lim (32 iterations, momentum 0.99, random initial phase as torchaudio draws it: real and imaginary parts
uniform in [0, 1)). The STFT conventions are torch's (periodic Hann window zero-padded to n_fft in the middle,
centre reflect padding, inverse by windowed overlap-add divided by the summed squared window).

Inverse mel, the choice made here: torchaudio ≥ 2.1's `InverseMelScale` solves `fb.T @ X = mel` with
`torch.linalg.lstsq` (driver "gels") and clamps with ReLU. The system is underdetermined (512 equations, 8821
unknowns) and its matrix has full row rank, so gels returns the minimum-norm solution X = fb (fb.T fb)⁻¹ mel. That
is computed here exactly, from the 512 × 512 Gram matrix (factorised once, cached) and the sparse filter bank, then
ReLU: the same answer as current torchaudio, to rounding. Riffusion itself ran the older torchaudio, which instead
ran 200 SGD steps from a random start; that leaves part of the random start in the null space of the filter bank
(a faint broadband floor), so outputs differ from the hobby app's in that floor, not in the mel content.

Speed: only the bins below f_max carry magnitude (the filter bank is zero above 10 kHz, bin 4000 of 8821), so the
phase update works on those bins only; each frame's FFT is taken from the 4410 windowed samples with the centring
offset applied as a phase ramp, and the inverse keeps only the window's support, so no 17640-sample frame is ever
built. Overlap-add is ten strided slice additions (window = 10 hops).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.linalg
import scipy.sparse


@dataclass(frozen=True)
class SpectrogramParams:
    sample_rate: int = 44100
    hop_length: int = 441
    win_length: int = 4410
    n_fft: int = 17640
    n_mels: int = 512
    f_min: float = 0.0
    f_max: float = 10000.0
    power_for_image: float = 0.25
    max_value: float = 30e6  # riffusion's scale for decoded images ("in practice doesn't matter")
    griffin_lim_iters: int = 32
    momentum: float = 0.99

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def samples_for_width(self, width: int) -> int:
        """Samples the inverse STFT yields for `width` frames (torch.istft with center=True, length=None)."""
        return self.hop_length * (width - 1)


RIFFUSION_V1 = SpectrogramParams()
WORKERS = 2  # scipy.fft threads: the target machines have two cores or more


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(p: SpectrogramParams = RIFFUSION_V1) -> np.ndarray:
    """[n_freqs, n_mels] HTK triangles without normalisation (the layout of torchaudio's `melscale_fbanks`)."""
    all_freqs = np.linspace(0.0, p.sample_rate // 2, p.n_freqs)
    m_pts = np.linspace(
        _hz_to_mel(np.array(p.f_min, dtype=np.float64)),
        _hz_to_mel(np.array(p.f_max, dtype=np.float64)),
        p.n_mels + 2,
    )
    f_pts = _mel_to_hz(m_pts)
    f_diff = np.diff(f_pts)
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window's default)."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)


class Converter:
    """Everything that depends only on the parameters, computed once (see `converter()`). `dtype` is the real
    precision of the STFT work: float32 in the product (twice as fast), float64 for exactness checks."""

    def __init__(self, p: SpectrogramParams = RIFFUSION_V1, dtype: type = np.float32) -> None:
        if p.win_length % p.hop_length:
            raise ValueError("win_length must be a multiple of hop_length (overlap-add by whole hops)")
        self.p = p
        self.real = np.dtype(dtype)
        self.complex = np.result_type(self.real, np.complex64)
        fb = mel_filterbank(p)
        nz = np.flatnonzero(fb.any(axis=1))
        # bins above the last one any filter touches never carry magnitude
        self.n_active = int(nz[-1]) + 1
        self.fb = fb[: self.n_active].astype(np.float32)  # [active, n_mels]
        self.fb_sparse = scipy.sparse.csr_matrix(fb[: self.n_active])
        gram = fb.T @ fb  # [n_mels, n_mels], banded and positive definite when fb.T has full row rank
        self.gram_cho = scipy.linalg.cho_factor(gram)
        self.offset = (p.n_fft - p.win_length) // 2  # where torch puts the window inside the n_fft frame
        self.window = hann_window(p.win_length).astype(self.real)
        k = np.arange(self.n_active)
        # frame content starts `offset` samples into the n_fft frame: a phase ramp over the active bins
        self.ramp = np.exp(-2j * np.pi * k * self.offset / p.n_fft).astype(self.complex)
        self._envelopes: dict[int, np.ndarray] = {}

    # ---- mel ⇄ linear ----------------------------------------------------------------------------------------
    def mel_from_linear(self, mag: np.ndarray) -> np.ndarray:
        """[..., n_freqs or active, T] magnitudes → [..., n_mels, T]."""
        return np.einsum("fm,...ft->...mt", self.fb, mag[..., : self.n_active, :].astype(np.float32))

    def linear_from_mel(self, mel: np.ndarray) -> np.ndarray:
        """Minimum-norm least-squares inverse of the filter bank, clamped at 0: [n_mels, T] → [active, T]."""
        coeffs = scipy.linalg.cho_solve(self.gram_cho, mel.astype(np.float64))
        return np.maximum(self.fb_sparse @ coeffs, 0.0)

    # ---- STFT ------------------------------------------------------------------------------------------------
    def _envelope(self, frames: int) -> np.ndarray:
        if frames not in self._envelopes:
            env = self._overlap_add(
                np.broadcast_to(self.window.astype(np.float64) ** 2, (frames, self.p.win_length))
            )
            start = self.p.n_fft // 2 - self.offset
            self._envelopes[frames] = env[start : start + self.p.samples_for_width(frames)].astype(self.real)
        return self._envelopes[frames]

    def _overlap_add(self, segments: np.ndarray) -> np.ndarray:
        """[T, win] segments placed every hop → signal of hop·(T − 1) + win samples."""
        hop = self.p.hop_length
        t = segments.shape[0]
        per = self.p.win_length // hop
        out = np.zeros((t - 1 + per, hop), dtype=segments.dtype)
        blocks = segments.reshape(t, per, hop)
        for j in range(per):
            out[j : j + t] += blocks[:, j]
        return out.reshape(-1)

    def stft(self, audio: np.ndarray) -> np.ndarray:
        """torch.stft(center=True, reflect) of a 1-D signal, active bins only: [active, T] complex."""
        p = self.p
        x = np.pad(np.asarray(audio, dtype=self.real), p.n_fft // 2, mode="reflect")
        frames = 1 + (x.shape[0] - p.n_fft) // p.hop_length
        view = np.lib.stride_tricks.sliding_window_view(x[self.offset :], p.win_length)[:: p.hop_length][
            :frames
        ]
        buf = np.zeros((frames, p.n_fft), dtype=self.real)  # zero padding written once, not copied per call
        np.multiply(view, self.window, out=buf[:, : p.win_length])
        spec = scipy.fft.rfft(buf, axis=-1, workers=WORKERS)[:, : self.n_active]
        spec *= self.ramp
        return spec.T

    def istft(self, spec: np.ndarray) -> np.ndarray:
        """torch.istft(center=True, length=None) of [active, T] (bins above are zero): hop·(T − 1) samples."""
        p = self.p
        frames = spec.shape[1]
        full = np.zeros((frames, p.n_freqs), dtype=self.complex)
        np.multiply(spec.T, np.conj(self.ramp), out=full[:, : self.n_active])
        seg = scipy.fft.irfft(full, n=p.n_fft, axis=-1, workers=WORKERS)[:, : p.win_length]
        y = self._overlap_add(seg * self.window)
        start = p.n_fft // 2 - self.offset  # drop the centre padding (the signal starts `offset` samples in)
        return y[start : start + p.samples_for_width(frames)] / self._envelope(frames)

    def griffin_lim(
        self,
        mag: np.ndarray,
        angles: np.ndarray | None = None,
        seed: int | Sequence[int] = 0,
        check: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """torchaudio's `griffinlim` (power 1, momentum, length None) on [active, T] magnitudes. `angles` is the
        initial complex phase estimate (torchaudio draws real and imaginary parts uniform in [0, 1))."""
        p = self.p
        mag = np.asarray(mag)[: self.n_active].astype(self.real)
        if angles is None:
            rng = np.random.default_rng(seed)
            angles = rng.random(mag.shape, dtype=np.float32) + 1j * rng.random(mag.shape, dtype=np.float32)
        angles = np.asarray(angles)[: self.n_active].astype(self.complex)
        prev = None
        k = p.momentum / (1.0 + p.momentum)
        for _ in range(p.griffin_lim_iters):
            if check is not None:
                check()  # a cancel lands within one iteration
            rebuilt = self.stft(self.istft(mag * angles))
            angles = rebuilt - k * prev if (p.momentum and prev is not None) else rebuilt.copy()
            angles /= np.abs(angles) + 1e-16
            prev = rebuilt
        return self.istft(mag * angles)


@functools.cache
def converter(p: SpectrogramParams = RIFFUSION_V1, dtype: type = np.float32) -> Converter:
    return Converter(p, dtype)


# ---- images --------------------------------------------------------------------------------------------------
def mel_from_image(image: np.ndarray, p: SpectrogramParams = RIFFUSION_V1) -> np.ndarray:
    """uint8 image [H = n_mels, W] or [H, W, 3] (mono uses the first channel, as riffusion does) → mel
    magnitudes [n_mels, W]: flip Y, invert, /255, power 1/0.25, × max_value."""
    data = np.asarray(image)
    if data.ndim == 3:
        data = data[..., 0]
    data = data[::-1].astype(np.float32)
    return np.power((255.0 - data) / 255.0, 1.0 / p.power_for_image) * p.max_value


def image_from_mel(mel: np.ndarray, p: SpectrogramParams = RIFFUSION_V1) -> np.ndarray:
    """mel magnitudes [n_mels, W] → uint8 image [n_mels, W] (riffusion's `image_from_spectrogram`, one channel)."""
    peak = float(np.max(mel))
    data = np.power(mel / peak, p.power_for_image) if peak > 0 else np.zeros_like(mel)
    data = 255.0 - data * 255.0
    return data.astype(np.uint8)[::-1].copy()


def audio_from_mel(
    mel: np.ndarray,
    seed: int | Sequence[int] = 0,
    angles: np.ndarray | None = None,
    p: SpectrogramParams = RIFFUSION_V1,
    check: Callable[[], None] | None = None,
) -> np.ndarray:
    """Mel magnitudes [n_mels, W] → audio (hop·(W − 1) samples at p.sample_rate), not normalised."""
    conv = converter(p)
    return conv.griffin_lim(conv.linear_from_mel(mel), angles=angles, seed=seed, check=check)


def audio_from_image(
    image: np.ndarray,
    seed: int | Sequence[int] = 0,
    p: SpectrogramParams = RIFFUSION_V1,
    check: Callable[[], None] | None = None,
) -> np.ndarray:
    return audio_from_mel(mel_from_image(image, p), seed=seed, p=p, check=check)


def mel_from_audio(audio: np.ndarray, p: SpectrogramParams = RIFFUSION_V1) -> np.ndarray:
    """Mono audio at p.sample_rate → mel magnitudes [n_mels, 1 + len // hop]."""
    conv = converter(p)
    return conv.mel_from_linear(np.abs(conv.stft(audio)))


def image_from_audio(audio: np.ndarray, p: SpectrogramParams = RIFFUSION_V1) -> np.ndarray:
    return image_from_mel(mel_from_audio(audio, p), p)
