"""Upstream ACE-Step's editing tasks as starting points for the sampling loop (`pipeline_ace_step.py`,
`text2music_diffusion_process` and `flowedit_diffusion_process`), in float32 numpy.

* **retake** (variations): the source's own initial noise mixed with a second ("retake") noise,
  cos(v·π/2)·noise + sin(v·π/2)·retake, then an ordinary text2music run. Needs no audio, only how the source
  was generated (its seed, prompt and params).
* **repaint** (regenerate frames [start, end) of an encoded track): z0 is the noise (retake-mixed inside the
  range), the loop skips the first n_min = ⌊steps·(1 − v)⌋ steps, starts from (1 − t)·x0 + t·z0 and after every
  plain Euler step puts the re-noised source (1 − t')·x0 + t'·z0 back outside the range.
* **extend** (add frames before/after): repaint over the source zero-padded on either side, the new frames
  masked for regeneration with retake noise there and the source's noise in between.
* **audio2audio**: the reference latents noised to the top of a shortened schedule (sigma_max = 1 − strength,
  ⌊(1 − strength)·steps⌋ steps), then an ordinary run.
* **edit** (FlowEdit): a separate loop (pipeline.py `flowedit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Repaint:
    """What the repaint branch of upstream's loop needs: source latents x0 (zero-padded for extend), the noise z0
    they are re-noised with, the frames to regenerate (`mask`, [F] bool) and the first step run (`n_min`)."""

    x0: np.ndarray
    z0: np.ndarray
    mask: np.ndarray
    n_min: int


def first_step(steps: int, variance: float) -> int:
    """Upstream's n_min: the steps a repaint skips (none at variance 1, all but ⌈steps·v⌉ otherwise)."""
    return int(steps * (1 - variance))


def mix(noise: np.ndarray, retake: np.ndarray, variance: float) -> np.ndarray:
    """cos(v·π/2)·noise + sin(v·π/2)·retake: unit variance for independent noises; v = 0 keeps `noise`."""
    angle = np.float32(variance * math.pi / 2)
    return (np.cos(angle) * noise + np.sin(angle) * retake).astype(np.float32)


def repaint(
    src: np.ndarray, noise: np.ndarray, retake: np.ndarray, lo: int, hi: int, variance: float, steps: int
) -> Repaint | None:
    """Regenerate frames [lo, hi) of `src` ([1, 8, 16, F]; upstream's frames are ⌊seconds·44100/4096⌋). None when
    the range spans the whole track: upstream then makes a plain retake (`mix` as the initial noise)."""
    frames = src.shape[-1]
    if hi - lo == frames:
        return None
    mask = np.zeros(frames, bool)
    mask[lo:hi] = True
    z0 = np.where(mask, mix(noise, retake, variance), noise).astype(np.float32)
    return Repaint(src.astype(np.float32), z0, mask, first_step(steps, variance))


def extend(
    src: np.ndarray, noise: np.ndarray, retake: np.ndarray, left: int, right: int, variance: float, steps: int
) -> Repaint:
    """Add `left` frames before and `right` after `src` ([1, 8, 16, F]). `noise` has F frames (the source's
    noise), `retake` at least max(left, right): the new frames take retake[:left] and retake[-right:], as
    upstream slices them (upstream's retake noise has F frames, so it cannot extend by more than the source's
    length on either side; lofi draws it long enough)."""
    x0 = np.pad(src, ((0, 0), (0, 0), (0, 0), (left, right))).astype(np.float32)
    parts = [retake[..., :left]] if left else []
    parts.append(noise)
    if right:
        parts.append(retake[..., -right:])
    z0 = np.concatenate(parts, axis=-1).astype(np.float32)
    mask = np.zeros(x0.shape[-1], bool)
    mask[:left] = True
    if right:
        mask[-right:] = True
    return Repaint(x0, z0, mask, first_step(steps, variance))


def audio2audio_steps(steps: int, strength: float) -> int:
    """Upstream's shortened schedule: ⌊(1 − strength)·steps⌋ steps."""
    return int((1 - strength) * steps)


def noised_reference(ref: np.ndarray, noise: np.ndarray, start_sigma: np.float32) -> np.ndarray:
    """`add_latents_noise`: ref·(1 − σ) + noise·σ at the schedule's top sigma."""
    return (ref * (np.float32(1) - start_sigma) + noise * start_sigma).astype(np.float32)
