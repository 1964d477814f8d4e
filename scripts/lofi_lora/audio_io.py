"""Reading any container the user has, converting to 48 kHz stereo, and writing training files atomically."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .errors import ENVIRONMENT, FAILED_INPUT, LoraError

SAMPLE_RATE = 48_000  # ACE-Step's DCAE works on 48 kHz stereo
# libsndfile (≥ 1.1) reads these itself; M4A/AAC need ffmpeg
SOUNDFILE_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff"}
FFMPEG_SUFFIXES = {".m4a", ".aac", ".mp4"}
AUDIO_SUFFIXES = SOUNDFILE_SUFFIXES | FFMPEG_SUFFIXES
OUTPUT_FORMATS = {"flac": ".flac", "mp3": ".mp3"}


def is_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """(frames, channels) float32 in [-1, 1] and the file's sample rate."""
    if path.suffix.lower() in FFMPEG_SUFFIXES:
        return _read_with_ffmpeg(path), SAMPLE_RATE
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise LoraError(f"{path.name}: cannot read audio ({e})", FAILED_INPUT) from e
    return audio, int(sr)


def _read_with_ffmpeg(path: Path) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise LoraError(
            f"{path.name}: reading {path.suffix} needs ffmpeg on PATH (e.g. `apt install ffmpeg`), "
            "or convert the file to FLAC/WAV first",
            ENVIRONMENT,
        )
    # ffmpeg decodes, resamples and up/down-mixes in one go; raw float32 on stdout keeps parsing trivial
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-acodec", "pcm_f32le"]
    cmd += ["-ac", "2", "-ar", str(SAMPLE_RATE), "pipe:1"]
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise LoraError(f"{path.name}: ffmpeg could not decode it ({detail[-1] if detail else 'no detail'})")
    if len(proc.stdout) % 8:
        raise LoraError(f"{path.name}: ffmpeg returned a truncated stream ({len(proc.stdout)} bytes)")
    return np.frombuffer(proc.stdout, dtype="<f4").reshape(-1, 2).astype(np.float32)


def to_stereo_48k(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono is duplicated, more than two channels keep the first two (front left/right in every common layout)."""
    if audio.shape[1] == 1:
        audio = np.repeat(audio, 2, axis=1)
    audio = audio[:, :2]
    if sr != SAMPLE_RATE:
        g = gcd(SAMPLE_RATE, sr)
        audio = resample_poly(audio, SAMPLE_RATE // g, sr // g, axis=0)
    return np.ascontiguousarray(audio, dtype=np.float32)


def write_audio(path: Path, audio: np.ndarray, fmt: str) -> None:
    """FLAC (24-bit) or MP3 at 320 kbps constant bit rate; written beside the target, then renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        if fmt == "mp3":
            # libsndfile maps compression level 0 in constant mode to 320 kbps
            sf.write(tmp, audio, SAMPLE_RATE, format="MP3", bitrate_mode="CONSTANT", compression_level=0.0)
        else:
            sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_24")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
