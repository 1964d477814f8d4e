"""Flow-matching schedules and steps of upstream ACE-Step (Euler, Heun, PingPong), in float32 numpy.

The arithmetic follows the upstream schedulers operation by operation (float32 where they use float32 tensors,
float64 where they use numpy), so a PyTorch run and this one agree to float rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

NUM_TRAIN_TIMESTEPS = 1000
SHIFT = 3.0
SCHEDULERS = ("euler", "heun", "pingpong")


def _shift(s, shift: float = SHIFT):
    return shift * s / (1 + (shift - 1) * s)


def base_sigmas(num_steps: int, shift: float = SHIFT, sigma_max: float = 1.0) -> np.ndarray:
    """Upstream `set_timesteps(N)`: linspace between the shifted training extremes, shifted once more.
    Returns float32 sigmas of length N (no trailing zero). `sigma_max` < 1 is upstream's audio2audio schedule
    (the scheduler's training timesteps end at sigma_max · 1000 instead of 1000)."""
    top = sigma_max * NUM_TRAIN_TIMESTEPS
    train = np.linspace(1.0, top, NUM_TRAIN_TIMESTEPS, dtype=np.float32)[::-1].copy()
    train_sigmas = _shift(train / np.float32(NUM_TRAIN_TIMESTEPS), shift).astype(np.float32)
    sigma_max, sigma_min = float(train_sigmas[0]), float(train_sigmas[-1])
    t = np.linspace(sigma_max * NUM_TRAIN_TIMESTEPS, sigma_min * NUM_TRAIN_TIMESTEPS, num_steps)
    return _shift(t / NUM_TRAIN_TIMESTEPS, shift).astype(np.float32)


def omega_factor(omega: float) -> np.float32:
    """Upstream's mean-shift strength: logistic between 0.9 and 1.1 (1.0462 for omega 10)."""
    return np.float32(0.9 + 0.2 / (1 + np.exp(-0.1 * omega)))


def _mean_shift(dx: np.ndarray, w: np.float32) -> np.ndarray:
    m = dx.mean(dtype=np.float32)
    return (dx - m) * w + m


@dataclass
class Scheduler:
    """One scheduler run. `timesteps[i]` is what the model receives at evaluation i; `step()` consumes the
    model output for that evaluation. `num_inference_steps` is what upstream's `retrieve_timesteps` returns
    (the requested N even for Heun — the guidance window is computed from it: the Heun interval quirk)."""

    kind: str
    num_inference_steps: int
    omega: float
    noise: Callable[[tuple[int, ...]], np.ndarray] | None = None  # PingPong's fresh noise per step
    sigma_max: float = 1.0  # audio2audio: 1 − ref_audio_strength
    timesteps: np.ndarray = field(init=False)
    sigmas: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.kind!r}")
        s = base_sigmas(self.num_inference_steps, sigma_max=self.sigma_max)
        if self.kind == "heun":
            t = s * np.float32(NUM_TRAIN_TIMESTEPS)
            self.timesteps = np.concatenate([t[:1], np.repeat(t[1:], 2)]).astype(np.float32)
            s0 = np.concatenate([s, np.zeros(1, np.float32)])
            self.sigmas = np.concatenate([s0[:1], np.repeat(s0[1:-1], 2), s0[-1:]]).astype(np.float32)
        else:
            self.timesteps = (s * np.float32(NUM_TRAIN_TIMESTEPS)).astype(np.float32)
            self.sigmas = np.concatenate([s, np.zeros(1, np.float32)])
        self._w = omega_factor(self.omega)
        self._i = 0
        self._prev: tuple[np.ndarray, np.float32, np.ndarray] | None = None  # Heun: derivative, dt, sample

    @property
    def start_sigma(self) -> np.float32:
        """Upstream's `scheduler.sigma_max`: the shifted top training sigma (audio2audio noises the reference
        to this level; the first timestep is shifted once more, an upstream quirk kept here)."""
        top = np.float32(self.sigma_max * NUM_TRAIN_TIMESTEPS) / np.float32(NUM_TRAIN_TIMESTEPS)
        return np.float32(_shift(top))

    @property
    def num_evaluations(self) -> int:
        return len(self.timesteps)

    def user_step(self, i: int) -> int:
        """1-based step the user sees for evaluation index i (Heun spends two evaluations per step)."""
        return (i + 1) // 2 + 1 if self.kind == "heun" else i + 1

    def step(self, v: np.ndarray, x: np.ndarray) -> np.ndarray:
        i = self._i
        self._i += 1
        x = x.astype(np.float32, copy=False)
        v = v.astype(np.float32, copy=False)
        if self.kind == "euler":
            dx = (self.sigmas[i + 1] - self.sigmas[i]) * v
            return (x + _mean_shift(dx, self._w)).astype(np.float32)
        if self.kind == "pingpong":
            sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
            denoised = x - sigma * v
            assert self.noise is not None, "pingpong needs a noise source"
            eps = self.noise(x.shape).astype(np.float32)
            return ((np.float32(1) - sigma_next) * denoised + sigma_next * eps).astype(np.float32)
        # Heun: first-order (Euler predictor) and second-order (trapezoid corrector) calls alternate.
        if self._prev is None:
            sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
            denoised = x - v * sigma
            d = (x - denoised) / sigma
            dt = sigma_next - sigma
            self._prev = (d, dt, x)
            return (x + _mean_shift(d * dt, self._w)).astype(np.float32)
        d_prev, dt, x0 = self._prev
        sigma_next = self.sigmas[i]
        denoised = x - v * sigma_next
        d = np.float32(0.5) * (d_prev + (x - denoised) / sigma_next)
        self._prev = None
        return (x0 + _mean_shift(d * dt, self._w)).astype(np.float32)
