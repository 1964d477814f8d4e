"""Write a cached track to a file of the user's choosing, in the format its name (or `--format`) asks for.

The cache keeps its own format (FLAC by default); a copy named `x.mp3` must be an MP3, or players refuse it.
The file is written next to its destination and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..errors import ErrorCode, LofiError
from .tags import EXTENSIONS, check_format


def output_format(path: Path, fmt: str | None) -> str:
    """The format to write `path` in: the one its extension names, or `fmt`; both given must agree.
    Raises INVALID_PARAMS for a mismatch or when neither says, CACHE_ERROR when this libsndfile cannot write it."""
    named = EXTENSIONS.get(path.suffix.lstrip(".").lower())
    fmt = fmt.lower() if fmt else None
    if fmt and named and fmt != named:
        raise LofiError(
            ErrorCode.INVALID_PARAMS,
            f"{path.name} names the {named} format but --format is {fmt}",
            hint=f"name the file .{FORMAT_EXT[fmt]} or drop --format",
        )
    chosen = fmt or named
    if chosen is None:
        raise LofiError(
            ErrorCode.INVALID_PARAMS,
            f"cannot tell the audio format from the name {path.name!r}",
            hint=f"end it in one of {', '.join('.' + e for e in sorted(EXTENSIONS))}, or add --format",
        )
    check_format(chosen)
    return chosen


FORMAT_EXT = {name: ext for ext, name in EXTENSIONS.items()}


def export_track(store: Any, track_id: str, dest: Path, fmt: str) -> dict[str, Any]:
    """Write cached track `track_id` to `dest` as `fmt` (atomically) and describe what was written."""
    major, subtype, _ = check_format(fmt)
    track = store.require(track_id)
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if track.format == fmt:
            shutil.copyfile(track.path, tmp)  # already that format: the same bytes, tags included
        else:
            samples, rate = store.read_audio(track_id)
            with sf.SoundFile(
                tmp, "w", samplerate=rate, channels=samples.shape[1], format=major, subtype=subtype
            ) as f:
                f.title = f"lofi: {track.prompt[:80]}"
                f.artist = f"lofi ({track.backend})"
                f.software = "lofi"
                f.write(np.clip(samples, -1.0, 1.0))  # integer PCM would wrap around instead of clipping
        info = sf.info(str(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except (OSError, RuntimeError, sf.LibsndfileError) as e:
        raise LofiError(ErrorCode.CACHE_ERROR, f"cannot write {dest}: {e}", track_id=track_id) from e
    finally:
        with contextlib.suppress(OSError):  # e.g. its folder is not a folder: nothing was written
            tmp.unlink(missing_ok=True)
    return {
        "path": str(dest),
        "format": fmt,
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
        "duration_sec": round(float(info.duration), 3),
    }
