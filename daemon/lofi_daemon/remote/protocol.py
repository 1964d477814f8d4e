"""What a local daemon and a remote generator exchange, on the same Content-Length JSON-RPC framing as the client.

local → remote  initialize {protocol_version}            → {protocol_version, role, host, version, backends}
                generator.generate {job_id, backend, …}  → {accepted, model_version}
                generator.cancel {job_id}                 → {cancelled}
                ping                                      → {pong}
remote → local  generator.progress {job_id, done, total, fields}
                generator.download {job_id, …download progress…}
                generator.audio {job_id, seq, kind: "stream"|"final", frames, channels, data}
                generator.done {job_id, frames, channels, sample_rate, sha256, streamed, info, model_version}
                generator.error {job_id, code, error_code, message}
                generator.cancelled {job_id}

Audio travels as base64 of little-endian float32 PCM, so the local track is bit-identical to what the remote
made; `sha256` covers the whole track's bytes. Chunks stay far below the framing's 8 MiB message limit.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from ..errors import ErrorCode
from ..rpc.schemas.base import Strict

# Bump when a message above changes shape; both ends refuse to talk across a difference.
GENERATOR_PROTOCOL = 1
# What this side accepts from a remote's free-form dicts (progress fields, download progress, track info): a few
# JSON scalars, so a hostile remote cannot grow a notification or a track's metadata, nor nest it deep.
MAX_FIELDS = 32
MAX_TEXT = 500
CHUNK_FRAMES = 48_000  # ≤ 1 s at 48 kHz: ≤ 384 KB of stereo float32, ≤ 512 KB as base64
MAX_CHANNELS = 2


class GeneratorHello(Strict):
    protocol_version: int = Field(ge=0, le=1_000_000)
    client: str | None = Field(default=None, max_length=200)


JOB_ID = r"^[0-9A-Za-z_-]+$"  # what a job id may hold: it reaches log lines and messages


class RemoteJob(Strict):
    job_id: str = Field(min_length=1, max_length=64, pattern=JOB_ID)
    backend: str = Field(min_length=1, max_length=64)
    prompt: str = Field(min_length=1, max_length=4000)
    duration_sec: float = Field(gt=0, le=3600)
    seed: int = Field(ge=0, le=2**32 - 1)
    params: dict[str, Any] = Field(default_factory=dict)
    allow_download: bool = False


class RemoteJobId(Strict):
    job_id: str = Field(min_length=1, max_length=64, pattern=JOB_ID)


def encode_audio(samples: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(samples, dtype="<f4").tobytes()).decode("ascii")


def decode_audio(data: str, frames: int, channels: int) -> np.ndarray:
    """The chunk's samples as float32 [frames, channels]; ValueError when the bytes don't match the shape."""
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    if len(raw) != frames * channels * 4:
        raise ValueError(
            f"an audio chunk of {len(raw)} bytes does not hold {frames}×{channels} float32 samples"
        )
    return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(frames, channels)


def audio_digest(samples: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(samples, dtype="<f4").tobytes()).hexdigest()


def chunks(samples: np.ndarray, size: int = CHUNK_FRAMES) -> list[np.ndarray]:
    return [samples[i : i + size] for i in range(0, max(len(samples), 1), size)] if len(samples) else []


def error_code(code: Any) -> ErrorCode:
    """The remote's error code when this side knows it, else a generic inference failure."""
    return (
        ErrorCode(code)
        if isinstance(code, int) and code in ErrorCode._value2member_map_
        else (ErrorCode.MODEL_INFERENCE_FAILED)
    )


_CONTROLS = dict.fromkeys([*range(0x20), 0x7F], " ")  # a terminal escape must not reach the user's screen


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """A remote's free text made safe to show: a str, cut to `limit`, lone surrogates and control characters
    replaced."""
    s = value if isinstance(value, str) else repr(value)[:limit]
    return s[:limit].encode("utf-8", "replace").decode("utf-8").translate(_CONTROLS)


def hello(reply: dict[str, Any]) -> dict[str, Any]:
    """The remote's initialize reply in the shape this side reads (status, :checkhealth, model versions)."""
    backends = reply.get("backends")
    host = reply.get("host")
    return {
        "role": reply.get("role"),
        "protocol_version": plain_int(reply.get("protocol_version")),
        "version": text(reply.get("version", "?"), 40),
        "host": text(host, 100) if isinstance(host, str) and host else None,
        "backends": [scalar_fields(b) for b in backends[:MAX_FIELDS] if isinstance(b, dict)]
        if isinstance(backends, list)
        else [],
    }


def plain_int(value: Any, low: int = 0, high: int = 2**53) -> int | None:
    """`value` when it is a real int (not a bool) within [low, high], else None."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return None


def scalar_fields(raw: Any, reserved: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON-scalar entries of a remote's dict (short keys, finite numbers, short text), without the
    `reserved` keys this side sets itself (a remote must not rename the local track, say)."""
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if len(out) >= MAX_FIELDS:
            break
        if not isinstance(key, str) or not key or len(key) > 64 or key in reserved:
            continue
        key = text(key)
        if value is None or isinstance(value, bool):
            out[key] = value
        elif isinstance(value, int):
            if -(2**53) <= value <= 2**53:
                out[key] = value
        elif isinstance(value, float):
            if math.isfinite(value):
                out[key] = value
        elif isinstance(value, str):
            out[key] = text(value)
    return out


def names_a_file(value: str) -> bool:
    """Whether a param's text looks like a file path (absolute, home- or dot-relative, a drive, or an existing
    file with a separator): such params never cross the link, in either direction."""
    if not value or len(value) > 4096 or "\n" in value:
        return False
    if value.startswith(("/", "~", "./", "../")) or (
        len(value) > 2 and value[1] == ":" and value[2] in "\\/"
    ):
        return True
    try:
        return Path(value).expanduser().exists() and ("/" in value or "\\" in value)
    except (OSError, ValueError):
        return False
