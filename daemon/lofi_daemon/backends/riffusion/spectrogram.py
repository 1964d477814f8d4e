"""Riffusion v1 spectrogram images ⇄ audio, in numpy, scipy and ducc0's FFTs (no torch at run time).

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
is computed here exactly, from the 512 × 512 Gram matrix (tridiagonal; its banded Cholesky factor is computed once
and cached) and the sparse filter bank, then
ReLU: the same answer as current torchaudio, to rounding. Riffusion itself ran the older torchaudio, which instead
ran 200 SGD steps from a random start; that leaves part of the random start in the null space of the filter bank
(a faint broadband floor), so outputs differ from the hobby app's in that floor, not in the mel content.

Speed: only the bins below f_max carry magnitude (the filter bank is zero above 10 kHz, bin 4000 of 8821), so
Griffin–Lim works on those bins only, and it iterates on a coarser time grid. Every frame of the inverse STFT is a
periodic signal made of those bins alone (< 10 kHz), and the window, its place and the bins are the same functions
of time at any sample rate; so sampling at GL_RATE = 22 kHz instead of 44.1 kHz (hop 220, window 2200, n_fft 8800:
the same 10 ms, 100 ms, 400 ms and 2.5 Hz bins) yields the same signal samples on a coarser grid, and the forward
STFT's sums at 22 kHz equal those at 44.1 kHz but for aliasing of what lies above 11 kHz: the tails of the
windowed spectrum past the 10 kHz band, ~1e-8 relative per iteration (measured; float32 rounding is 6e-8). A
20 kHz grid (n_fft 8000) would put Nyquist on the band's edge: those tails alias into the top bins, ~1e-3 per frame
and 2e-3 on the result, ~500× float32 rounding, so the grid stays above 2 × 10 kHz with a margin. The
exception is the first and last 5 frames, whose windows reach the reflected padding: its kink at each end is not
band-limited and the end of torch's ISTFT falls one full-rate sample short of the last frame, so those frames are
recomputed at full rate each iteration from the ISTFT of the 15 frames at that end. The final ISTFT is at full
rate. This halves every FFT and keeps the output equal to the full-rate iteration within its float32 rounding
(tests/test_riffusion_spectrogram.py measures both and the spectral convergence). Frames go through in chunks of
CHUNK whose buffers are reused and stay in the CPU's cache, split between THREADS workers, which also build the
initial signal, redo the edge frames and run the final full-rate ISTFT in their last pass, so what runs on one
thread between passes is a sum and a reflection; overlap-add is by whole hops.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from fractions import Fraction

import ducc0
import numpy as np
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


# The FFTs are ducc0's (by pocketfft's author; scipy.fft is pocketfft): 1.5–1.8× faster on these sizes here, and
# it writes into the caller's buffers (docs/benchmarks.md). One call each, per row of a 2-D block.
def rfft(frames: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Real FFT of each row into `out` [rows, n // 2 + 1]."""
    return ducc0.fft.r2c(frames, axes=(1,), out=out)


