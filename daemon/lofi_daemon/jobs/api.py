"""generate, cancel, queue_status, queue_clear, and `make_enqueue` (the same intake for prefetch)."""

from __future__ import annotations

import logging
import queue as queue_module
import secrets
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..backends import shaping
from ..backends.api import resolve_backend
from ..backends.base import GenerationRequest, track_id_for
from ..backends.install import require_installed
from ..cancel import CancelToken
from ..config import Settings
from ..errors import Cancelled, ErrorCode, LofiError
from ..ports import Backend, Store
from ..rpc.dispatch import Dispatcher, Reply
from ..rpc.schemas.generation import MAX_SEED, GenerateParams, QueueClearParams, TrackIdParams
from .prefetch import warn_not_queued
from .queue import Job, JobQueue, Priority
from .worker import complete_payload

log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], None]

MAX_PROMPT_CHARS = 1000

# the answer to a `generate` still waiting for the remote generator's handshake when the queue is cleared
CANCELLED_CONNECTING = LofiError(
    ErrorCode.CANCELLED,
    "cancelled (queue_clear) while the remote generator was connecting; nothing was queued",
)


def _visible(ch: str) -> bool:
    """Not a control, format (zero-width), surrogate, private or unassigned code point, nor a space."""
    return unicodedata.category(ch)[0] not in "CZ"


def check_prompt(raw: str) -> str:
    prompt = raw.strip()
    if not prompt:
        raise LofiError(ErrorCode.INVALID_PROMPT, "the prompt is empty")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise LofiError(
            ErrorCode.INVALID_PROMPT,
            f"the prompt has {len(prompt)} characters; the limit is {MAX_PROMPT_CHARS}",
        )
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:  # JSON can carry a lone surrogate ("\ud800"), which is no text at all
        raise LofiError(
            ErrorCode.INVALID_PROMPT, "the prompt is not valid Unicode (a lone surrogate)"
        ) from None
    if not any(_visible(ch) for ch in prompt):
        raise LofiError(ErrorCode.INVALID_PROMPT, "the prompt has no visible characters")
    return prompt


def with_preset(preset: str | None, prompt: str) -> str:
    """A preset's tags, then the user's words (presets.json is shared with lofi-lora's training prompts)."""
    if preset is None:
        return prompt
    from .. import presets

    try:
        tags = presets.get(preset).prompt
    except KeyError as e:
        raise LofiError(ErrorCode.INVALID_PROMPT, e.args[0], preset=preset) from None
    return f"{tags}, {prompt.strip()}" if prompt.strip() else tags


def build_job(backends: dict[str, Backend], settings: Settings, p: GenerateParams, priority: Priority) -> Job:
    """Validate a generate request into a Job (nothing is queued yet). Raises LofiError with product codes."""
    request = build_request(backends, settings, p)
    return job_for(backends[request.backend], request, p, priority)


def build_request(backends: dict[str, Backend], settings: Settings, p: GenerateParams) -> GenerationRequest:
    """The validated request, with its seed drawn (quick: no model, no network). Raises LofiError."""
    name = resolve_backend(backends, settings, p.backend)
    backend = backends[name]
    prompt = check_prompt(with_preset(p.preset, p.prompt))
    duration = float(p.duration_sec if p.duration_sec is not None else backend.default_duration_sec)
    if not backend.min_duration_sec <= duration <= backend.max_duration_sec:
        raise LofiError(
            ErrorCode.INVALID_DURATION,
            f"duration {duration:g} s is outside {backend.min_duration_sec:g}–{backend.max_duration_sec:g} s "
            f"for {name}",
            min_duration_sec=backend.min_duration_sec,
            max_duration_sec=backend.max_duration_sec,
        )
    params = {**backend.validate(p.backend_params), **shaping.from_request(p.loop, p.bpm)}
    seed = p.seed if p.seed is not None else secrets.randbelow(MAX_SEED + 1)
    return GenerationRequest(backend=name, prompt=prompt, duration_sec=duration, seed=seed, params=params)


def job_for(backend: Backend, request: GenerationRequest, p: GenerateParams, priority: Priority) -> Job:
    """The request's Job: its track id needs the backend's model version (a remote backend's may wait for the
    link's handshake)."""
    try:
        track_id = track_id_for(request, backend.model_version())
    except UnicodeEncodeError:  # a lone surrogate in a text param (lyrics, lora)
        raise LofiError(
            ErrorCode.INVALID_PARAMS, "a text param is not valid Unicode (a lone surrogate)"
        ) from None
    return Job(track_id, request, priority=priority, fmt=p.format, allow_download=p.allow_download)


def identity_waits(backend: Backend) -> bool:
    """True when the backend's model version (the track identity) is not known yet: a remote generator whose
    link is still connecting (RemoteBackend.identity_waits)."""
    waits = getattr(backend, "identity_waits", None)
    return bool(waits()) if waits is not None else False


Accepted = tuple[dict[str, Any], Callable[[], None] | None]  # the reply, and what to send once it is out


