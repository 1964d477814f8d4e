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

Speed: only the bins below f_max carry magnitude (the filter bank is zero above 10 kHz, bin 4000 of 8821), so
Griffin–Lim works on those bins only, and it iterates on a coarser time grid. Every frame of the inverse STFT is a
periodic signal made of those bins alone (< 10 kHz), and the window, its place and the bins are the same functions
of time at any sample rate; so sampling at GL_RATE = 22 kHz instead of 44.1 kHz (hop 220, window 2200, n_fft 8800:
the same 10 ms, 100 ms, 400 ms and 2.5 Hz bins) yields the same signal samples on a coarser grid, and the forward
STFT's sums at 22 kHz equal those at 44.1 kHz but for aliasing of what lies above 11 kHz: the tails of the
windowed spectrum past the 10 kHz band, ~1e-8 relative per iteration (measured; float32 rounding is 6e-8). The
exception is the first and last 5 frames, whose windows reach the reflected padding: its kink at each end is not
band-limited and the end of torch's ISTFT falls one full-rate sample short of the last frame, so those frames are
recomputed at full rate each iteration from the ISTFT of the 15 frames at that end. The final ISTFT is at full
rate. This halves every FFT and keeps the output equal to the full-rate iteration within its float32 rounding
(tests/test_riffusion_spectrogram.py measures both and the spectral convergence). Frames go through in chunks of
CHUNK whose buffers stay in the CPU's cache, split between THREADS workers; overlap-add is by whole hops.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction

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

    def on_grid(self, rate: int) -> SpectrogramParams:
        """The same frame times, window and frequency bins sampled at `rate` instead (hop, window and n_fft
        scaled by rate / sample_rate, which must keep them whole)."""
        sizes = [Fraction(v * rate, self.sample_rate) for v in (self.hop_length, self.win_length, self.n_fft)]
        if any(v.denominator != 1 for v in sizes):
            raise ValueError(f"{rate} Hz does not put hop, window and n_fft on whole samples")
        hop, win, n_fft = (int(v) for v in sizes)
        return replace(self, sample_rate=rate, hop_length=hop, win_length=win, n_fft=n_fft)


RIFFUSION_V1 = SpectrogramParams()
THREADS = min(2, os.cpu_count() or 1)  # Griffin–Lim workers: the target machines have two cores or more
GL_RATE = 22000  # Griffin–Lim's working grid (module doc): above 2 × 10 kHz with a margin, on whole samples
CHUNK = 32  # frames per FFT batch: a chunk's buffers stay in a core's cache


def rfft(frames: np.ndarray) -> np.ndarray:
    return scipy.fft.rfft(frames, axis=-1)


def irfft(spectra: np.ndarray, n: int) -> np.ndarray:
    return scipy.fft.irfft(spectra, n=n, axis=-1)


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


class MelBank:
    """The filter bank and its minimum-norm inverse, computed once (the Cholesky factor of the Gram matrix)."""

    def __init__(self, p: SpectrogramParams) -> None:
        fb = mel_filterbank(p)
        nz = np.flatnonzero(fb.any(axis=1))
        # bins above the last one any filter touches never carry magnitude
        self.n_active = int(nz[-1]) + 1
        self.fb = fb[: self.n_active].astype(np.float32)  # [active, n_mels]
        self.fb_sparse = scipy.sparse.csr_matrix(fb[: self.n_active])
        gram = fb.T @ fb  # [n_mels, n_mels], banded and positive definite when fb.T has full row rank
        self.gram_cho = scipy.linalg.cho_factor(gram)

    def mel_from_linear(self, mag: np.ndarray) -> np.ndarray:
        """[..., n_freqs or active, T] magnitudes → [..., n_mels, T]."""
        return np.einsum("fm,...ft->...mt", self.fb, mag[..., : self.n_active, :].astype(np.float32))

    def linear_from_mel(self, mel: np.ndarray) -> np.ndarray:
        """Minimum-norm least-squares inverse of the filter bank, clamped at 0: [n_mels, T] → [active, T]."""
        coeffs = scipy.linalg.cho_solve(self.gram_cho, mel.astype(np.float64))
        return np.maximum(self.fb_sparse @ coeffs, 0.0)