def irfft(spectra: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Inverse real FFT of each row to n samples (divided by n, as numpy's) into `out` [rows, n]."""
    return ducc0.fft.c2r(spectra, axes=(1,), lastsize=n, forward=False, inorm=2, out=out)


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
    """The filter bank and its minimum-norm inverse, computed once (the Cholesky factor of the Gram matrix, which
    is tridiagonal: every frequency lies in at most two neighbouring triangles)."""

    def __init__(self, p: SpectrogramParams) -> None:
        fb = mel_filterbank(p)
        nz = np.flatnonzero(fb.any(axis=1))
        # bins above the last one any filter touches never carry magnitude
        self.n_active = int(nz[-1]) + 1
        self.fb = fb[: self.n_active].astype(np.float32)  # [active, n_mels]
        self.fb_sparse = scipy.sparse.csr_matrix(fb[: self.n_active])
        gram = fb.T @ fb  # [n_mels, n_mels], positive definite when fb.T has full row rank
        if np.any(np.triu(gram, 2)):
            raise ValueError("mel triangles overlap beyond their neighbours")
        # upper banded storage: the superdiagonal (first entry unused), then the diagonal
        self.gram_cho = scipy.linalg.cholesky_banded(np.stack([np.r_[0.0, np.diag(gram, 1)], np.diag(gram)]))

    def mel_from_linear(self, mag: np.ndarray) -> np.ndarray:
        """[..., n_freqs or active, T] magnitudes → [..., n_mels, T]."""
        return np.einsum("fm,...ft->...mt", self.fb, mag[..., : self.n_active, :].astype(np.float32))

    def linear_from_mel(self, mel: np.ndarray) -> np.ndarray:
        """Minimum-norm least-squares inverse of the filter bank, clamped at 0: [n_mels, T] → [active, T]."""
        coeffs = scipy.linalg.cho_solve_banded((self.gram_cho, False), mel.astype(np.float64))
        return np.maximum(self.fb_sparse @ coeffs, 0.0)


@dataclass
class Work:
    """One thread's buffers for a chunk of frames on one grid (reused: no allocation per chunk)."""

    frames: np.ndarray  # [n, n_fft] real: windowed frames in the middle, the zero padding around stays zero
    spectra: np.ndarray  # [n, n_fft // 2 + 1] complex: their FFT
    synth: np.ndarray  # [n, n_fft // 2 + 1] complex: spectra to invert; the bins from n_active up stay zero
    segments: np.ndarray  # [n, n_fft] real: the inverse FFT of synth


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

    def work(self, n: int = CHUNK) -> Work:
        bins = self.n_fft // 2 + 1
        return Work(
            np.zeros((n, self.n_fft), dtype=self.real),
            np.empty((n, bins), dtype=self.complex),
            np.zeros((n, bins), dtype=self.complex),
            np.empty((n, self.n_fft), dtype=self.real),
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
    def spectra(self, padded: np.ndarray, start: int, stop: int, work: Work) -> np.ndarray:
        """Frames [start, stop) of the STFT of a centre-padded signal: [stop − start, n_active], a view of
        work.spectra."""
        n = stop - start
        first = start * self.hop + self.offset
        span = padded[first : first + (n - 1) * self.hop + self.win]
        view = np.lib.stride_tricks.sliding_window_view(span, self.win)[:: self.hop]
        np.multiply(view, self.window, out=work.frames[:n, self.offset : self.offset + self.win])
        return rfft(work.frames[:n], work.spectra[:n])[:, : self.n_active]

    def segments(self, work: Work, n: int) -> np.ndarray:
        """Windowed inverse FFT of work.synth[:n]: the window's support, [n, win] (a view of work.segments)."""
        seg = irfft(work.synth[:n], self.n_fft, work.segments[:n])[:, self.offset : self.offset + self.win]
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

    def repad(self, accs: Sequence[np.ndarray], frames: int, padded: np.ndarray) -> None:
        """The istft of the summed partial overlap-adds `accs`, reflect-padded into `padded` (the next STFT's
        input) in place: what np.pad(finish(sum(accs)), pad, "reflect") returns, without temporaries."""
        pad, length = self.pad, self.length(frames)
        body = padded[pad : pad + length]
        np.copyto(body, accs[0][pad : pad + length])
        for acc in accs[1:]:
            body += acc[pad : pad + length]
        body *= self.inv_envelope(frames)
        if length > pad:
            padded[:pad] = body[pad:0:-1]
            padded[pad + length :] = body[length - 2 : length - 2 - pad : -1]
        else:  # a signal shorter than the padding reflects more than once
            padded[:] = np.pad(body.copy(), pad, mode="reflect")

    # ---- whole signals ------------------------------------------------------------------------------------
    def stft(self, audio: np.ndarray) -> np.ndarray:
        """torch.stft(center=True, reflect) of a 1-D signal: [T, n_active] complex."""
        padded = np.pad(np.asarray(audio, dtype=self.real), self.pad, mode="reflect")
        frames = 1 + (padded.shape[0] - self.n_fft) // self.hop
        work = self.work(min(CHUNK, frames))
        out = np.empty((frames, self.n_active), dtype=self.complex)
        for a in range(0, frames, CHUNK):
            b = min(a + CHUNK, frames)
            out[a:b] = self.spectra(padded, a, b, work)
        return out

    def istft(self, spec: np.ndarray, work: Work | None = None) -> np.ndarray:
        """torch.istft(center=True, length=None) of [T, n_active]: hop·(T − 1) samples."""
        frames = spec.shape[0]
        work = work or self.work(min(CHUNK, frames))
        acc = np.zeros(self.padded_length(frames), dtype=self.real)
        for a in range(0, frames, CHUNK):
            n = min(CHUNK, frames - a)
            work.synth[:n, : self.n_active] = spec[a : a + n]
            self.overlap_add(self.segments(work, n), a, acc)
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
        rate: int | None = None,
    ) -> np.ndarray:
        """torchaudio's `griffinlim` (power 1, momentum, length None) on [active, T] magnitudes. `angles` is the
        initial complex phase estimate (torchaudio draws real and imaginary parts uniform in [0, 1)). The
        iterations run on the `rate` grid (GL_RATE by default) with the edge frames at full rate (module doc;
        `p.sample_rate` runs everything at full rate); the output is the full-rate ISTFT."""
        mag = np.asarray(mag)[: self.n_active]
        frames = mag.shape[1]
        if angles is None:
            rng = np.random.default_rng(seed)
            shape = (self.n_active, frames)
            angles = rng.random(shape, dtype=np.float32) + 1j * rng.random(shape, dtype=np.float32)
        # the edge frames are redone from the 3 × edge frames at each end: shorter clips run at full rate
        grid = self.grid(GL_RATE if rate is None else rate) if frames >= 6 * self.edge else self.full
        # frames-major views (the workers copy their frames into contiguous rows)
        return _GriffinLim(self, grid, mag.T)(np.asarray(angles)[: self.n_active].T, check)


class _GriffinLim:
    """One Griffin–Lim run. The frames are split between THREADS workers (numpy and the FFTs release the GIL),
    each with its own buffers and partial overlap-add, and go through in chunks. A first pass builds the initial
    signal from magnitude × initial phase; then each iteration is one pass: STFT of the current signal, momentum
    and magnitude update, inverse FFT and overlap-add into the next signal; the last iteration overlap-adds at
    full rate, into the output. On a coarser grid, the worker holding the first (last) `edge` frames first
    redoes them at full rate."""

    def __init__(self, conv: Converter, grid: StftGrid, mag: np.ndarray) -> None:
        if conv.p.griffin_lim_iters < 1:
            raise ValueError("Griffin–Lim needs at least one iteration")
        self.conv, self.grid, self.given = conv, grid, mag  # [T, active], any layout and precision
        self.frames = frames = mag.shape[0]
        self.mag = np.empty(mag.shape, dtype=conv.real)  # contiguous copy, filled by the first pass
        self.edge = conv.edge if grid is not conv.full else 0
        # the frames whose synthesis windows reach the edge frames' analysis windows
        self.near = 3 * self.edge
        self.prev = np.empty(mag.shape, dtype=conv.complex)  # the previous iteration's rebuilt spectra
        # each pass's new spectra of the `near` frames at each end, read by the next one (double-buffered: the
        # pass reading one set writes the other)
        self.ends = np.zeros((2, 2, self.near, conv.n_active), dtype=conv.complex)
        self.momentum = conv.real.type(conv.p.momentum / (1.0 + conv.p.momentum))
        step = -(-frames // (THREADS * CHUNK)) * CHUNK
        self.ranges = [(a, min(a + step, frames)) for a in range(0, frames, step)]
        self.work = [grid.work() for _ in self.ranges]
        self.full_work = self.work if grid is conv.full else [conv.full.work() for _ in self.ranges]
        self.accs = [np.empty(grid.padded_length(frames), dtype=conv.real) for _ in self.ranges]
        self.full_accs = [np.empty(conv.full.padded_length(frames), dtype=conv.real) for _ in self.ranges]
        self.signal = np.empty(grid.padded_length(frames), dtype=conv.real)  # centre-padded current signal
        self.scratch = [
            (np.empty((CHUNK, grid.n_active), conv.complex), np.empty((CHUNK, grid.n_active), conv.real))
            for _ in self.ranges
        ]

    def __call__(self, angles: np.ndarray, check: Callable[[], None] | None) -> np.ndarray:
        grid, frames, iters = self.grid, self.frames, self.conv.p.griffin_lim_iters
        with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="griffin-lim") as pool:

            def run(task: Callable[..., None], *args: object) -> None:
                for job in [pool.submit(task, w, *args) for w in range(len(self.ranges))]:
                    job.result()

            run(self._start, angles)
            for i in range(iters):
                if check is not None:
                    check()  # a cancel lands within one iteration
                grid.repad(self.accs, frames, self.signal)
                run(self._pass, i)
        return self.conv.full.finish(np.sum(self.full_accs, axis=0), frames)

    def _start(self, worker: int, angles: np.ndarray) -> None:
        """The worker's frames of magnitude × initial phase, overlap-added into its part of the first signal."""
        start, stop = self.ranges[worker]
        work, acc = self.work[worker], self.accs[worker]
        acc[:] = 0
        for a in range(start, stop, CHUNK):
            b = min(a + CHUNK, stop)
            self.mag[a:b] = self.given[a:b]
            new = work.synth[: b - a, : self.grid.n_active]
            np.multiply(self.mag[a:b], angles[a:b], out=new)
            self._keep_ends(new, a, b, self.ends[0])
            self.grid.overlap_add(self.grid.segments(work, b - a), a, acc)

    def _keep_ends(self, new: np.ndarray, a: int, b: int, ends: np.ndarray) -> None:
        """Store what of frames [a, b) lies among the `near` frames at either end (for the full-rate edges)."""
        tail = self.frames - self.near
        if a < self.near:
            ends[0, a : min(b, self.near)] = new[: min(b, self.near) - a]
        if b > tail:
            ends[1, max(a, tail) - tail : b - tail] = new[max(a, tail) - a :]

    def _full_rate(self, spec: np.ndarray, keep: range, work: Work) -> np.ndarray:
        """Frames `keep` of STFT(ISTFT(spec)) at full rate, `spec` being the 3 × edge frames at one end: the
        synthesis windows overlapping the edge frames' analysis windows are 2 × edge + 4 of them, so the short
        ISTFT is exact wherever those frames read it."""
        full = self.conv.full
        padded = np.pad(full.istft(spec, work), full.pad, mode="reflect")
        start = keep.start % len(spec)
        return full.spectra(padded, start, start + len(keep), work).copy()

    def _pass(self, worker: int, iteration: int) -> None:
        grid, frames, mag, prev, near = self.grid, self.frames, self.mag, self.prev, self.near
        work, full_work = self.work[worker], self.full_work[worker]
        (update, scale), (start, stop) = self.scratch[worker], self.ranges[worker]
        ends, new_ends = self.ends[iteration % 2], self.ends[(iteration + 1) % 2]
        # a worker whose frames include edge frames redoes them (two workers do when the frames at an end are
        # split between them, which only short clips' ranges can do)
        head = tail = None
        if near and start < self.edge:
            head = self._full_rate(ends[0], range(self.edge), full_work)
        if near and stop > frames - self.edge:
            tail = self._full_rate(ends[1], range(-self.edge, 0), full_work)
        last = iteration == self.conv.p.griffin_lim_iters - 1
        out_grid, out_work = (self.conv.full, full_work) if last else (grid, work)
        acc = self.full_accs[worker] if last else self.accs[worker]
        acc[:] = 0
        tiny = grid.real.type(1e-16)
        for a in range(start, stop, CHUNK):
            b = min(a + CHUNK, stop)
            n = b - a
            rebuilt = grid.spectra(self.signal, a, b, work)
            if head is not None and a < len(head):
                hi = min(b, len(head))
                rebuilt[: hi - a] = head[a:hi]
            if tail is not None and b > frames - len(tail):
                lo, first = max(a, frames - len(tail)), frames - len(tail)
                rebuilt[lo - a :] = tail[lo - first : b - first]
            # torchaudio's update: angles = rebuilt − m/(1 + m)·previous rebuilt, normalised; × magnitude
            u, r = update[:n], scale[:n]
            if iteration > 0:
                np.multiply(prev[a:b], -self.momentum, out=u)
                u += rebuilt
            else:
                u[:] = rebuilt
            prev[a:b] = rebuilt
            np.abs(u, out=r)
            r += tiny
            np.divide(mag[a:b], r, out=r)
            new = out_work.synth[:n, : grid.n_active]
            np.multiply(u, r, out=new)
            if near and not last:
                self._keep_ends(new, a, b, new_ends)
            out_grid.overlap_add(out_grid.segments(out_work, n), a, acc)


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