@dataclass(eq=False)
class Connecting:
    """A `generate` waiting in the intake for its track identity (the remote generator's handshake)."""

    request: GenerationRequest
    params: GenerateParams
    reply: Reply
    cancel: CancelToken = field(default_factory=CancelToken)

    def summary(self) -> dict[str, Any]:
        r = self.request
        return {
            "prompt": r.prompt,
            "backend": r.backend,
            "duration_sec": r.duration_sec,
            "seed": r.seed,
            "priority": self.params.priority,
        }


class Intake:
    """Finishes `generate` requests off the RPC dispatch thread, one at a time in arrival order, and answers each
    when it is done. Used while a request's track identity must wait (a remote generator still connecting), so
    `status`, `cancel` and `stop` are answered meanwhile; while any request waits here, later ones queue behind
    it, so queue positions still follow the order the requests were sent. `queue_status` lists the waiting ones
    and `queue_clear` (or the daemon closing) drops them (`drop`)."""

    def __init__(
        self, identify: Callable[[Connecting], Job], place: Callable[[Job, GenerateParams], Accepted]
    ):
        self._identify = identify  # the slow part (waits for the handshake; honours the entry's cancel)
        self._place = place  # the quick part (cache lookup, queue); runs under the lock, see drop
        self._work: queue_module.Queue[Connecting] = queue_module.Queue()
        self._lock = threading.Lock()
        self._waiting: list[Connecting] = []  # submitted, not answered yet
        self._pending = 0  # submitted, not finished by the intake thread yet
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._pending > 0

    def waiting(self) -> list[Connecting]:
        with self._lock:
            return list(self._waiting)

    def submit(self, request: GenerationRequest, params: GenerateParams, reply: Reply) -> None:
        entry = Connecting(request, params, reply)
        with self._lock:
            self._pending += 1
            self._waiting.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="generate-intake", daemon=True)
                self._thread.start()
        self._work.put(entry)

    def drop(self, error: LofiError) -> list[Connecting]:
        """Answer the waiting requests with `error` instead of queueing them. A request the intake is placing
        right now is not among them: it is in the queue when this returns (placing holds the lock), so a
        `queue.clear()` after this removes it. (A generate is never prefetch priority: all go.)"""
        with self._lock:
            dropped, self._waiting = self._waiting, []
        for entry in dropped:
            entry.cancel.cancel()  # the one waiting for the handshake stops within a poll interval
            entry.reply.error(error)
        return dropped

    def _run(self) -> None:
        while True:
            entry = self._work.get()
            try:
                self._finish(entry)
            finally:
                with self._lock:
                    self._pending -= 1

    def _finish(self, entry: Connecting) -> None:
        outcome: Accepted | LofiError
        claimed = False
        try:
            job = self._identify(entry)
        except Cancelled:
            return  # dropped: drop() has answered it
        except LofiError as exc:
            outcome = exc
        except Exception as exc:  # a bug must not end the intake: every later generate would hang
            log.exception("generate failed")
            outcome = LofiError(ErrorCode.INTERNAL_ERROR, f"internal error in generate: {exc}")
        else:
            with self._lock:
                if entry not in self._waiting:
                    return  # dropped while it was identified
                self._waiting.remove(entry)
                claimed = True
                try:
                    outcome = self._place(job, entry.params)
                except LofiError as exc:
                    outcome = exc
                except Exception as exc:
                    log.exception("generate failed")
                    outcome = LofiError(ErrorCode.INTERNAL_ERROR, f"internal error in generate: {exc}")
        if not claimed:
            with self._lock:
                if entry not in self._waiting:
                    return  # dropped meanwhile: answered already
                self._waiting.remove(entry)
        if isinstance(outcome, LofiError):
            entry.reply.error(outcome)
            return
        result, after = outcome
        entry.reply.result(result)
        if after is not None:
            try:
                after()
            except Exception:
                log.exception("after-reply action failed")


def make_enqueue(
    backends: dict[str, Backend], settings: Settings, store: Store, queue: JobQueue, notify: Notify
) -> Callable[..., dict[str, Any]]:
    """enqueue(request, priority="prefetch"): validate like `generate` and queue the job (no RPC involved). A
    track already cached is announced with `generation_complete`, exactly as if it had just been generated, so
    the player learns of it the one way it learns of every finished track.

    It never waits for a remote generator's handshake: prefetch calls it from the player's control thread, which
    also feeds streamed tracks and starts the next one, so a link still (re)connecting would have held the music
    for up to `connect_timeout_sec`. Such a request is finished on a thread of its own (status "connecting")."""

    def place(job: Job) -> dict[str, Any]:
        cached = store.get(job.track_id)
        if cached is not None:
            notify("generation_complete", complete_payload(cached, 0.0, cached=True))
            return {"track_id": job.track_id, "status": "cached"}
        require_installed(backends[job.request.backend], allow_download=False)
        if queue.find(job.track_id) is None:
            queue.submit(job)
        return {"track_id": job.track_id, "status": "queued"}

    def place_when_identified(request: GenerationRequest, params: GenerateParams, priority: Priority) -> None:
        backend = backends[request.backend]
        try:
            wait_identity(backend, CancelToken())  # bounded by the link's connect timeout
            place(job_for(backend, request, params, priority))
        except LofiError as exc:
            warn_not_queued(exc, notify)
        except Exception:  # a thread of its own: nothing above it would log this
            log.exception("prefetch failed")

    def enqueue(request: dict[str, Any], priority: Priority = "prefetch") -> dict[str, Any]:
        params = GenerateParams.model_validate(
            {k: v for k, v in request.items() if k != "priority" and v is not None}
        )
        checked = build_request(backends, settings, params)
        backend = backends[checked.backend]
        if identity_waits(backend):
            threading.Thread(
                target=place_when_identified,
                args=(checked, params, priority),
                name="prefetch-identify",
                daemon=True,
            ).start()
            return {"track_id": None, "status": "connecting"}
        return place(job_for(backend, checked, params, priority))

    return enqueue


