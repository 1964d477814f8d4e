"""Prefetch: prepare the next track while this one plays, so the music never stops.

The player calls `on_progress(track_id, position_sec, duration_sec)` from its control thread. Once per played
track, when it passes `trigger_percent` and nothing is queued or running and no next track is already waiting in
the playlist, one generation is enqueued at `prefetch` priority (below every user job). The prompt comes from the
strategy: `same_prompt` (the current track's prompt and settings, new seed), `preset_cycle` (presets in order,
the order kept across tracks) or `random_preset` (never the same preset twice in a row).
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ErrorCode, LofiError

log = logging.getLogger(__name__)

STRATEGIES = ("same_prompt", "preset_cycle", "random_preset")
DEFAULT_PRESETS = [
    "lofi hip hop beat, mellow rhodes piano, vinyl crackle, soft boom bap drums, 75 bpm",
    "chill lofi study beat, warm jazzy guitar chords, lazy swing drums, rain ambience",
    "late night lofi, dreamy synth pads, muted bass, tape hiss, slow tempo",
    "lofi jazz, brushed drums, upright bass, soft saxophone melody, cozy cafe",
    "calm lofi beat, kalimba melody, gentle vinyl noise, deep sub bass, 70 bpm",
    "nostalgic lofi, detuned piano, crunchy snare, warm analog saturation",
    "ambient lofi, soft electric piano, distant birds, relaxed groove",
    "rainy day lofi, melancholic guitar, dusty drums, warm bass line, 80 bpm",
]

# enqueue(request, priority="prefetch") -> anything; request = {prompt, backend?, duration_sec?, seed, ...params}
Enqueue = Callable[..., Any]


@dataclass
class PrefetchConfig:
    enabled: bool = True
    strategy: str = "same_prompt"
    presets: list[str] = field(default_factory=lambda: list(DEFAULT_PRESETS))
    trigger_percent: float = 50.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def warn_not_queued(error: LofiError, notify: Callable[[str, dict[str, Any]], None] | None) -> None:
    """A prefetch that could not be queued: logged, and told to the user as a warning."""
    log.warning("prefetch not queued: %s", error.message)
    if notify:
        notify("log", {"level": "warning", "message": f"prefetch not queued: {error.message}"})


class Prefetcher:
    def __init__(
        self,
        enqueue: Enqueue,
        *,
        track_info: Callable[[str], dict[str, Any] | None],
        queue_busy: Callable[[], bool],
        has_next: Callable[[], bool],
        notify: Callable[[str, dict[str, Any]], None] | None = None,
        config: PrefetchConfig | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.enqueue = enqueue
        self.track_info = track_info
        self.queue_busy = queue_busy
        self.has_next = has_next
        self.notify = notify
        self.config = config or PrefetchConfig()
        self.rng = rng or random.Random()
        self._lock = threading.Lock()
        self._done_for: str | None = None  # the track (play) a prefetch was already queued for
        self._cycle = 0
        self._last_preset: str | None = None
        self.history: list[dict[str, Any]] = []  # requests enqueued, newest last (status and tests)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def configure(
        self,
        enabled: bool | None = None,
        strategy: str | None = None,
        presets: list[str] | None = None,
        trigger_percent: float | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            if strategy is not None:
                if strategy not in STRATEGIES:
                    raise LofiError(ErrorCode.INVALID_PARAMS, f"strategy must be one of {list(STRATEGIES)}")
                self.config.strategy = strategy
            if presets is not None:
                cleaned = [p.strip() for p in presets if p and p.strip()]
                if not cleaned:
                    raise LofiError(ErrorCode.INVALID_PARAMS, "presets must contain at least one prompt")
                self.config.presets = cleaned
                self._cycle = 0
            if trigger_percent is not None:
                if not 0 <= trigger_percent <= 100:
                    raise LofiError(ErrorCode.INVALID_PARAMS, "trigger_percent must be within 0–100")
                self.config.trigger_percent = float(trigger_percent)
            if enabled is not None:
                self.config.enabled = bool(enabled)
            return self.config.to_dict()

    def on_progress(self, track_id: str, position_sec: float, duration_sec: float) -> None:
        if not self.config.enabled or duration_sec <= 0:
            return
        if 100.0 * position_sec / duration_sec < self.config.trigger_percent:
            with self._lock:
                if self._done_for == track_id:
                    self._done_for = None  # the track started again (loop, replay): re-arm
            return
        with self._lock:
            if self._done_for == track_id:
                return
        if self.queue_busy() or self.has_next():
            return  # something is already on its way
        current = self.track_info(track_id)
        if current is None:
            return
        with self._lock:
            if self._done_for == track_id:
                return
            request = self._next_request(current)
            self._done_for = track_id
        try:
            reply = self.enqueue(request, priority="prefetch")
        except LofiError as e:
            warn_not_queued(e, self.notify)
            return
        self.history.append(request)
        status = reply.get("status", "queued") if isinstance(reply, dict) else "queued"
        log.info("prefetch %s (%s): %s", status, self.config.strategy, request["prompt"])

    def _next_request(self, current: dict[str, Any]) -> dict[str, Any]:
        strategy = self.config.strategy
        seed = secrets.randbelow(2**32)
        base = {"backend": current.get("backend"), "seed": seed}
        if current.get("duration_sec"):
            base["duration_sec"] = float(round(current["duration_sec"]))
        if strategy == "same_prompt":
            return {**base, **(current.get("params") or {}), "prompt": current["prompt"], "seed": seed}
        presets = self.config.presets
        if strategy == "preset_cycle":
            prompt = presets[self._cycle % len(presets)]
            self._cycle += 1
        else:
            choices = [p for p in presets if p != self._last_preset] or presets
            prompt = self.rng.choice(choices)
        self._last_preset = prompt
        return {**base, "prompt": prompt}