class StftGrid:
    """torch.stft / torch.istft (centre, reflect, periodic Hann window in the middle of n_fft) on one sampling
    grid, frames-major: spectra are [T, n_active] (bins above are zero). Work goes in chunks of frames whose
    buffers stay in a core's cache; overlap-add is by whole hops (the window is 10 hops, 15 hops into n_fft)."""

    def __init__(self, p: SpectrogramParams, n_active: int, dtype: type | np.dtype) -> None:
        if p.win_length % p.hop_length or (p.n_fft - p.win_length) % (2 * p.hop_length):
            raise ValueError("the window must span whole hops and sit on whole hops inside n_fft")
        self.p = p
        self.n_active = n_active
        self.real = np.dtype(dtype)
        self.complex = np.result_type(self.real, np.complex64)
        self.hop, self.win, self.n_fft = p.hop_length, p.win_length, p.n_fft
        self.offset = (p.n_fft - p.win_length) // 2  # where torch puts the window inside the n_fft frame
        self.pad = p.n_fft // 2  # centre padding
        self.window = hann_window(p.win_length).astype(self.real)
        self._inv_envelopes: dict[int, np.ndarray] = {}

    def buffers(self, n: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
        """Zero-padded frame and spectrum buffers for n frames (one set per thread; the padding stays zero)."""
        return (
            np.zeros((n, self.n_fft), dtype=self.real),
            np.zeros((n, self.n_fft // 2 + 1), dtype=self.complex),
        )

    def length(self, frames: int) -> int:
        return self.p.samples_for_width(frames)

    def padded_length(self, frames: int) -> int:
        return self.length(frames) + 2 * self.pad

    def inv_envelope(self, frames: int) -> np.ndarray:
        """1 / Σ window² over the frames (torch.istft's normalisation), on the output samples."""
        if frames not in self._inv_envelopes:
            acc = np.zeros(self.padded_length(frames))
            self.overlap_add(np.broadcast_to(hann_window(self.win) ** 2, (frames, self.win)), 0, acc)
            env = acc[self.pad : self.pad + self.length(frames)]
            self._inv_envelopes[frames] = (1.0 / env).astype(self.real)
        return self._inv_envelopes[frames]

    # ---- chunks -------------------------------------------------------------------------------------------
    def spectra(self, padded: np.ndarray, start: int, stop: int, frame_buf: np.ndarray) -> np.ndarray:
        """Frames [start, stop) of the STFT of a centre-padded signal: [stop − start, n_active]."""
        n = stop - start
        first = start * self.hop + self.offset
        span = padded[first : first + (n - 1) * self.hop + self.win]
        view = np.lib.stride_tricks.sliding_window_view(span, self.win)[:: self.hop]
        buf = frame_buf[:n]
        np.multiply(view, self.window, out=buf[:, self.offset : self.offset + self.win])
        return rfft(buf)[:, : self.n_active]

    def segments(self, spec_buf: np.ndarray) -> np.ndarray:
        """Windowed inverse FFT of full-width spectra [n, n_fft // 2 + 1]: the window's support, [n, win]."""
        seg = irfft(spec_buf, self.n_fft)[:, self.offset : self.offset + self.win]
        seg *= self.window
        return seg

    def overlap_add(self, segments: np.ndarray, start: int, acc: np.ndarray) -> None:
        """Add frames start, start + 1, … (each [win]) into the centre-padded signal `acc`, in place."""
        hop, per = self.hop, self.win // self.hop
        n = segments.shape[0]
        blocks = segments.reshape(n, per, hop)
        at = acc.reshape(-1, hop)
        first = start + self.offset // hop
        for j in range(per):
            at[first + j : first + j + n] += blocks[:, j]

    def finish(self, acc: np.ndarray, frames: int) -> np.ndarray:
        """Overlap-added segments (centre-padded) → the istft output: padding dropped, envelope divided."""
        return acc[self.pad : self.pad + self.length(frames)] * self.inv_envelope(frames)

    # ---- whole signals ------------------------------------------------------------------------------------
    def stft(self, audio: np.ndarray) -> np.ndarray:
        """torch.stft(center=True, reflect) of a 1-D signal: [T, n_active] complex."""
        padded = np.pad(np.asarray(audio, dtype=self.real), self.pad, mode="reflect")
        frames = 1 + (padded.shape[0] - self.n_fft) // self.hop
        frame_buf, _ = self.buffers(min(CHUNK, frames))
        chunks = range(0, frames, CHUNK)
        return np.concatenate([self.spectra(padded, a, min(a + CHUNK, frames), frame_buf) for a in chunks])

    def istft(self, spec: np.ndarray) -> np.ndarray:
        """torch.istft(center=True, length=None) of [T, n_active]: hop·(T − 1) samples."""
        frames = spec.shape[0]
        _, spec_buf = self.buffers(min(CHUNK, frames))
        acc = np.zeros(self.padded_length(frames), dtype=self.real)
        for a in range(0, frames, CHUNK):
            n = min(CHUNK, frames - a)
            spec_buf[:n, : self.n_active] = spec[a : a + n]
            self.overlap_add(self.segments(spec_buf[:n]), a, acc)
        return self.finish(acc, frames)


class Converter:
    """Everything that depends only on the parameters, computed once (see `converter()`). `dtype` is the real
    precision of the STFT work: float32 in the product, float64 for exactness checks."""

    def __init__(self, p: SpectrogramParams = RIFFUSION_V1, dtype: type = np.float32) -> None:
        self.p = p
        self.mel = MelBank(p)
        self.n_active = self.mel.n_active
        self.full = StftGrid(p, self.n_active, dtype)
        self.grids = {p.sample_rate: self.full}
        self.real, self.complex = self.full.real, self.full.complex
        self.edge = p.win_length // (2 * p.hop_length)  # frames whose analysis window reaches the padding

    def mel_from_linear(self, mag: np.ndarray) -> np.ndarray:
        return self.mel.mel_from_linear(mag)

    def linear_from_mel(self, mel: np.ndarray) -> np.ndarray:
        return self.mel.linear_from_mel(mel)

    def grid(self, rate: int) -> StftGrid:
        if rate not in self.grids:
            self.grids[rate] = StftGrid(self.p.on_grid(rate), self.n_active, self.real)
        return self.grids[rate]

    def stft(self, audio: np.ndarray) -> np.ndarray:
        """torch.stft(center=True, reflect) of a 1-D signal, active bins only: [active, T] complex."""
        return self.full.stft(audio).T

    def istft(self, spec: np.ndarray) -> np.ndarray:
        """torch.istft(center=True, length=None) of [active, T] (bins above are zero): hop·(T − 1) samples."""
        return self.full.istft(np.asarray(spec)[: self.n_active].T)

    def griffin_lim(
        self,
        mag: np.ndarray,
        angles: np.ndarray | None = None,
        seed: int | Sequence[int] = 0,
        check: Callable[[], None] | None = None,
        rate: int = GL_RATE,
    ) -> np.ndarray:
        """torchaudio's `griffinlim` (power 1, momentum, length None) on [active, T] magnitudes. `angles` is the
        initial complex phase estimate (torchaudio draws real and imaginary parts uniform in [0, 1)). The
        iterations run on the `rate` grid with the edge frames at full rate (module doc; `p.sample_rate` runs
        everything at full rate); the output is the full-rate ISTFT."""
        mag = np.ascontiguousarray(np.asarray(mag)[: self.n_active].T, dtype=self.real)  # [T, active]
        frames = mag.shape[0]
        if angles is None:
            rng = np.random.default_rng(seed)
            shape = (self.n_active, frames)
            angles = rng.random(shape, dtype=np.float32) + 1j * rng.random(shape, dtype=np.float32)
        spec = mag * np.asarray(angles)[: self.n_active].T.astype(self.complex)
        # the edge frames are redone from the 3 × edge frames at each end: shorter clips run at full rate
        grid = self.grid(rate) if frames >= 6 * self.edge else self.full
        return _GriffinLim(self, grid, mag, edges=grid is not self.full)(spec, check)


class _GriffinLim:
    """One Griffin–Lim run. Each iteration is one pass over the frames in chunks: STFT of the current signal,
    momentum and magnitude update, inverse FFT and overlap-add into the next signal. The frames are split
    between THREADS workers (numpy and scipy.fft release the GIL), each with its own buffers and partial signal.
    With `edges`, the first and last `edge` frames are first redone at full rate (two more tasks)."""

    def __init__(self, conv: Converter, grid: StftGrid, mag: np.ndarray, edges: bool) -> None:
        self.conv, self.grid, self.mag = conv, grid, mag
        self.frames = frames = mag.shape[0]
        self.edge = conv.edge if edges else 0
        self.near = (
            3 * self.edge
        )  # the frames whose synthesis windows reach the edge frames' analysis windows
        self.prev = np.zeros(mag.shape, dtype=conv.complex)  # the previous iteration's rebuilt spectra
        self.momentum = conv.real.type(conv.p.momentum / (1.0 + conv.p.momentum))
        step = -(-frames // (THREADS * CHUNK)) * CHUNK
        self.ranges = [(a, min(a + step, frames)) for a in range(0, frames, step)]
        self.buffers = [grid.buffers() for _ in self.ranges]
        self.accs = [np.zeros(grid.padded_length(frames), dtype=conv.real) for _ in self.ranges]
        self.scratch = [
            (np.empty((CHUNK, grid.n_active), conv.complex), np.empty((CHUNK, grid.n_active), conv.real))
            for _ in self.ranges
        ]

    def __call__(self, spec: np.ndarray, check: Callable[[], None] | None) -> np.ndarray:
        grid, frames, iters = self.grid, self.frames, self.conv.p.griffin_lim_iters
        signal = np.pad(grid.istft(spec), grid.pad, mode="reflect")
        # `spec` holds each iteration's new spectra at the edges (read by the next one) and all of the last's
        with ThreadPoolExecutor(max_workers=max(2, THREADS), thread_name_prefix="griffin-lim") as pool:
            for i in range(iters):
                if check is not None:
                    check()  # a cancel lands within one iteration
                head = tail = None
                if self.edge:
                    near = spec[: self.near], spec[-self.near :]
                    head, tail = pool.map(self._full_rate, near, (range(self.edge), range(-self.edge, 0)))
                last = i == iters - 1
                jobs = [
                    pool.submit(self._pass, w, signal, spec, i > 0, last, head, tail)
                    for w in range(len(self.ranges))
                ]
                for job in jobs:
                    job.result()
                if not last:
                    acc = self.accs[0] if len(self.accs) == 1 else np.sum(self.accs, axis=0)
                    signal = np.pad(grid.finish(acc, frames), grid.pad, mode="reflect")
        return self.conv.full.istft(spec)

    def _full_rate(self, spec: np.ndarray, keep: range) -> np.ndarray:
        """Frames `keep` of STFT(ISTFT(spec)) at full rate, `spec` being the 3 × edge frames at one end: the
        synthesis windows overlapping the edge frames' analysis windows are 2 × edge + 4 of them, so the short
        ISTFT is exact wherever those frames read it."""
        full = self.conv.full
        padded = np.pad(full.istft(spec), full.pad, mode="reflect")
        start = keep.start % len(spec)
        frame_buf, _ = full.buffers(len(keep))
        return full.spectra(padded, start, start + len(keep), frame_buf)

    def _pass(
        self,
        worker: int,
        signal: np.ndarray,
        spec: np.ndarray,
        momentum: bool,
        last: bool,
        head: np.ndarray | None,
        tail: np.ndarray | None,
    ) -> None:
        grid, frames, mag, prev = self.grid, self.frames, self.mag, self.prev
        frame_buf, spec_buf = self.buffers[worker]
        acc, (update, scale) = self.accs[worker], self.scratch[worker]
        acc[:] = 0
        start, stop = self.ranges[worker]
        tiny = grid.real.type(1e-16)
        for a in range(start, stop, CHUNK):
            b = min(a + CHUNK, stop)
            n = b - a
            rebuilt = grid.spectra(signal, a, b, frame_buf)
            if head is not None and a < len(head):
                rebuilt[: len(head) - a] = head[a:]
            if tail is not None and b > frames - len(tail):
                lo = max(a, frames - len(tail))
                rebuilt[lo - a :] = tail[lo - frames + len(tail) :]
            # torchaudio's update: angles = rebuilt − m/(1 + m)·previous rebuilt, normalised; × magnitude
            u, r = update[:n], scale[:n]
            if momentum:
                np.multiply(prev[a:b], -self.momentum, out=u)
                u += rebuilt
            else:
                u[:] = rebuilt
            prev[a:b] = rebuilt
            np.abs(u, out=r)
            r += tiny
            np.divide(mag[a:b], r, out=r)
            new = spec_buf[:n, : grid.n_active]
            np.multiply(u, r, out=new)
            if last or a < self.near or b > frames - self.near:
                spec[a:b] = new
            if not last:
                grid.overlap_add(grid.segments(spec_buf[:n]), a, acc)


@functools.cache
def converter(p: SpectrogramParams = RIFFUSION_V1, dtype: type = np.float32) -> Converter:
    return Converter(p, dtype)


# ---- images --------------------------------------------------------------------------------------------------
STEREO_TOL = 2.0  # mean difference, in 8-bit levels, below which two channels hold the same picture


def channel_images(image: np.ndarray) -> list[np.ndarray]:
    """The pictures to decode, by riffusion's channel layout: mono writes one picture to R, G and B; stereo writes
    the left channel to G, the right one to B and black (0) to R. So [G, B] when R is black and G and B differ
    (a model that draws stereo), [G] when R is black and they agree, else [R] (riffusion's mono decoding; v1)."""
    data = np.asarray(image)
    if data.ndim == 2:
        return [data]
    r, g, b = (data[..., c].astype(np.float32) for c in range(3))
    if r.mean() > STEREO_TOL or np.abs(g - r).mean() <= STEREO_TOL:
        return [data[..., 0]]
    if np.abs(g - b).mean() <= STEREO_TOL:
        return [data[..., 1]]
    return [data[..., 1], data[..., 2]]


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
