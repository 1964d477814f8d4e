"""Guidance rules of upstream ACE-Step (`apg_guidance.py`): CFG, APG (momentum + norm clip + projection),
CFG-zero*, and the guidance interval / decay of `text2music_diffusion_process`."""

from __future__ import annotations

import numpy as np

CFG_TYPES = ("apg", "cfg", "cfg_star")


def guidance_window(num_inference_steps: int, interval: float) -> tuple[int, int]:
    """Evaluation indices [start, end) that run cond + uncond; the rest run cond only."""
    start = int(num_inference_steps * ((1 - interval) / 2))
    end = int(num_inference_steps * (interval / 2 + 0.5))
    return start, end


def scale_at(i: int, start: int, end: int, scale: float, decay: float, min_scale: float) -> float:
    if decay <= 0:
        return scale
    span = end - start - 1
    progress = (i - start) / span if span > 0 else 0.0
    return scale - (scale - min_scale) * progress * decay


def cfg(cond: np.ndarray, uncond: np.ndarray, scale: float) -> np.ndarray:
    return uncond + np.float32(scale) * (cond - uncond)


class MomentumBuffer:
    def __init__(self, momentum: float = -0.75) -> None:
        self.momentum = np.float32(momentum)
        self.running: np.ndarray | float = 0.0

    def update(self, value: np.ndarray) -> np.ndarray:
        self.running = value + self.momentum * self.running
        return self.running


def apg(cond, uncond, scale: float, buffer: MomentumBuffer, norm_threshold: float = 2.5, eta: float = 0.0):
    """Adaptive projected guidance over the (height, frames) axes of [B, C, H, W] predictions."""
    diff = buffer.update((cond - uncond).astype(np.float32)).astype(np.float32)
    if norm_threshold > 0:
        norm = np.sqrt(np.sum(diff * diff, axis=(-1, -2), keepdims=True, dtype=np.float32))
        diff = diff * np.minimum(np.float32(1), np.float32(norm_threshold) / norm)
    v0, v1 = diff.astype(np.float64), cond.astype(np.float64)
    v1 = v1 / np.maximum(np.sqrt(np.sum(v1 * v1, axis=(-1, -2), keepdims=True)), 1e-12)
    parallel = np.sum(v0 * v1, axis=(-1, -2), keepdims=True) * v1
    orthogonal = (v0 - parallel).astype(np.float32)
    update = orthogonal + np.float32(eta) * parallel.astype(np.float32)
    return (cond + np.float32(scale - 1) * update).astype(np.float32)


def cfg_zero_star(cond, uncond, scale: float, i: int, zero_steps: int = 1, use_zero_init: bool = True):
    if i <= zero_steps and use_zero_init:
        return cond * np.float32(0.0)
    b = cond.shape[0]
    pos, neg = cond.reshape(b, -1), uncond.reshape(b, -1)
    dot = np.sum(pos * neg, axis=1, keepdims=True, dtype=np.float32)
    alpha = (dot / (np.sum(neg * neg, axis=1, keepdims=True, dtype=np.float32) + np.float32(1e-8))).reshape(
        b, 1, 1, 1
    )
    return (uncond * alpha + np.float32(scale) * (cond - uncond * alpha)).astype(np.float32)
