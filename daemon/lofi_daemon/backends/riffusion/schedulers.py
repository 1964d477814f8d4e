"""Stable Diffusion samplers in numpy, following diffusers' DPMSolverMultistepScheduler (DPM-Solver++ 2M, the
riffusion app's choice) and DDIMScheduler (η = 0) as each is built with `from_config` from the checkpoint's
scheduler_config.json (SD-1.5: scaled-linear betas 0.00085–0.012 over 1000 steps, epsilon prediction).

Both expose `timesteps`, `step(eps, i, x)` and `add_noise` (img2img later); the model input is not rescaled
(init sigma 1). Arithmetic in float32 like diffusers, except the schedule tables it builds in float64.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

SCHEDULERS = ("dpmsolver++", "ddim")


def alphas_cumprod(config: Mapping[str, Any]) -> np.ndarray:
    n = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    kind = config.get("beta_schedule", "scaled_linear")
    if config.get("trained_betas"):
        betas = np.asarray(config["trained_betas"], np.float32)
    elif kind == "scaled_linear":
        betas = np.linspace(start**0.5, end**0.5, n, dtype=np.float32) ** 2
    elif kind == "linear":
        betas = np.linspace(start, end, n, dtype=np.float32)
    else:
        raise ValueError(f"beta_schedule {kind!r} is not supported")
    return np.cumprod(1.0 - betas, dtype=np.float32)


class DPMSolverPP:
    """DPM-Solver++ multistep, order 2, midpoint, lower-order final step, final sigma 0."""

    def __init__(self, config: Mapping[str, Any], steps: int) -> None:
        if config.get("prediction_type", "epsilon") != "epsilon":
            raise ValueError("only epsilon-prediction checkpoints are supported")
        ac = alphas_cumprod(config)
        n = len(ac)
        spacing = config.get("timestep_spacing", "linspace")
        if spacing == "linspace":
            ts = np.linspace(0, n - 1, steps + 1).round()[::-1][:-1].astype(np.int64)
        elif spacing == "leading":
            ratio = n // (steps + 1)
            ts = (np.arange(0, steps + 1) * ratio).round()[::-1][:-1].astype(np.int64)
            ts += int(config.get("steps_offset", 0))
        elif spacing == "trailing":
            ts = np.arange(n, 0, -n / steps).round().astype(np.int64) - 1
        else:
            raise ValueError(f"timestep_spacing {spacing!r} is not supported")
        table = np.sqrt((1 - ac.astype(np.float64)) / ac.astype(np.float64))
        sigmas = np.interp(ts, np.arange(n), table)
        self.sigmas = np.concatenate([sigmas, [0.0]]).astype(np.float32)
        self.timesteps = ts
        self._prev: np.ndarray | None = None
        self._ac = ac

    @staticmethod
    def _alpha_sigma(sigma: np.float32) -> tuple[np.float32, np.float32]:
        alpha = np.float32(1.0) / np.sqrt(sigma * sigma + np.float32(1.0))
        return alpha, sigma * alpha

    def step(self, eps: np.ndarray, i: int, x: np.ndarray) -> np.ndarray:
        n = len(self.timesteps)
        a_s0, s_s0 = self._alpha_sigma(self.sigmas[i])
        x0 = (x - s_s0 * eps) / a_s0  # the data prediction DPM-Solver++ integrates
        a_t, s_t = self._alpha_sigma(self.sigmas[i + 1])
        with np.errstate(divide="ignore"):
            lam_t = np.log(a_t) - np.log(s_t)  # -inf at the final sigma 0: exp(-h) = 0 there
        lam_s0 = np.log(a_s0) - np.log(s_s0)
        h = lam_t - lam_s0
        phi = np.exp(-h) - np.float32(1.0)
        first = self._prev is None or i == n - 1  # warm-up, and the final step with sigma 0 is first order
        if first:
            out = (s_t / s_s0) * x - (a_t * phi) * x0
        else:
            a_s1, s_s1 = self._alpha_sigma(self.sigmas[i - 1])
            lam_s1 = np.log(a_s1) - np.log(s_s1)
            r0 = (lam_s0 - lam_s1) / h
            assert self._prev is not None  # not the first step
            d1 = (np.float32(1.0) / r0) * (x0 - self._prev)
            out = (s_t / s_s0) * x - (a_t * phi) * x0 - np.float32(0.5) * (a_t * phi) * d1
        self._prev = x0
        return out.astype(np.float32)

    def add_noise(self, x0: np.ndarray, noise: np.ndarray, i: int) -> np.ndarray:
        a, s = self._alpha_sigma(self.sigmas[i])
        return (a * x0 + s * noise).astype(np.float32)


class DDIM:
    """DDIM with η = 0 (deterministic), `set_alpha_to_one` from the config for the final step."""

    def __init__(self, config: Mapping[str, Any], steps: int) -> None:
        if config.get("prediction_type", "epsilon") != "epsilon":
            raise ValueError("only epsilon-prediction checkpoints are supported")
        self._ac = alphas_cumprod(config)
        n = len(self._ac)
        spacing = config.get("timestep_spacing", "leading")
        if spacing == "leading":
            ratio = n // steps
            ts = (np.arange(0, steps) * ratio).round()[::-1].astype(np.int64) + int(
                config.get("steps_offset", 0)
            )
        elif spacing == "trailing":
            ts = np.round(np.arange(n, 0, -n / steps)).astype(np.int64) - 1
        elif spacing == "linspace":
            ts = np.linspace(0, n - 1, steps).round()[::-1].astype(np.int64)
        else:
            raise ValueError(f"timestep_spacing {spacing!r} is not supported")
        self.timesteps = ts
        self._ratio = n // steps
        self._final = np.float32(1.0) if config.get("set_alpha_to_one", True) else self._ac[0]

    def step(self, eps: np.ndarray, i: int, x: np.ndarray) -> np.ndarray:
        t = int(self.timesteps[i])
        prev = t - self._ratio
        a_t = self._ac[t]
        a_prev = self._ac[prev] if prev >= 0 else self._final
        x0 = (x - np.sqrt(1 - a_t) * eps) / np.sqrt(a_t)
        return (np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps).astype(np.float32)

    def add_noise(self, x0: np.ndarray, noise: np.ndarray, i: int) -> np.ndarray:
        a = self._ac[int(self.timesteps[i])]
        return (np.sqrt(a) * x0 + np.sqrt(1 - a) * noise).astype(np.float32)


def make_scheduler(name: str, config: Mapping[str, Any], steps: int) -> DPMSolverPP | DDIM:
    if name == "dpmsolver++":
        return DPMSolverPP(config, steps)
    if name == "ddim":
        return DDIM(config, steps)
    raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}")
