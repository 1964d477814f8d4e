"""Seamless loops: where a track's end can flow back into its start, and how well it does.

A loop of length L is cut from audio longer than L: its head x[0:F] is crossfaded with x[L:L+F], the audio that
really followed x[L-1]. Played end to start, x[L-1] then runs into x[L] (fully faded in at the head's first
sample), so the wrap itself is continuous; what can be heard is the crossfade, which is inaudible when x[L:L+F]
and x[0:F] are alike. The seam score measures that likeness, 1 for identical audio:
- spectral continuity: per STFT frame, 1 − the relative L1 distance of the two (square-root compressed)
  magnitude spectra (same sounds at the same times), at the worst frame;
- phase continuity: the normalised correlation of the two waveforms at zero lag (clipped at 0): aligned waves
  add up in the crossfade, misaligned ones partly cancel (comb filtering) or, at a hard cut, click.
Candidates are whole bars when the bar length is known (so the beat runs on across the wrap): the whole number
nearest the wanted length, or one bar more or less when that scores clearly better; each refined by a few
percent of a bar, coarsely by the combined score, then to the sample by the correlation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROSSFADE_SEC = 1.0
SEARCH_SEC = 0.5  # without a bar length: candidates within this of the wanted length
UNKNOWN_BAR_SEC = 2.5  # generated past the wanted length when the bar is not known yet: half a bar at 48 BPM
BAR_SLACK = 0.05  # with one: each whole-bar candidate moved by up to this fraction of a bar
CLEARLY_BETTER = 0.05  # a loop a bar longer or shorter than the nearest must score this much higher
COARSE_SEC = 0.01  # spectral comparison every 10 ms of lag; the phase refined to the sample around the best
N_FFT = 1024


@dataclass(frozen=True)
class Seam:
    score: float  # (spectral + phase) / 2, 0…1
    spectral: float
    phase: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in vars(self).items()}


@dataclass(frozen=True)
class Loop:
    length: int  # samples
    crossfade: int  # samples
    seam: Seam
    bars: int | None  # whole bars in the loop, when the bar length was given

    def to_dict(self, sample_rate: int) -> dict[str, object]:
        return {
            "length_sec": round(self.length / sample_rate, 4),
            "crossfade_sec": round(self.crossfade / sample_rate, 4),
            "bars": self.bars,
            "seam": self.seam.to_dict(),
        }


def mono(x: np.ndarray) -> np.ndarray:
    return np.asarray(x if x.ndim == 1 else x.mean(axis=1), dtype=np.float64)


def _spectra(x: np.ndarray) -> np.ndarray:
    """Square-root magnitude spectra [frames, bins] of 1-D audio (Hann, hop N_FFT/2): compressed like loudness,
    so quiet bins count too."""
    hop = N_FFT // 2
    count = max(1, 1 + (len(x) - N_FFT) // hop)
    frames = np.lib.stride_tricks.sliding_window_view(np.pad(x, (0, max(0, N_FFT - len(x)))), N_FFT)[::hop]
    return np.sqrt(np.abs(np.fft.rfft(frames[:count] * np.hanning(N_FFT), axis=1)))


def spectral_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """1 − the relative L1 distance of two equally long 1-D signals' compressed spectra, per frame, at the
    worst frame (a seam is as audible as its worst moment: one frame with a click in it spoils it), 0…1."""
    sa, sb = _spectra(a), _spectra(b)
    total = sa.sum(axis=1) + sb.sum(axis=1)
    dist = np.abs(sa - sb).sum(axis=1) / np.maximum(total, 1e-12)
    return float(1.0 - dist.max())


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation at zero lag of two equally long 1-D signals, -1…1 (0 when one is silent)."""
    den = np.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / den if den > 1e-12 else 0.0


def seam_score(follows: np.ndarray, head: np.ndarray) -> Seam:
    """How alike `follows` (the audio that really came after the loop's end) and `head` (what the loop plays
    there instead) are."""
    a, b = mono(follows), mono(head)
    spectral = spectral_similarity(a, b)
    phase = max(0.0, correlation(a, b))
    return Seam((spectral + phase) / 2, spectral, phase)


