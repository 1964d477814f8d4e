"""The composition root: the one place that builds every part of the daemon, hands each its collaborators as
constructor arguments and registers the RPC methods (each `*/api.py` `register()` gets only what it uses).

`notify` is the one way anything reaches the client; local subscribers (auto-play, the idle clock) see the same
notifications, so in-process reactions and the plugin can never disagree about what happened. Generated audio
reaches the player on one path: chunks stream through the worker's `PlaybackSink` while a track is generated, and
every finished track (generated, or found in the cache by `generate` or prefetch) is announced with
`generation_complete`, to which the player subscribes.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .audio import api as audio_api
from .audio.player import Player
from .audio.player_lock import PlayerLock
from .backends import api as backends_api
from .backends import canonical_name, create_backends
from .cache import api as cache_api
from .cache.store import TrackStore
from .cancel import CancelToken
from .config import Settings
from .errors import ErrorCode, LofiError
from .jobs import api as jobs_api
from .jobs.prefetch import Prefetcher
from .jobs.queue import JobQueue
from .jobs.worker import Worker
from .ports import Backend
from .radio import api as radio_api
from .radio.session import Radio
from .remote.link import RemoteLink
from .remote.wiring import apply_generator
from .rpc.dispatch import Dispatcher
from .rpc.schemas.core import InitializeParams
from .rpc.schemas.options import InitializeOptions, PlaybackOptions

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
NOTIFICATIONS = [
    "generation_started",
    "generation_progress",
    "generation_complete",
    "generation_error",
    "generation_cancelled",
    "download_progress",
    "playback_started",
    "playback_paused",
    "playback_resumed",
    "playback_ended",
    "playback_position",
    "radio_started",
    "radio_window",
    "radio_stopped",
    "log",
]

Send = Callable[[str, dict[str, Any]], None]


class Daemon:
    def __init__(
        self,
        settings: Settings,
        send: Send | None = None,
        log_file: Path | None = None,
        *,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        """`send` writes a notification to the client; `dispatcher` is the one the transport reads requests into
        (serve.py builds it first, so the server gets it at construction)."""
        self.settings = settings
        self.log_file = log_file
        self._send = send
        self._subscribers: dict[str, list[Callable[[dict[str, Any]], None]]] = defaultdict(list)
        self.started_at = time.time()
        self.last_activity = time.monotonic()
        self.stop_requested = threading.Event()
        self.downloads: dict[str, CancelToken] = {}
        self.dispatcher = dispatcher if dispatcher is not None else Dispatcher()
        self.queue = JobQueue()
        # eviction never removes what the player holds (asked at eviction time; the player is built below)
        self.store = TrackStore(settings.tracks_dir, protect=self._player_holds)
        # backends with editing tasks (ACE-Step) read their source tracks from the store
        self.backends: dict[str, Backend] = create_backends(settings, self.notify, tracks=self.store)
        # backends that run on a remote generator are wrapped in place (remote/); the rest stay local
        self.generator: RemoteLink | None = apply_generator(
            self.backends, settings.generator, self.notify, None
        )
        self.prefetch = Prefetcher(
            jobs_api.make_enqueue(self.backends, settings, self.store, self.queue, self.notify),
            track_info=self._track_info,
            queue_busy=self._prefetch_waits,
            has_next=self._player_has_next,
            notify=self.notify,
        )
        # one player per machine and cache dir: see player_lock.py
        self.player = Player(
            self.store,
            self.notify,
            lock=PlayerLock(lambda: settings.cache_dir),
            more_coming=self._more_coming,
            progress_listeners=[self.prefetch.on_progress, self._radio_progress],
        )
        self.worker = Worker(
            self.queue, self.backends, self.store, self.notify, settings.idle_unload_sec, player=self.player
        )
        self.radio = Radio(
            queue=self.queue,
            backends=self.backends,
            settings=settings,
            store=self.store,
            player=self.player,
            notify=self.notify,
        )
        self.subscribe("generation_started", self.player.on_generation_started)
        self.subscribe("generation_complete", self.player.on_generation_complete)
        self._register()
        # The idle clock restarts when work ends, not only when a request arrives.
        for ended in ("generation_complete", "generation_error", "generation_cancelled", "playback_ended"):
            self.subscribe(ended, lambda _params: self.touch())

        def download_ended(p: dict[str, Any]) -> None:
            if p.get("state") != "downloading":
                self.touch()

        self.subscribe("download_progress", download_ended)

    # -- what the parts ask of each other (bound here, where all of them exist) -------------------------
    def _player_holds(self) -> list[str]:
        return self.player.protected_ids()

    def _player_has_next(self) -> bool:
        return self.player.has_next()

    def _prefetch_waits(self) -> bool:
        """Prefetch waits while a job is on its way, and while the radio is on (it is the next music)."""
        return self.queue.busy or self.radio.on

    def _radio_progress(self, track_id: str, position_sec: float, duration_sec: float) -> None:
        self.radio.on_progress(track_id, position_sec, duration_sec)

    def _track_info(self, track_id: str) -> dict[str, Any] | None:
        track = self.store.get(track_id)
        return track.to_dict() if track is not None else None

    def _more_coming(self) -> bool:
        """Will another track arrive? (Then the end of the playlist repeats the current track.)"""
        if self.prefetch.enabled or self.queue.has_waiting():
            return True
        running = self.queue.running
        # the worker announces generation_complete before it releases the job: that track is no longer coming
        return running is not None and not self.player.holds(running.track_id)

    # -- notifications -----------------------------------------------------------------------------
    def notify(self, method: str, params: dict[str, Any]) -> None:
        if self._send is not None:
            self._send(method, params)
        for fn in list(self._subscribers.get(method, ())):
            try:
                fn(params)
            except Exception:
                log.exception("subscriber of %s failed", method)

    def subscribe(self, method: str, fn: Callable[[dict[str, Any]], None]) -> None:
        self._subscribers[method].append(fn)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.worker.start()

    def close(self) -> None:
        self.intake.drop(
            LofiError(
                ErrorCode.CANCELLED,
                "the daemon is stopping: cancelled while the remote generator was connecting",
            )
        )
        for token in self.downloads.values():
            token.cancel()
        try:
            self.radio.stop("the daemon is closing")
        except Exception:
            log.exception("stopping the radio failed")
        try:
            self.player.close()
        except Exception:
            log.exception("closing the player failed")
        self.worker.stop(timeout=30.0)
        if self.generator is not None:
            self.generator.close()
        if not self.worker.alive:  # never pull a session out from under a running step
            for backend in self.backends.values():
                if backend.loaded:
                    backend.unload()

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def idle_seconds(self) -> float:
        """Seconds since the last request or the end of the last job, playback or download (0 while busy)."""
        if not self.is_idle():
            self.touch()
            return 0.0
        return time.monotonic() - self.last_activity

    def is_idle(self) -> bool:
        return (
            not self.queue.busy
            and not self.intake.busy
            and not self.downloads
            and not self.player.is_playing
            and not self.radio.on
        )

    def status(self) -> dict[str, Any]:
        running = self.queue.running
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_sec": round(time.time() - self.started_at, 1),
            "log_file": str(self.log_file) if self.log_file else None,
            "cache_dir": str(self.settings.cache_dir),
            "queue": {
                "running": None if running is None else {**running.summary(), "percent": running.percent},
                "waiting": len(self.queue.waiting()),
                "connecting": len(self.intake.waiting()),
            },
            "playback": self.player.state(),
            "loaded_backend": next((b.name for b in self.backends.values() if b.loaded), None),
            "downloading": sorted(self.downloads),
            "generator": None if self.generator is None else self.generator.status(),
        }

    def _register(self) -> None:
        d = self.dispatcher

        @d.method("initialize", InitializeParams)
        def initialize(p: InitializeParams) -> dict[str, Any]:
            if p.client_info:
                log.info("client %s %s", p.client_info.name, p.client_info.version or "")
            applied = self.apply_options(p.options) if p.options else {}
            return {
                **applied,
                "server": {"name": "lofi-daemon", "version": __version__},
                "protocol_version": PROTOCOL_VERSION,
                "capabilities": {"methods": d.method_names, "notifications": NOTIFICATIONS},
                "backends": [
                    backends_api.backend_info(self.backends, self.downloads, n) for n in self.backends
                ],
                "default_backend": self.settings.default_backend,
                "log_file": str(self.log_file) if self.log_file else None,
                "cache_dir": str(self.settings.cache_dir),
            }

        @d.method("ping")
        def ping(_: None) -> dict[str, Any]:
            return {"pong": True, "time": time.time()}

        @d.method("status")
        def status(_: None) -> dict[str, Any]:
            return self.status()

        @d.method("shutdown")
        def shutdown(_: None) -> dict[str, Any]:
            d.after_response(self.stop_requested.set)
            return {"ok": True}

        self.intake = jobs_api.register(
            d,
            backends=self.backends,
            settings=self.settings,
            store=self.store,
            queue=self.queue,
            notify=self.notify,
        )
        backends_api.register(
            d, backends=self.backends, settings=self.settings, downloads=self.downloads, notify=self.notify
        )
        cache_api.register(d, store=self.store, player=self.player)
        audio_api.register(d, player=self.player, prefetch=self.prefetch)
        radio_api.register(d, radio=self.radio)

    def _check_options(self, options: InitializeOptions) -> None:
        """What the schema cannot know: the backend names this daemon has."""
        names = ([options.default_backend] if options.default_backend else []) + list(options.models or {})
        if options.generator is not None:
            names += options.generator.backends or []
        for name in names:
            if canonical_name(name) not in self.backends:
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"invalid params for initialize: unknown backend {name!r}; "
                    f"available: {', '.join(sorted(self.backends))}",
                )

    def apply_options(self, options: InitializeOptions) -> dict[str, Any]:
        """Apply `initialize` options as a whole: everything that can fail is checked (schema, backend names, the
        new cache directory) before anything changes, so a refused call leaves the daemon as it was.

        Returns the part of the reply that reports on them (`cache.would_evict`: tracks the new limits would
        remove at the next eviction; a shrink never deletes anything at once)."""
        self._check_options(options)
        if options.default_backend:
            options = options.model_copy(update={"default_backend": canonical_name(options.default_backend)})
        if options.models:
            models = {canonical_name(n): m for n, m in options.models.items()}
            options = options.model_copy(update={"models": models})
        if options.generator is not None and options.generator.backends:
            names = [canonical_name(n) for n in options.generator.backends]
            options = options.model_copy(
                update={"generator": options.generator.model_copy(update={"backends": names})}
            )
        candidate = copy.deepcopy(self.settings)
        candidate.apply_options(options)
        new_store = None
        if candidate.tracks_dir != self.store.root:  # `cache_dir` moves the cache; opening it may fail
            new_store = TrackStore(
                candidate.tracks_dir, self.store.max_mb, self.store.max_tracks, self.store.fmt
            )
        # ---- nothing below can fail on validated values
        self.settings.apply_options(options)
        if new_store is not None:
            self.store.adopt(new_store)  # the same store object moves: everyone holding it follows
        reply: dict[str, Any] = {}
        c = options.cache
        would_evict = self.store.configure(
            max_mb=c.max_mb if c else None,
            max_tracks=c.max_tracks if c else None,
            format=c.format if c else None,
        )
        reply["cache"] = {
            "max_mb": self.store.max_mb,
            "max_tracks": self.store.max_tracks,
            "would_evict": would_evict,
        }
        if would_evict:
            message = (
                f"the cache limit (max_mb {self.store.max_mb:g}, max_tracks {self.store.max_tracks}) is below "
                f"what is cached: the next generation removes the {would_evict} least recently used "
                "track(s); favourites are kept"
            )
            log.warning("%s", message)
            self.dispatcher.after_response(
                lambda: self.notify("log", {"level": "warning", "message": message})
            )
        if options.playback is not None:
            self._apply_playback(options.playback)
        if options.prefetch is not None:
            self.prefetch.configure(**options.prefetch.model_dump(exclude_none=True))
        if options.generator is not None:
            self.generator = apply_generator(
                self.backends, self.settings.generator, self.notify, self.generator
            )
        return reply

    def _apply_playback(self, pb: PlaybackOptions) -> None:
        player = self.player
        if pb.volume is not None:
            player.set_volume(pb.volume)
        if pb.crossfade_sec is not None:
            player.set_crossfade(pb.crossfade_sec)
        if pb.loop is not None:
            player.set_loop(pb.loop)
        if pb.auto_play is not None:
            player.auto_play = pb.auto_play
        if pb.stream is not None:
            player.stream_while_generating = pb.stream
        if pb.device is not None:
            try:
                player.set_device(pb.device)
            except LofiError as e:  # a device that is not plugged in now is not a configuration error
                warning = {"level": "warning", "message": e.message}
                self.dispatcher.after_response(lambda: self.notify("log", warning))
