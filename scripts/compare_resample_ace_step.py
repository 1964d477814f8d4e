"""44.1 → 48 kHz: lofi's `scipy.signal.resample_poly(x, 160, 147)` against upstream ACE-Step's
`torchaudio.transforms.Resample(44100, 48000)` (defaults: sinc_interp_hann, lowpass_filter_width 6, rolloff 0.99),
on pure tones. torchaudio is not a dependency, so its polyphase kernel is rebuilt here in numpy from the documented
method (a Hann-windowed sinc, cut-off rolloff·min(rates)/2, `lowpass_filter_width` zero crossings).

    python scripts/compare_resample_ace_step.py
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import resample_poly

ORIG, NEW = 147, 160  # 44100 : 48000 reduced


def hann_sinc_kernel(width_zc: int = 6, rolloff: float = 0.99) -> tuple[np.ndarray, int]:
    base = min(ORIG, NEW) * rolloff
    pad = math.ceil(width_zc * ORIG / base)
    idx = np.arange(-pad, pad + ORIG, dtype=np.float64) / ORIG
    t = (np.arange(0, -NEW, -1, dtype=np.float64)[:, None] / NEW + idx[None]) * base
    t = np.clip(t, -width_zc, width_zc)
    window = np.cos(t * math.pi / width_zc / 2) ** 2
    t = t * math.pi
    sinc = np.where(t == 0, 1.0, np.sin(t) / np.where(t == 0, 1.0, t))
    return sinc * window * base / ORIG, pad


def torchaudio_like(x: np.ndarray) -> np.ndarray:
    kernel, pad = hann_sinc_kernel()
    xp = np.pad(x, (pad, pad + ORIG))
    frames = np.lib.stride_tricks.sliding_window_view(xp, kernel.shape[1])[::ORIG]
    return (frames @ kernel.T).reshape(-1)[: math.ceil(NEW * len(x) / ORIG)]


def main() -> None:
    sr = 44100
    t = np.arange(2 * sr) / sr
    print("| tone (Hz) | resample_poly level | torchaudio-like level | difference |")
    print("|---|---|---|---|")
    for f in (100, 1000, 5000, 10000, 16000, 18000, 20000, 21000, 22000):
        x = np.sin(2 * np.pi * f * t)
        a, b = resample_poly(x, NEW, ORIG), torchaudio_like(x)
        core = slice(2000, min(len(a), len(b)) - 2000)  # away from the edges
        la, lb = (float(np.sqrt(2 * np.mean(y[core] ** 2))) for y in (a, b))
        print(f"| {f} | {la:.4f} | {lb:.4f} | {100 * (la - lb) / lb:+.1f} % |")


if __name__ == "__main__":
    main()