def _correlations(x: np.ndarray, head: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """correlation(x[s:s+F], head) for every start s in [lo, hi], by FFT."""
    F = len(head)
    seg = x[lo : hi + F]
    n = 1 << (len(seg) - 1).bit_length()  # ≥ len(seg): no circular wrap for the lags kept
    dots = np.fft.irfft(np.fft.rfft(seg, n) * np.conj(np.fft.rfft(head, n)), n)[: hi - lo + 1]
    energy = np.concatenate([[0.0], np.cumsum(seg * seg)])
    win = energy[F:] - energy[:-F]
    den = np.sqrt(np.maximum(win, 0.0) * float(head @ head))
    return np.where(den > 1e-12, dots / np.maximum(den, 1e-12), 0.0)


def _candidates(
    length: int, available: int, sample_rate: int, bar: float | None
) -> list[tuple[int, int, int | None]]:
    """(centre, slack, bars) of each loop length to try, all ending before `available`: whole bars when the
    bar is known and one fits, else lengths near `length`."""
    free = int(SEARCH_SEC * sample_rate)
    if bar is None:
        return [(min(length, available - free), free, None)]
    out: list[tuple[int, int, int | None]] = []
    n0 = max(1, round(length / bar))
    slack = max(1, int(BAR_SLACK * bar))
    for n in (n0 - 1, n0, n0 + 1):
        centre = int(round(n * bar))
        if n >= 1 and centre - slack > 0 and centre + slack <= available:
            out.append((centre, slack, n))
    return out or [(min(length, available - free), free, None)]


def find_loop(
    samples: np.ndarray,
    sample_rate: int,
    length: int,
    bar: float | None = None,
    crossfade: int | None = None,
) -> Loop:
    """The best loop near `length` samples (whole bars of `bar` samples when given) in `samples`, which must
    reach past it by the crossfade plus the search slack (`extra_needed`)."""
    x = mono(samples)
    F = crossfade if crossfade is not None else min(int(CROSSFADE_SEC * sample_rate), length // 8)
    head = x[:F]
    available = len(x) - F
    best: Loop | None = None
    coarse = max(1, int(COARSE_SEC * sample_rate))
    candidates = sorted(_candidates(length, available, sample_rate, bar), key=lambda c: abs(c[0] - length))
    for centre, slack, bars in candidates:  # the nearest length first: a farther one must be clearly better
        lo, hi = max(F, centre - slack), min(available, centre + slack)
        if lo > hi:
            continue
        ncc = _correlations(x, head, lo, hi)
        for a in range(0, len(ncc), coarse):
            # the best phase within one coarse step, and the spectra there
            start = lo + a + int(np.argmax(ncc[a : a + coarse]))
            phase = max(0.0, float(ncc[start - lo]))
            spectral = spectral_similarity(x[start : start + F], head)
            seam = Seam((spectral + phase) / 2, spectral, phase)
            if best is None or seam.score > best.seam.score + (CLEARLY_BETTER if bars != best.bars else 0.0):
                best = Loop(start, F, seam, bars)
    if best is None:
        raise ValueError(f"no loop point: {len(x)} samples do not reach past {length} by {F}")
    return best


def extra_needed(sample_rate: int, bar: float | None, length: int) -> int:
    """Samples to generate past `length` so that every candidate of `find_loop` has its continuation."""
    F = min(int(CROSSFADE_SEC * sample_rate), length // 8)
    if bar is None:  # the bar may be estimated afterwards: room for the nearest whole number of any bar
        return F + int(UNKNOWN_BAR_SEC * sample_rate)
    n0 = max(1, round(length / bar))
    return max(0, int(round((n0 + 1) * bar)) - length) + int(BAR_SLACK * bar) + F + 1


def crossfade_gains(n: int, r: float) -> tuple[np.ndarray, np.ndarray]:
    """(fade_in, fade_out) over n samples keeping the power constant for signals of correlation r (clipped to
    0…1): linear fades for identical signals, equal-power ones for unrelated signals."""
    t = (np.arange(n) + 0.5) / n
    r = min(1.0, max(0.0, r))
    norm = np.sqrt(t * t + (1 - t) ** 2 + 2 * r * t * (1 - t))
    return t / norm, (1 - t) / norm


def make_loop(samples: np.ndarray, loop: Loop) -> np.ndarray:
    """The loop's audio: samples[:L] with its head crossfaded from what followed samples[L-1]."""
    L, F = loop.length, loop.crossfade
    out = np.array(samples[:L], dtype=np.float32, copy=True)
    fade_in, fade_out = crossfade_gains(F, loop.seam.phase)
    if out.ndim == 2:
        fade_in, fade_out = fade_in[:, None], fade_out[:, None]
    out[:F] = samples[:F] * fade_in + samples[L : L + F] * fade_out
    return out
