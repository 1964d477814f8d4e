"""The interface every generator implements, and the track identity rule.

A backend turns validated parameters into audio. The daemon owns everything around it (queue, cache,
notifications); a backend only validates, loads, generates (reporting progress, honouring the cancel token)
and unloads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..jobs.cancel import CancelToken

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


class Backend(Protocol):
    name: str  # "musicgen" | "ace_step"
    display_name: str
    sample_rate: int
    channels: int
    min_duration_sec: float
    max_duration_sec: float
    default_duration_sec: float
    # True when generate() calls on_audio with final audio while it runs, so playback can start early.
    streams_audio: bool

    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Check backend-specific parameters from a `generate` request (already schema-typed) and return the
        canonical, defaults-filled `params` dict. Raise LofiError with the product.md code on bad values
        (INVALID_DURATION is checked by the caller from min/max_duration_sec)."""

    def model_version(self) -> str:
        """Identifies the weights/variant in use; part of the track identity."""

    def is_installed(self) -> bool:
        """True when every required model file is present locally (no network)."""

    def status(self) -> dict[str, Any]:
        """Backend description for `get_backends` (installed, variant, files, sizes, ...)."""

    def download(self, progress: Callable[[dict[str, Any]], None], cancel: CancelToken) -> None:
        """Fetch the model files (the caller has the user's consent). `progress` receives dicts with
        file, bytes_downloaded, bytes_total, files_completed, files_total. Resumes partial files and
        checks sizes/hashes; raises LofiError(MODEL_DOWNLOAD_FAILED) on failure."""

    def load(self) -> None: ...

    def unload(self) -> None: ...

    @property
    def loaded(self) -> bool: ...

    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn,
        cancel: CancelToken,
        on_audio: AudioChunkFn | None = None,
    ) -> GeneratedAudio: ...


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
