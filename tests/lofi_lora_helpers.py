"""Shared pieces of the lofi-lora training-side tests: synthetic precomputed features of the tiny fixture's shapes
and a one-call CLI runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.ace_step_helpers import FIXTURE

TEXT_DIM = 32  # the tiny UMT5's d_model
SPEAKER_DIM = 16
LYRIC_VOCAB = 96


def write_features(folder: Path, n: int = 2, frames: int = 6, seed: int = 0) -> Path:
    """n samples with the real feature layout: smooth latents (a different chord of sines per channel and row,
    so every sample is distinct and structured), random text states of varying length, lyric ids."""
    from scripts.lofi_lora import features

    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2 * np.pi, frames, dtype=np.float32)
    for i in range(n):
        f = 1.0 + 0.3 * np.arange(16, dtype=np.float32)[None, :, None]
        phase = np.arange(8, dtype=np.float32)[:, None, None] + i
        latents = np.sin(t[None, None, :] * f + phase).astype(np.float32)
        tokens = 4 + i
        lyric = rng.integers(4, LYRIC_VOCAB, size=3 + i)
        features.save_sample(
            folder,
            f"track{i}",
            {
                "latents": latents,
                "text_states": rng.standard_normal((tokens, TEXT_DIM)).astype(np.float32),
                "text_mask": np.ones(tokens, np.int64),
                "lyric_ids": lyric.astype(np.int64),
                "lyric_mask": np.ones_like(lyric, dtype=np.int64),
                "speaker_emb": rng.standard_normal(SPEAKER_DIM).astype(np.float32),
            },
            {"prompt": f"lofi, piano, take {i}"},
        )
    return folder


def lofi_lora(*argv: str) -> tuple[int, dict]:
    """Run `lofi-lora ARGV --json --quiet` in-process: (exit code, the JSON result)."""
    import contextlib
    import io

    from scripts.lofi_lora import cli

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main([*argv, "--json", "--quiet"])
    out = buf.getvalue().strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


def train_args(features: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--base",
        str(FIXTURE),
        "--features",
        str(features),
        "--out",
        str(out),
        "--rank",
        "4",
        "--alpha",
        "8",
        "--precision",
        "fp32",
        *extra,
    ]
