"""The radio: one endless stream, generated window after window and played as it comes.

A session is a state machine over the player's live stream (audio/live.py):

    radio_start ─▶ buffering ─(can play through)─▶ playing ◀─(caught up)─▶ bridging ─▶ … ─▶ stopped
                                                              (fell behind: a cached track plays meanwhile)

Windows go through the one job queue as `task` jobs at "high" priority: a window is due in real time, so it
runs before queued `generate` jobs and prefetch (which is idle while the radio is on: the radio is the next music),
but it never interrupts a job already running; a user's `generate` runs between two windows. The session keeps
at most one window queued or running, and only while less than AHEAD_WINDOWS strides of audio are buffered ahead
of playback: a paused or stalled player stops generation, and memory stays bounded.

What a window is made of is decided when the worker starts it, not when it is queued: a `radio_steer` lands at
the next window to start, continuing from the current audio (the window re-reads the last codes), so the change is
a musical transition, not a cut. The plan's section and the energy follow stream time (music generated so far).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..audio.live import LiveStream
from ..audio.player import Player
from ..backends.api import resolve_backend
from ..backends.base import GeneratedAudio, GenerationRequest, track_id_for
from ..backends.install import require_installed
from ..cancel import CancelToken
from ..config import Settings
from ..errors import ErrorCode, LofiError
from ..jobs.api import check_prompt
from ..jobs.queue import Job, JobQueue
from ..ports import Backend, ContinuingBackend, Store
from ..rpc.schemas.radio import RadioStartParams, RadioSteerParams
from .energy import window_prompt
from .plans import PlanWalker, resolve_plan

log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], None]
AHEAD_WINDOWS = 2.0  # generate while less than this many strides are buffered ahead of playback


@dataclass
class _Session:
    radio_id: str
    token: str  # unique per session: saved windows of two radios never share an id
    backend: ContinuingBackend
    prompt: str
    params: dict[str, Any]
    seed: int
    plan: PlanWalker | None
    adaptive: bool
    save: bool
    live: LiveStream
    state: Any  # the backend's continuation state
    window_sec: float
    stride_sec: float
    energy: float | None = None  # the editor's, from radio_steer (adaptive)
    stream_sec: float = 0.0  # music generated so far: where the next window starts
    windows: int = 0
    job: Job | None = None  # the window queued or running
    last: dict[str, Any] | None = None
    over: bool = False


class Radio:
    def __init__(
        self,
        *,
        queue: JobQueue,
        backends: dict[str, Backend],
        settings: Settings,
        store: Store,
        player: Player,
        notify: Notify,
    ) -> None:
        self.queue = queue
        self.backends = backends
        self.settings = settings
        self.store = store
        self.player = player
        self.notify = notify
        self._lock = threading.Lock()  # guards the session; never held while calling the player or the queue
        self._session: _Session | None = None
        self._count = 0

    @property
    def on(self) -> bool:
        return self._session is not None

    # -- commands (rpc-dispatch thread) --------------------------------------------------------------------
    def start(self, p: RadioStartParams) -> dict[str, Any]:
        name = resolve_backend(self.backends, self.settings, p.backend or "musicgen")
        backend = self.backends[name]
        if not isinstance(backend, ContinuingBackend):
            remote = getattr(backend, "local", None) is not None  # remote/backend.py wraps the local one
            raise LofiError(
                ErrorCode.INVALID_BACKEND,
                f"the radio needs a local {name} that continues its own audio window after window; {name} runs "
                "on the remote generator, and the radio does not run remotely yet"
                if remote
                else f"the radio needs a backend that continues its own audio window after window (musicgen); "
                f"{name} cannot",
            )
        prompt = check_prompt(p.prompt)
        plan = resolve_plan(p.plan)
        params = backend.validate(p.backend_params)
        require_installed(backend, allow_download=False)
        seed = p.seed if p.seed is not None else secrets.randbelow(2**32)
        self.stop("replaced")
        window_sec, stride_sec = backend.continuation_windows()
        with self._lock:
            self._count += 1
            radio_id = f"radio-{self._count}"
        live = self.player.live_start(radio_id, backend.sample_rate, on_user_end=self._user_ended)
        session = _Session(
            radio_id=radio_id,
            token=secrets.token_hex(8),
            backend=backend,
            prompt=prompt,
            params=params,
            seed=seed,
            plan=PlanWalker(plan) if plan is not None else None,
            adaptive=p.adaptive,
            save=p.save,
            live=live,
            state=backend.start_continuation(params, seed),
            window_sec=window_sec,
            stride_sec=stride_sec,
        )
        with self._lock:
            self._session = session
        self.notify(
            "radio_started",
            {
                "radio_id": radio_id,
                "prompt": prompt,
                "plan": plan.name if plan else None,
                "adaptive": p.adaptive,
                "seed": seed,
            },
        )
        self.pump()
        return self.status()

    def stop(self, reason: str = "stopped") -> dict[str, Any]:
        """End the radio now: the window being generated is cancelled, the stream fades out (de-click)."""
        session = self._end(reason)
        if session is not None:
            self.player.live_stop()
        return {"stopped": session is not None, "radio_id": session.radio_id if session else None}

    def steer(self, p: RadioSteerParams) -> dict[str, Any]:
        prompt = check_prompt(p.prompt) if p.prompt is not None else None
        plan = resolve_plan(p.plan) if p.plan is not None else None
        with self._lock:
            s = self._session
            if s is None:
                raise LofiError(ErrorCode.INVALID_PARAMS, "the radio is off; start it with radio_start")
            if prompt is not None:
                s.prompt = prompt
            if plan is not None:
                s.plan = PlanWalker(plan, start=s.stream_sec)  # from its first section, at the next window
            if p.energy is not None:
                s.energy = float(p.energy)
        return self.status()

    def status(self) -> dict[str, Any]:
        with self._lock:
            s = self._session
            if s is None:
                return {"on": False}
            out = {
                "on": True,
                "radio_id": s.radio_id,
                "prompt": s.prompt,
                "plan": s.plan.plan.name if s.plan else None,
                "adaptive": s.adaptive,
                "energy": s.energy,
                "windows": s.windows,
                "stream_sec": round(s.stream_sec, 2),
                "last_window": s.last,
            }
        out.update(self.player.live_status() or {"state": "ending", "buffered_sec": 0.0})
        return out

    # -- the player (control thread) -------------------------------------------------------------------------
    def on_progress(self, _track_id: str, _position_sec: float, _duration_sec: float) -> None:
        """Playback moved on (a player progress listener): maybe the next window is due."""
        self.pump()

    def _user_ended(self) -> None:
        """The user stopped playback or played a track instead (called under the player lock: no player
        calls here; the player has already let the stream go)."""
        self._end("the user stopped playback")

    # -- windows ------------------------------------------------------------------------------------------------
    def pump(self) -> None:
        """Queue the next window if none is on its way and the buffer ahead is short."""
        with self._lock:
            s = self._session
            if s is None or s.over or s.job is not None:
                return
            if s.live.ahead_sec >= AHEAD_WINDOWS * s.stride_sec:
                return
            if s.plan is not None and s.plan.at(s.stream_sec) is None:
                ended = s
            else:
                ended = None
                index = s.windows
                seconds = s.window_sec if index == 0 else s.stride_sec
                request = GenerationRequest(s.backend.name, s.prompt, seconds, s.seed, s.params)
                job = Job(
                    f"{s.radio_id}-w{index}",
                    request,
                    priority="high",
                    task=_WindowTask(self, s, index),
                )
                s.job = job
        if ended is not None:
            self._end("the plan ended", play_out=True)
            return
        try:
            self.queue.submit(job)
        except LofiError as e:  # the queue is full of the user's jobs: try again at the next progress tick
            log.warning("radio window not queued: %s", e.message)
            with self._lock:
                if s.job is job:
                    s.job = None

    def _compose(self, s: _Session) -> tuple[str, dict[str, Any]]:
        """The prompt of the window that starts now (under the lock) and what it was made of."""
        placed = s.plan.at(s.stream_sec) if s.plan is not None else None
        section = placed[1] if placed else None
        prompt, energy = window_prompt(s.prompt, section, s.energy if s.adaptive else None)
        return prompt, {
            "section": section.role if section else None,
            "section_index": placed[0] if placed else None,
            "energy": energy,
        }

    def _window_done(self, s: _Session, info: dict[str, Any], audio: list[np.ndarray]) -> None:
        track_id = self._save(s, info, audio) if s.save else None
        with self._lock:
            if s.over:
                return
            s.job = None
            s.windows += 1
            s.stream_sec += float(info["seconds"])
            s.last = {**info, "track_id": track_id}
        self.notify("radio_window", {"radio_id": s.radio_id, **info, "track_id": track_id})
        self.pump()

    def _window_failed(self, s: _Session, error: LofiError | None) -> None:
        with self._lock:
            if s.job is not None:
                s.job = None
            current = self._session is s and not s.over
        if error is None or not current:
            return  # cancelled: stop() did it and said so
        self.notify("log", {"level": "error", "message": f"the radio stopped: {error.message}"})
        self.stop(f"error: {error.message}")

    def _save(self, s: _Session, info: dict[str, Any], audio: list[np.ndarray]) -> str | None:
        """The window's audio as a track of the cache (radio.save): ids from the stream and the window index."""
        if not audio:
            return None
        samples = np.concatenate(audio)
        request = GenerationRequest(
            s.backend.name, info["prompt"], len(samples) / s.backend.sample_rate, s.seed, s.params
        )
        version = s.backend.model_version()
        # a window is no request one could repeat: its id names the stream and the window (params stay clean)
        track_id = track_id_for(request, f"{version}+radio/{s.token}/{info['index']}")
        try:
            self.store.put(
                track_id,
                GeneratedAudio(
                    samples, s.backend.sample_rate, {"radio": s.radio_id, "window": info["index"]}
                ),
                request=request,
                model_version=version,
                generation_time_sec=0.0,
            )
        except LofiError as e:
            log.warning("radio window not saved: %s", e.message)
            return None
        return track_id

    def _end(self, reason: str, *, play_out: bool = False) -> _Session | None:
        with self._lock:
            s = self._session
            if s is None:
                return None
            self._session = None
            s.over = True
            job = s.job
            s.job = None
        if job is not None:
            self.queue.cancel(job.track_id)
        if play_out:
            s.live.end()
        self.notify("radio_stopped", {"radio_id": s.radio_id, "reason": reason, "windows": s.windows})
        return s


class _WindowTask:
    """One window, run by the worker with the backend resident."""

    def __init__(self, radio: Radio, session: _Session, index: int) -> None:
        self.radio, self.session, self.index = radio, session, index

    def run(self, backend: Backend, cancel: CancelToken) -> None:
        s, radio = self.session, self.radio
        with radio._lock:
            if s.over:
                return
            prompt, made_of = radio._compose(s)
        assert isinstance(backend, ContinuingBackend)
        seconds = s.window_sec if self.index == 0 else s.stride_sec
        s.live.begin_window(seconds)
        audio: list[np.ndarray] = []

        def on_audio(chunk: np.ndarray) -> None:
            s.live.push(chunk)
            if s.save:
                audio.append(chunk)

        info = backend.continue_window(s.state, prompt, cancel, on_audio)
        radio._window_done(s, {**info, "prompt": prompt, **made_of}, audio)

    def failed(self, error: LofiError | None) -> None:
        self.radio._window_failed(self.session, error)
