"""The seams between the daemon's parts, as `Protocol`s: what the generation worker and the player need of the
track store, what the worker needs of the playback sink, and what every generator backend provides.

Code that takes one of these collaborators annotates it with the protocol, not with the concrete class, so a
test double (tests/doubles/) or a new implementation fits by shape, and mypy checks both sides.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

# Only for annotations: ports.py imports nothing of lofi's at run time, so any module can import it.
if TYPE_CHECKING:
    from .backends.base import AudioChunkFn, GeneratedAudio, GenerationRequest, ProgressFn
    from .cache.index import Track
    from .cancel import CancelToken

# notify(method, params): sends one JSON-RPC notification to the client
Notify = Callable[[str, dict[str, Any]], None]
# progress(fields): download progress (file, bytes_downloaded, bytes_total, files_completed, files_total)
DownloadProgress = Callable[[dict[str, Any]], None]


class Backend(Protocol):
    """A generator: turns validated parameters into audio. The daemon owns everything around it (queue, cache,
    notifications); a backend only validates, loads, generates (reporting progress, honouring the cancel
    token) and unloads."""

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
        canonical, defaults-filled `params` dict. Raise LofiError with the protocol's error code on bad values
        (INVALID_DURATION is checked by the caller from min/max_duration_sec). It runs on the RPC dispatch
        thread, so it must be quick: a backend with a slower check adds an optional
        `check_request(request: GenerationRequest) -> None`, which the worker calls before loading the model
        (ACE-Step tokenises its lyrics there) and whose LofiError fails the job."""
        ...

    def model_version(self) -> str:
        """Identifies the weights/variant in use; part of the track identity."""
        ...

    def is_installed(self) -> bool:
        """True when every required model file is present locally (no network)."""
        ...

    def status(self) -> dict[str, Any]:
        """Backend description for `get_backends` (installed, variant, files, sizes, ...)."""
        ...

    def download(self, progress: DownloadProgress | None, cancel: CancelToken) -> None:
        """Fetch the model files (the caller has the user's consent). `progress` receives dicts with
        file, bytes_downloaded, bytes_total, files_completed, files_total; without one the backend sends
        `download_progress` notifications itself. Resumes partial files and checks sizes/hashes; raises
        LofiError(MODEL_DOWNLOAD_FAILED) on failure."""
        ...

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


@runtime_checkable
class ContinuingBackend(Backend, Protocol):
    """A backend that continues one stream window after window (the radio): each window starts from the last
    codes of the one before, and its audio follows the previous window's without a seam."""

    def continuation_windows(self) -> tuple[float, float]:
        """(seconds of the first window, seconds every next window adds)."""
        ...

    def start_continuation(self, params: Mapping[str, Any], seed: int) -> Any:
        """A new stream's state (validated `params`, as `validate` returns them). Holds no model: the backend
        may be unloaded and loaded again between windows."""
        ...

    def continue_window(
        self, state: Any, prompt: str, cancel: CancelToken, on_audio: AudioChunkFn
    ) -> dict[str, Any]:
        """Generate the next window of `state` with `prompt`, streaming its audio through `on_audio`; returns
        {index, context_frames, new_frames, seconds}. Call only while loaded, from the worker."""
        ...


class Store(Protocol):
    """The track cache as the worker and the player use it (cache/store.py `TrackStore`)."""

    # ids that eviction must keep (the player's current and queued tracks); set by the player
    protect: Callable[[], Iterable[str]] | None

    def get(self, track_id: str, *, touch: bool = False) -> Track | None: ...

    def require(self, track_id: str) -> Track: ...

    def list_tracks(
        self,
        *,
        limit: int | None = None,
        sort: str = "created",
        backend: str | None = None,
        query: str | None = None,
        favourite: bool | None = None,
    ) -> list[Track]: ...

    def read_audio(self, track_id: str) -> tuple[np.ndarray, int]: ...

    def put(
        self,
        track_id: str,
        audio: GeneratedAudio,
        *,
        request: GenerationRequest,
        model_version: str,
        generation_time_sec: float,
        fmt: str | None = None,
    ) -> Track: ...

    def mark_played(self, track_id: str) -> bool:
        """Count a play; False when the track is not in the cache (any more)."""
        ...

    def evict(self, keep: Iterable[str] = ()) -> list[str]: ...


class PlaybackSink(Protocol):
    """Where the worker sends audio while a streaming backend generates it (audio/player.py `Player`)."""

    def streaming(
        self, track_id: str, sample_rate: int, channels: int, duration_sec: float | None = None
    ) -> contextlib.AbstractContextManager[AudioChunkFn | None]:
        """`with sink.streaming(id, rate, ch, dur) as on_audio: backend.generate(..., on_audio=on_audio)`;
        on_audio is None when the sink does not want the audio (auto-play off)."""
        ...
