"""Bring a track to the device's rate and channel count (cached files stay at their native rate)."""

from __future__ import annotations

from math import gcd

import numpy as np
from scipy.signal import resample_poly


def to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """Mono is duplicated to every channel; extra channels are dropped."""
    x = samples if samples.ndim == 2 else samples[:, None]
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return np.repeat(x, channels, axis=1)
    if x.shape[1] > channels:
        return x[:, :channels]
    return np.concatenate([x, np.repeat(x[:, -1:], channels - x.shape[1], axis=1)], axis=1)


def resample(samples: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Polyphase resampling along the frame axis (scipy), float32 out."""
    if src_rate == dst_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    g = gcd(int(src_rate), int(dst_rate))
    y = resample_poly(samples, int(dst_rate) // g, int(src_rate) // g, axis=0)
    return np.ascontiguousarray(y, dtype=np.float32)


def to_device(samples: np.ndarray, src_rate: int, dst_rate: int, channels: int = 2) -> np.ndarray:
    # resample before duplicating channels: half the work for mono tracks
    x = samples if samples.ndim == 2 else samples[:, None]
    return np.ascontiguousarray(to_channels(resample(x, src_rate, dst_rate), channels))
