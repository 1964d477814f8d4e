"""Classifier-free guidance and token sampling (numpy only, seeded, reproducible).

Follows audiocraft's sampler: logits / temperature → softmax; if top_p > 0 nucleus sampling, else top-k
(top_k=1 is greedy argmax, which is what the transformers-equivalence tests use).
"""

from __future__ import annotations

import numpy as np


def apply_guidance(logits: np.ndarray, scale: float) -> np.ndarray:
    """logits [2*R, V] with conditional rows first → guided [R, V] = uncond + (cond - uncond) * scale."""
    rows = logits.shape[0] // 2
    cond, uncond = logits[:rows], logits[rows:]
    return uncond + (cond - uncond) * np.float32(scale)


def sample(
    logits: np.ndarray,
    rng: np.random.Generator,
    *,
    top_k: int = 250,
    top_p: float = 0.0,
    temperature: float = 1.0,
) -> np.ndarray:
    """One token per row of `logits` [R, V] (float32). Always draws R uniforms, so the RNG stream advances the
    same way whatever the settings (same seed ⇒ same tokens)."""
    logits = np.asarray(logits, dtype=np.float32)
    rows, vocab = logits.shape
    u = rng.random(int(rows))
    if top_p <= 0.0 and top_k == 1:
        return np.argmax(logits, axis=-1).astype(np.int64)
    scaled = logits.astype(np.float64) / max(float(temperature), 1e-6)
    out = np.empty(rows, dtype=np.int64)
    for r in range(rows):
        row = scaled[r]
        if top_p > 0.0:
            order = np.argsort(-row, kind="stable")
            probs = _softmax(row[order])
            cum = np.cumsum(probs)
            # keep the smallest prefix whose mass reaches top_p (always at least one token)
            keep = int(np.searchsorted(cum - probs, top_p, side="left"))
            keep = max(1, min(keep, vocab))
            idx = order[:keep]
        else:
            k = max(1, min(int(top_k), vocab))
            idx = np.argpartition(-row, k - 1)[:k] if k < vocab else np.arange(vocab)
            idx = idx[np.argsort(-row[idx], kind="stable")]  # deterministic order for the CDF
        p = _softmax(row[idx])
        c = np.cumsum(p)
        j = int(np.searchsorted(c, u[r] * c[-1], side="right"))
        out[r] = idx[min(j, len(idx) - 1)]
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - np.max(x))
    return e / e.sum()
