"""What goes into and comes out of a generator backend, and the track identity rule. The `Backend` protocol
itself is in ports.py."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ports import Backend as Backend  # the protocol lives in ports.py; re-exported for backend plugins

# progress(done, total, **fields): called after every step; `fields` are backend-specific extras that are
# forwarded in `generation_progress` (e.g. tokens_generated, current_step, total_steps).
ProgressFn = Callable[..., None]

# on_audio(chunk): optional streaming of decoded audio (float32 [frames, channels]) while generating, so
# playback can start before the job ends. Backends that cannot stream never call it.
AudioChunkFn = Callable[[np.ndarray], None]


@dataclass(frozen=True)
class GenerationRequest:
    """A validated request. `params` holds every output-affecting, backend-specific parameter with its
    default filled in (e.g. guidance_scale, top_k, temperature for MusicGen), JSON-serialisable."""

    backend: str
    prompt: str
    duration_sec: float
    seed: int
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class GeneratedAudio:
    samples: np.ndarray  # float32, shape [frames, channels]
    sample_rate: int
    # extra metadata worth keeping with the track (e.g. tokens generated, steps); JSON-serialisable
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_sec(self) -> float:
        return self.samples.shape[0] / float(self.sample_rate)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def track_id_for(request: GenerationRequest, model_version: str) -> str:
    """First 16 hex chars of sha256 over the canonical JSON of every output-affecting parameter."""
    identity = {
        "backend": request.backend,
        "prompt": request.prompt,
        "seed": request.seed,
        "duration_sec": float(request.duration_sec),
        "params": dict(request.params),
        "model_version": model_version,
    }
    return hashlib.sha256(canonical_json(identity).encode("utf-8")).hexdigest()[:16]
