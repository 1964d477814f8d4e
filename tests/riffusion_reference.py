"""An independent reference for the riffusion spectrogram converter, in plain torch, written from torchaudio's
algorithm descriptions (torchaudio has no build for this project's torch): `melscale_fbanks` (HTK, no norm),
`InverseMelScale` (ReLU of `torch.linalg.lstsq(fb.T, mel, driver="gels")`), `griffinlim` (power 1, momentum,
length None) on torch.stft / torch.istft with a periodic Hann window. Test code only."""

from __future__ import annotations

import math

import torch

SR, N_FFT, HOP, WIN, N_MELS, F_MIN, F_MAX = 44100, 17640, 441, 4410, 512, 0.0, 10000.0


def melscale_fbanks(dtype=torch.float64) -> torch.Tensor:
    n_freqs = N_FFT // 2 + 1
    all_freqs = torch.linspace(0, SR // 2, n_freqs, dtype=dtype)
    m_min = 2595.0 * math.log10(1.0 + F_MIN / 700.0)
    m_max = 2595.0 * math.log10(1.0 + F_MAX / 700.0)
    m_pts = torch.linspace(m_min, m_max, N_MELS + 2, dtype=dtype)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1, dtype=dtype), torch.min(down, up))  # [n_freqs, n_mels]


def inverse_mel(mel: torch.Tensor) -> torch.Tensor:
    fb = melscale_fbanks(mel.dtype)
    return torch.relu(torch.linalg.lstsq(fb.transpose(-1, -2)[None], mel[None], driver="gels").solution)[0]


def mel_scale(spec: torch.Tensor) -> torch.Tensor:
    return (spec.transpose(-1, -2) @ melscale_fbanks(spec.dtype)).transpose(-1, -2)


def griffin_lim(
    spec: torch.Tensor, angles: torch.Tensor, n_iter: int = 32, momentum: float = 0.99
) -> torch.Tensor:
    window = torch.hann_window(WIN, dtype=spec.dtype)
    kw = dict(n_fft=N_FFT, hop_length=HOP, win_length=WIN, window=window)
    tprev = torch.tensor(0.0, dtype=spec.dtype)
    for _ in range(n_iter):
        inverse = torch.istft(spec * angles, **kw)
        rebuilt = torch.stft(
            inverse,
            center=True,
            pad_mode="reflect",
            normalized=False,
            onesided=True,
            return_complex=True,
            **kw,
        )
        angles = rebuilt
        if momentum:
            angles = angles - tprev.mul_(momentum / (1 + momentum))
        angles = angles.div(angles.abs().add(1e-16))
        tprev = rebuilt
    return torch.istft(spec * angles, **kw)


def mel_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    window = torch.hann_window(WIN, dtype=audio.dtype)
    spec = torch.stft(audio, N_FFT, HOP, WIN, window, center=True, pad_mode="reflect", return_complex=True)
    return mel_scale(spec.abs())
