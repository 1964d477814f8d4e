"""The composition root: builds every part of the daemon, wires them together and registers the RPC methods.

`notify` is the one way anything reaches the client; local subscribers (prefetch, auto-play) see the same
notifications, so in-process reactions and the plugin can never disagree about what happened.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .audio import api as audio_api
from .backends import api as backends_api
from .backends import create_backends
from .cache import api as cache_api
from .cache.store import TrackStore
from .config import Settings
from .jobs import api as jobs_api
from .jobs.cancel import CancelToken
from .jobs.queue import JobQueue
from .jobs.worker import Worker
from .ports import Backend
from .rpc.dispatch import Dispatcher
from .rpc.schemas.core import InitializeParams

if TYPE_CHECKING:  # the player exists only with PortAudio; audio/api.py builds it
    from .audio.player import Player
    from .jobs.prefetch import Prefetcher

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
    "log",
]

Send = Callable[[str, dict[str, Any]], None]


class Daemon:
    def __init__(self, settings: Settings, send: Send | None = None, log_file: Path | None = None) -> None:
        self.settings = settings
        self.log_file = log_file
        self._send = send
        self._subscribers: dict[str, list[Callable[[dict[str, Any]], None]]] = defaultdict(list)
        self.started_at = time.time()
        self.last_activity = time.monotonic()
        self.stop_requested = threading.Event()
        self.downloads: dict[str, CancelToken] = {}
        self.dispatcher = Dispatcher()
        self.queue = JobQueue()
        self.backends: dict[str, Backend] = create_backends(settings, self.notify)
        self.store = TrackStore(settings.tracks_dir)
        self.worker = Worker(self.queue, self.backends, self.store, self.notify, settings.idle_unload_sec)
        self.player: Player | None = None
        self.prefetch: Prefetcher | None = None
        self._register()
        self.worker.player = self.player
        # The idle clock restarts when work ends, not only when a request arrives.
        for ended in ("generation_complete", "generation_error", "generation_cancelled", "playback_ended"):
            self.subscribe(ended, lambda _params: self.touch())

        def download_ended(p: dict[str, Any]) -> None:
            if p.get("state") != "downloading":
                self.touch()

        self.subscribe("download_progress", download_ended)

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
        for token in self.downloads.values():
            token.cancel()
        if self.player is not None:
            try:
                self.player.close()
            except Exception:
                log.exception("closing the player failed")
        self.worker.stop(timeout=30.0)
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
        playing = self.player is not None and getattr(self.player, "is_playing", False)
        return not self.queue.busy and not self.downloads and not playing

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
            },
            "playback": self.player.state() if self.player is not None else {"state": "stopped"},
            "loaded_backend": next((b.name for b in self.backends.values() if b.loaded), None),
            "downloading": sorted(self.downloads),
        }

    def _register(self) -> None:
        d = self.dispatcher

        @d.method("initialize", InitializeParams)
        def initialize(p: InitializeParams) -> dict[str, Any]:
            if p.client_info:
                log.info("client %s %s", p.client_info.name, p.client_info.version or "")
            if p.options:
                self.settings.apply_options(p.options.model_dump(exclude_none=True))
                self.apply_options(p.options.model_dump(exclude_none=True))
            return {
                "server": {"name": "lofi-daemon", "version": __version__},
                "protocol_version": PROTOCOL_VERSION,
                "capabilities": {"methods": d.method_names, "notifications": NOTIFICATIONS},
                "backends": [backends_api.backend_info(self, n) for n in self.backends],
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

        jobs_api.register(d, self)
        backends_api.register(d, self)
        cache_api.register(d, self)
        audio_api.register(d, self)

    def _use_store(self, store: TrackStore) -> None:
        old, self.store = self.store, store
        store.protect = old.protect  # the player's "never evict what is playing" rule
        self.worker.store = store
        if self.player is not None:
            self.player.store = store
        old.close()

    def apply_options(self, options: dict[str, Any]) -> None:
        """Options for subsystems other than Settings (cache limits, playback, prefetch)."""
        if self.settings.tracks_dir != self.store.root:  # `cache_dir` moved the cache
            self._use_store(TrackStore(self.settings.tracks_dir))
        cache = options.get("cache") or {}
        if cache:
            self.store.configure(
                **{k: v for k, v in cache.items() if k in ("max_mb", "max_tracks", "format")}
            )
        audio_api.apply_options(self, options)
