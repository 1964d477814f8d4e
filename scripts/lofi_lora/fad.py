"""Fréchet Audio Distance: the Fréchet distance between Gaussians fitted to the embeddings of two sets of audio,
with a pluggable embedding model.

An embedder is a Python file (`--embedder path/to/file.py`) defining `SAMPLE_RATE` (Hz) and
`embed(wave: np.ndarray) -> np.ndarray` that maps a mono float32 wave to [frames, dim] embeddings — a wrapper
around VGGish, CLAP, EnCodec or any other model (the shape of fadtk's model loaders). Audio is mixed to mono and
resampled to the embedder's rate here. `clap.ClapEmbedder` is the built-in one when a CLAP model is given.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FAILED_INPUT, USAGE, LoraError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


@dataclass
class Embedder:
    name: str
    sample_rate: int
    embed: Callable[[np.ndarray], np.ndarray]


def load_embedder(path: Path) -> Embedder:
    path = Path(path).expanduser()
    if not path.is_file():
        raise LoraError(f"embedder {path} is not a file", USAGE)
    spec = importlib.util.spec_from_file_location(f"lofi_lora_embedder_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise LoraError(f"embedder {path} is not a Python file", USAGE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "embed", None)) or not isinstance(
        getattr(module, "SAMPLE_RATE", None), int
    ):
        raise LoraError(
            f"embedder {path} must define SAMPLE_RATE (int) and embed(wave) -> [frames, dim]", USAGE
        )
    return Embedder(path.stem, module.SAMPLE_RATE, module.embed)


def to_mono(audio: np.ndarray, sr: int, target_sr: int) -> np.ndarray:
    """[samples] or [samples, channels] (soundfile's layout) → mono float32 at target_sr."""
    from math import gcd

    from scipy.signal import resample_poly

    wave = np.asarray(audio, np.float32)
    wave = wave.mean(axis=1) if wave.ndim == 2 else wave
    if sr != target_sr:
        g = gcd(sr, target_sr)
        wave = resample_poly(wave, target_sr // g, sr // g).astype(np.float32)
    return wave


def audio_files(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise LoraError(f"no audio files in {folder}", FAILED_INPUT)
    return files


def embed_waves(embedder: Embedder, waves: Iterable[tuple[np.ndarray, int]]) -> np.ndarray:
    rows = []
    for audio, sr in waves:
        e = np.asarray(embedder.embed(to_mono(audio, sr, embedder.sample_rate)), np.float64)
        rows.append(e.reshape(-1, e.shape[-1]))
    return np.concatenate(rows)


def embed_files(embedder: Embedder, files: Iterable[Path]) -> np.ndarray:
    import soundfile as sf

    def read(f):
        audio, sr = sf.read(str(f), dtype="float32")
        return audio, sr

    return embed_waves(embedder, (read(f) for f in files))


def statistics(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise LoraError("FAD needs at least two embedding frames per set", FAILED_INPUT)
    return emb.mean(axis=0), np.atleast_2d(np.cov(emb, rowvar=False))


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^½), the matrix square root by scipy (with the usual diagonal offset when
    the product is singular, and the imaginary rounding residue dropped)."""
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean)))


def fad(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*statistics(a), *statistics(b))