def wait_identity(backend: Backend, cancel: CancelToken) -> None:
    """Wait until the backend knows the track identity: a remote generator's handshake (RemoteBackend); at once
    for every other backend. Cancelled once `cancel` is set."""
    wait = getattr(backend, "wait_identity", None)
    if wait is not None:
        wait(cancel)


def register(
    dispatcher: Dispatcher,
    *,
    backends: dict[str, Backend],
    settings: Settings,
    store: Store,
    queue: JobQueue,
    notify: Notify,
) -> Intake:
    """The generation methods; returns the intake, which the daemon drops (answers) when it closes."""

    def identify(entry: Connecting) -> Job:
        """The request's Job, once its backend knows the track identity (waiting for it honours `entry.cancel`)."""
        backend = backends[entry.request.backend]
        wait_identity(backend, entry.cancel)
        return job_for(backend, entry.request, entry.params, entry.params.priority)

    def place(job: Job, p: GenerateParams) -> Accepted:
        """Look up and queue an identified job: (the reply, what to announce once it is sent)."""
        reply = {"track_id": job.track_id, "seed": job.request.seed, "backend": job.request.backend}
        track = store.get(job.track_id, touch=True)  # a cache hit counts as use for LRU eviction
        if track is not None:
            cached = {**reply, "status": "cached", "position": 0, "path": track.to_dict()["path"]}
            return cached, lambda: notify("generation_complete", complete_payload(track, 0.0, cached=True))
        existing = queue.find(job.track_id)
        if existing is not None:
            status = "running" if existing is queue.running else "queued"
            return {**reply, "status": status, "position": queue.position(existing)}, None
        require_installed(backends[job.request.backend], job.allow_download)
        position = queue.submit(job)
        return {**reply, "status": "queued", "position": position}, None

    intake = Intake(identify, place)

    @dispatcher.method("generate", GenerateParams)
    def generate(p: GenerateParams) -> dict[str, Any] | Reply:
        request = build_request(backends, settings, p)  # bad params are answered at once
        if intake.busy or identity_waits(backends[request.backend]):
            later = dispatcher.defer()
            if later is not None:  # (in a batch the answer must come now: it waits here, as it used to)
                intake.submit(request, p, later)
                return later
        result, after = place(job_for(backends[request.backend], request, p, p.priority), p)
        if after is not None:
            dispatcher.after_response(after)
        return result

    @dispatcher.method("cancel", TrackIdParams)
    def cancel(p: TrackIdParams) -> dict[str, Any]:
        where = queue.cancel(p.track_id)
        if where is None:
            raise LofiError(ErrorCode.TRACK_NOT_FOUND, f"no queued or running job for track {p.track_id}")
        if where == "waiting":
            dispatcher.after_response(lambda: notify("generation_cancelled", {"track_id": p.track_id}))
        return {"track_id": p.track_id, "cancelled": True, "was_running": where == "running"}

    @dispatcher.method("queue_status")
    def queue_status(_: None) -> dict[str, Any]:
        running = queue.running
        waiting = queue.waiting()
        offset = 1 if running else 0
        return {
            "running": None if running is None else {**running.summary(), "percent": running.percent},
            "waiting": [{**j.summary(), "position": i + offset} for i, j in enumerate(waiting)],
            "max_waiting": queue.max_waiting,
            "prefetch_pending": any(j.priority == "prefetch" for j in waiting),
            "connecting": [e.summary() for e in intake.waiting()],
        }

    @dispatcher.method("queue_clear", QueueClearParams)
    def queue_clear(p: QueueClearParams) -> dict[str, Any]:
        # the intake first: a request it is placing right now is in the queue once drop returns
        dropped = intake.drop(CANCELLED_CONNECTING)
        removed = queue.clear(include_prefetch=p.include_prefetch)

        def announce() -> None:
            for job in removed:
                notify("generation_cancelled", {"track_id": job.track_id})

        dispatcher.after_response(announce)
        return {
            "removed": len(removed),
            "track_ids": [j.track_id for j in removed],
            "connecting": len(dropped),
        }

    return intake
