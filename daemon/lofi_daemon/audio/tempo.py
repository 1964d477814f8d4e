"""Tempo: estimate it (onset-strength autocorrelation) and change it without changing pitch (WSOLA), in numpy.

Estimate. The onset strength is the spectral flux of log-magnitude spectra (how much louder each frame got than
the last, summed over bins; ~11 ms frames); its autocorrelation peaks at the beat period and its multiples. The
lags of 40–240 BPM are weighted by a log-normal prior around `prior_bpm` (one octave wide, as librosa does
around 120 BPM) to find the strongest peak; a beat at period p peaks at 2p and 4p too, so among the half,
double… of that peak whose own peak is nearly as high, the one nearest the prior is taken; the chosen period
is then refined from the peaks at two, three and four beats, where one autocorrelation lag is a
smaller fraction of the lag. `confidence` is the chosen peak's height relative to lag 0.

Stretch. WSOLA: output frames of ~46 ms at a fixed hop of half a frame, Hann-windowed and overlap-added (the
windows sum to one); each is read from the input near its nominal position (output position × rate), shifted
by up to a quarter frame to where it best continues the previous frame's natural continuation (largest
cross-correlation), so waveforms join in phase and pitch is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_BPM, MAX_BPM = 40.0, 240.0
FRAME_SEC = 0.023  # onset envelope hop
PRIOR_OCTAVES = 1.0  # std of the log2-tempo prior
OCTAVE_PEAK = 0.5  # half or double tempo counts as a reading when its peak is at least this high


@dataclass(frozen=True)
class Tempo:
    bpm: float
    confidence: float  # 0…1


def _mono(x: np.ndarray) -> np.ndarray:
    return np.asarray(x if x.ndim == 1 else x.mean(axis=1), dtype=np.float64)


def onset_strength(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """(spectral-flux envelope, its frame rate in Hz) of 1-D or [frames, channels] audio."""
    y = _mono(x)
    hop = max(1, int(round(FRAME_SEC * sample_rate / 2)))  # frames twice as long as the hop
    n_fft = 1 << (2 * hop - 1).bit_length()
    if len(y) < n_fft + hop:
        return np.zeros(0), sample_rate / hop
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[::hop]
    mag = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1))
    logmag = np.log1p(1000.0 * mag / max(float(mag.max()), 1e-12))
    flux = np.maximum(np.diff(logmag, axis=0), 0.0).sum(axis=1)
    return flux - flux.mean(), sample_rate / hop


def _peak(ac: np.ndarray, lag: float, width: float) -> float:
    """The autocorrelation's peak nearest `lag` (within ±width), to a fraction of a lag (parabola)."""
    lo, hi = max(1, int(np.floor(lag - width))), min(len(ac) - 2, int(np.ceil(lag + width)))
    if lo > hi:
        return lag
    i = lo + int(np.argmax(ac[lo : hi + 1]))
    a, b, c = ac[i - 1], ac[i], ac[i + 1]
    denom = a - 2 * b + c
    return i + (0.5 * (a - c) / denom if denom < 0 else 0.0)


def estimate(x: np.ndarray, sample_rate: int, prior_bpm: float = 120.0) -> Tempo:
    """The tempo of `x` (0 BPM, confidence 0 when there is too little audio to tell)."""
    env, rate = onset_strength(x, sample_rate)
    max_lag = int(np.ceil(rate * 60.0 / MIN_BPM * 4))  # four beats of the slowest tempo, for the refinement
    if len(env) < 2 * int(rate * 60.0 / MIN_BPM) or not np.any(env):
        return Tempo(0.0, 0.0)
    n = 1 << (2 * len(env) - 1).bit_length()
    spec = np.fft.rfft(env, n)
    ac = np.fft.irfft(spec * np.conj(spec), n)[: min(max_lag + 2, len(env))]
    ac = ac / (np.arange(len(env), len(env) - len(ac), -1))  # unbiased: every lag has fewer products
    if ac[0] <= 0:
        return Tempo(0.0, 0.0)
    lags = np.arange(len(ac), dtype=np.float64)
    lo, hi = int(np.floor(rate * 60.0 / MAX_BPM)), int(np.ceil(rate * 60.0 / MIN_BPM))
    hi = min(hi, len(ac) - 2)
    cand = lags[lo : hi + 1]
    weight = np.exp(-0.5 * (np.log2(60.0 * rate / cand / prior_bpm) / PRIOR_OCTAVES) ** 2)
    strongest = int(cand[np.argmax(np.maximum(ac[lo : hi + 1], 0.0) * weight)])
    # a beat at period p also peaks at 2p, 4p…: of the octaves that peak nearly as high, the one nearest the prior
    octaves = []
    for k in (-2, -1, 0, 1, 2):
        lag = strongest * 2.0**k
        if lo <= lag <= hi:
            peak = _peak(ac, lag, max(1.0, 0.05 * lag))
            if ac[int(round(peak))] >= OCTAVE_PEAK * ac[strongest]:
                octaves.append(peak)
    period = min(octaves, key=lambda p: abs(np.log2(60.0 * rate / p / prior_bpm)))
    best = int(round(period))
    confidence = float(max(0.0, ac[best] / ac[0]))
    # refine from the peaks at 2–4 beats where they fit (each lag there is 1/m of a beat's lag)
    estimates = [period]
    for m in (2, 3, 4):
        if m * period + 2 < len(ac):
            estimates.append(_peak(ac, m * period, 0.5 * m) / m)
    return Tempo(float(60.0 * rate / np.mean(estimates[-2:])), min(1.0, confidence))


def stretch(x: np.ndarray, sample_rate: int, rate: float) -> np.ndarray:
    """`x` played `rate` times faster at the same pitch (rate 1.05: 5 % faster and shorter), float32, same
    channel layout; len(out) == round(len(x) / rate)."""
    two_d = x.ndim == 2
    data = np.asarray(x if two_d else x[:, None], dtype=np.float64)
    want = int(round(len(data) / rate))
    if abs(rate - 1.0) < 1e-9:
        return np.asarray(x, dtype=np.float32).copy()
    N = 1 << int(round(np.log2(0.046 * sample_rate)))  # ~46 ms frames
    hop = N // 2
    tol = N // 4
    window = np.hanning(N + 1)[:N]  # periodic Hann: sums to one at half-frame overlap
    front = N + tol  # room for the first frame, which starts half a frame before the output
    frames = int(np.ceil(want / hop)) + 2
    back = N + tol + int(np.ceil(frames * hop * rate))
    src = np.pad(data, ((front, back), (0, 0)))
    mono = _mono(src)
    out = np.zeros((frames * hop + N, data.shape[1]))  # out[i] is output sample i - hop
    prev = 0
    for k in range(frames):
        nominal = front + int(round((k - 1) * hop * rate))
        if k == 0:
            pos = nominal
        else:
            # the previous frame's natural continuation, matched within ±tol of the nominal position
            target = mono[prev + hop : prev + hop + N]
            lo = nominal - tol
            region = mono[lo : lo + N + 2 * tol]
            size = 1 << (len(region) - 1).bit_length()
            xc = np.fft.irfft(np.fft.rfft(region, size) * np.conj(np.fft.rfft(target, size)), size)
            pos = lo + int(np.argmax(xc[: 2 * tol + 1]))
        out[k * hop : k * hop + N] += src[pos : pos + N] * window[:, None]
        prev = pos
    result = out[hop : hop + want].astype(np.float32)
    return result if two_d else result[:, 0]
