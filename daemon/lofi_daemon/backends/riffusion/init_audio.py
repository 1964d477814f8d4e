"""Init audio for img2img: a cached track (by id) or a user's audio file, turned into riffusion spectrogram images
(riffusion's audio → image: mono at 44.1 kHz, mel magnitudes with the model's parameters, power 0.25, 8 bits).

`resolve(value, tracks_dir)` checks the source when the request arrives and returns its canonical form and the
sha256 of its bytes (part of the track identity: the same words with other audio are another track); `load()`
reads it again at generation time and refuses a file whose bytes changed since. Paths follow the rules of lofi's
other file params: absolute (or ~/…), a regular file (never a FIFO or a device), bounded in size, readable by
libsndfile (WAV, FLAC, OGG, MP3 where libsndfile has it). Every failure for a path gets the same message, so `init`
cannot probe which files exist.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ...audio.resample import resample
from ...cache.tags import EXTENSIONS
from ...errors import ErrorCode, LofiError
from ...models.download import sha256_file
from . import spectrogram

TRACK_ID = re.compile(r"[0-9a-f]{16}")
MAX_BYTES = 500 * 1024 * 1024  # 500 MiB: far above any song, far below what would stall the daemon
MIN_SEC = 0.5


@dataclass(frozen=True)
class InitSource:
    canonical: str  # "track:<id>" or the absolute path
    path: Path
    sha256: str


def _regular_size(path: Path) -> int | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def _track_file(track_id: str, tracks_dir: Path) -> Path:
    for ext in EXTENSIONS:
        path = tracks_dir / f"{track_id}.{ext}"
        if _regular_size(path) is not None:
            return path
    raise LofiError(
        ErrorCode.TRACK_NOT_FOUND,
        f"init: no cached track {track_id} in {tracks_dir}",
        param="init",
        track_id=track_id,
    )


def _bad_path(value: str) -> LofiError:
    return LofiError(
        ErrorCode.INVALID_PARAMS,
        f"init must be a cached track id (16 hex digits) or the absolute path of a readable audio file "
        f"(WAV, FLAC, OGG, MP3) of at least {MIN_SEC:g} s and at most {MAX_BYTES >> 20} MiB; got {value!r}",
        param="init",
    )


def resolve(value: str, tracks_dir: Path) -> InitSource:
    """Check `value` (a track id or a path) and fingerprint its bytes; LofiError when it cannot be used."""
    value = value.strip()
    track_id = value.removeprefix("track:")  # the canonical form resolves to itself
    if TRACK_ID.fullmatch(track_id):
        path = _track_file(track_id, tracks_dir)
        canonical = f"track:{track_id}"
    else:
        path = Path(value).expanduser()
        if not path.is_absolute():
            raise _bad_path(value)
        path = path.resolve()
        canonical = str(path)
    size = _regular_size(path)
    if size is None or size > MAX_BYTES:
        raise _bad_path(value)
    try:
        info = sf.info(str(path))
        digest = sha256_file(path)
    except (sf.LibsndfileError, RuntimeError, OSError):
        raise _bad_path(value) from None
    if info.frames < MIN_SEC * info.samplerate:
        raise _bad_path(value)
    return InitSource(canonical, path, digest)


def reopen(canonical: str, sha256: str, tracks_dir: Path) -> InitSource:
    """The source `resolve` returned, from its canonical form and fingerprint (kept in the request's params)."""
    if canonical.startswith("track:"):
        return InitSource(canonical, _track_file(canonical.removeprefix("track:"), tracks_dir), sha256)
    return InitSource(canonical, Path(canonical), sha256)


def load(source: InitSource) -> np.ndarray:
    """The source's audio as mono float32 at riffusion's rate (channels averaged)."""
    try:
        with open(source.path, "rb") as fh:
            data = fh.read(MAX_BYTES + 1)
        if hashlib.sha256(data).hexdigest() != source.sha256:
            raise LofiError(
                ErrorCode.INVALID_PARAMS,
                f"init: {source.canonical} changed since the request was made; generate again",
                param="init",
            )
        audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise LofiError(
            ErrorCode.INVALID_PARAMS, f"init: cannot read {source.canonical}: {exc}", param="init"
        ) from exc
    mono = audio.mean(axis=1)
    return resample(mono, int(rate), spectrogram.RIFFUSION_V1.sample_rate)


def clip_images(audio: np.ndarray, clips: int, width: int, step: int) -> list[np.ndarray]:
    """One spectrogram image [n_mels, width, 3] (mono: three equal channels, as riffusion writes) per clip, from
    the source audio at the clip's place (clip i starts i·step samples in); a source shorter than the track
    repeats from its start."""
    p = spectrogram.RIFFUSION_V1
    need = p.samples_for_width(width)
    total = (clips - 1) * step + need
    looped = np.resize(audio, max(total, audio.size))  # np.resize repeats the array to the new size
    images = []
    for i in range(clips):
        segment = looped[i * step : i * step + need]
        gray = spectrogram.image_from_audio(segment)[:, :width]
        images.append(np.repeat(gray[..., None], 3, axis=2))
    return images
