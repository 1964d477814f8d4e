"""Shared fixtures for the ACE-Step tests (the tiny random-weight fixture and fixed inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "ace-step-tiny"


def tiny_pipeline(windowing=None):
    from lofi_daemon.backends.ace_step.layout import detect
    from lofi_daemon.backends.ace_step.pipeline import AceStepPipeline
    from lofi_daemon.backends.ace_step.sessions import session_factory

    return AceStepPipeline(detect(FIXTURE), session_factory(threads=1), windowing)


def fixed_inputs(frames: int = 21, lyrics: bool = True, seed: int = 1234):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 300, size=(1, 9)).astype(np.int64)
    mask = np.ones_like(ids)
    if lyrics:
        lyric_ids = rng.integers(0, 96, size=(1, 11)).astype(np.int64)
        lyric_mask = np.ones_like(lyric_ids)
    else:
        lyric_ids = np.zeros((1, 1), np.int64)
        lyric_mask = np.zeros((1, 1), np.int64)
    noise = rng.standard_normal((1, 8, 16, frames), dtype=np.float32)
    return ids, mask, lyric_ids, lyric_mask, noise


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))
