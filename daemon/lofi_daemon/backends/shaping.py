"""Generate params that shape any backend's output, applied around `Backend.generate`: `bpm` (tempo lock,
audio/tempo.py) and `loop` (a seamless loop, audio/seam.py).

They travel in the request's params (so they are part of the track id and stored with the track) but the
backend never sees them: `generate` hands it a request without them (with the tempo added to the prompt), asks
for the extra audio the shaping needs, and shapes what comes back: first the tempo (estimated; stretched to the
target when within STRETCH_LIMIT of it), then the loop (whole bars of the tempo, when it is known). A shaped
track cannot be streamed while it is generated (its audio is only final once the whole of it is there).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from ..audio import seam, tempo
from ..cancel import CancelToken
from ..ports import Backend
from .base import AudioChunkFn, GeneratedAudio, GenerationRequest, ProgressFn

NAMES = ("loop", "bpm")
STRETCH_LIMIT = (
    0.08  # stretch only when the estimate is this close: further off, it is another feel (or wrong)
)
MIN_CONFIDENCE = 0.3  # a loop without `bpm` counts in bars only when the estimated beat is this clear
BEATS_PER_BAR = 4


def from_request(loop: bool, bpm: float | None) -> dict[str, Any]:
    """The shaping params of a generate request as they enter the track params (only those that are set, so a
    request without them keeps the id it always had)."""
    out: dict[str, Any] = {"loop": True} if loop else {}
    if bpm is not None:
        out["bpm"] = float(bpm)
    return out


def report(info: Mapping[str, Any]) -> dict[str, Any]:
    """The shaping entries of a track's info (for `generation_complete`): `loop` and `tempo`."""
    return {name: info[name] for name in ("loop", "tempo") if name in info}


def active(request: GenerationRequest) -> bool:
    return any(name in request.params for name in NAMES)


def split(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the backend's own params, the shaping params)."""
    own = {k: v for k, v in params.items() if k not in NAMES}
    return own, {k: v for k, v in params.items() if k in NAMES}


def prompt_with_tempo(prompt: str, bpm: float) -> str:
    return f"{prompt}, {bpm:g} bpm"


def bar_samples(bpm: float, sample_rate: int) -> float:
    return BEATS_PER_BAR * 60.0 / bpm * sample_rate


def generate(
    backend: Backend,
    request: GenerationRequest,
    progress: ProgressFn,
    cancel: CancelToken,
    on_audio: AudioChunkFn | None = None,
) -> GeneratedAudio:
    own, shape = split(request.params)
    if not shape:
        return backend.generate(request, progress, cancel, on_audio=on_audio)
    rate = backend.sample_rate
    length = int(round(request.duration_sec * rate))
    bpm: float | None = shape.get("bpm")
    need = math.ceil(length / (1 - STRETCH_LIMIT)) if bpm else length  # a faster stretch shortens the audio
    if shape.get("loop"):
        need += seam.extra_needed(rate, bar_samples(bpm, rate) if bpm else None, length)
    inner = dataclasses.replace(
        request,
        prompt=prompt_with_tempo(request.prompt, bpm) if bpm else request.prompt,
        params=own,
        duration_sec=need / rate,
    )
    audio = backend.generate(inner, progress, cancel, on_audio=None)
    cancel.check()
    samples, info, sr = audio.samples, dict(audio.info), audio.sample_rate
    beat_bpm: float | None = None
    if bpm:
        found = tempo.estimate(samples, sr, prior_bpm=bpm)
        stretched = found.bpm > 0 and abs(found.bpm / bpm - 1) < STRETCH_LIMIT
        if stretched:
            samples = tempo.stretch(samples, sr, bpm / found.bpm)
        info["tempo"] = {
            "target_bpm": bpm,
            "estimated_bpm": round(found.bpm, 2),
            "confidence": round(found.confidence, 3),
            "stretched": stretched,
        }
        beat_bpm = bpm if stretched else (found.bpm or None)
    elif shape.get("loop"):
        found = tempo.estimate(samples, sr)
        beat_bpm = found.bpm if found.confidence >= MIN_CONFIDENCE and found.bpm > 0 else None
    if shape.get("loop"):
        loop = seam.find_loop(samples, sr, length, bar=bar_samples(beat_bpm, sr) if beat_bpm else None)
        samples = seam.make_loop(samples, loop)
        info["loop"] = {**loop.to_dict(sr), "bpm": None if beat_bpm is None else round(beat_bpm, 2)}
    else:
        samples = samples[:length]
    return GeneratedAudio(samples=samples, sample_rate=sr, info=info)
