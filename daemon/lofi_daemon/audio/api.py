"""Playback, playlist, device and prefetch methods, and the wiring of the player into the daemon.

`register(dispatcher, daemon)` builds `daemon.player` (a Player on the default device) and `daemon.prefetch`
(a Prefetcher) unless the daemon already has them, subscribes them to the generation notifications and registers
the RPC methods.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..jobs.prefetch import Prefetcher
from ..rpc.dispatch import Dispatcher
from ..rpc.schemas.playback import (
    AudioDeviceSetParams,
    CrossfadeParams,
    LoopParams,
    PlaylistAddParams,
    PlaylistRemoveParams,
    PlayParams,
    PrefetchConfigParams,
    SeekParams,
    VolumeParams,
)
from .player import Player
from .player_lock import PlayerLock

if TYPE_CHECKING:
    from ..daemon import Daemon

log = logging.getLogger(__name__)


def make_enqueue(daemon: Daemon):
    """enqueue(request, priority="prefetch"): validate like `generate` and queue the job (no RPC involved)."""
    from ..backends.install import require_installed
    from ..jobs.api import build_job
    from ..rpc.schemas.generation import GenerateParams

    def enqueue(request: dict[str, Any], priority: str = "prefetch") -> dict[str, Any]:
        params = GenerateParams.model_validate(
            {k: v for k, v in request.items() if k != "priority" and v is not None}
        )
        job = build_job(daemon, params, priority)  # type: ignore[arg-type]
        cached = daemon.store.get(job.track_id)
        if cached is not None:  # already there: behave as if it had just been generated
            if daemon.player is not None:
                daemon.player.on_generation_complete({"track_id": job.track_id})
            return {"track_id": job.track_id, "status": "cached"}
        require_installed(daemon.backends[job.request.backend], allow_download=False)
        if daemon.queue.find(job.track_id) is None:
            daemon.queue.submit(job)
        return {"track_id": job.track_id, "status": "queued"}

    return enqueue


def attach(daemon: Daemon, player: Player | None = None, prefetch: Prefetcher | None = None) -> None:
    """Create (or adopt) the player and the prefetcher and connect them to the daemon's notifications."""
    if player is None:  # one player per machine and cache dir: see player_lock.py
        player = Player(daemon.store, daemon.notify, lock=PlayerLock(lambda: daemon.settings.cache_dir))
    daemon.player = player
    if prefetch is None:

        def track_info(track_id: str) -> dict[str, Any] | None:
            t = daemon.store.get(track_id)
            return t.to_dict() if t is not None else None

        prefetch = Prefetcher(
            make_enqueue(daemon),
            track_info=track_info,
            queue_busy=lambda: daemon.queue.busy,
            has_next=lambda: bool(player.mixer.upcoming),
            notify=daemon.notify,
        )
    daemon.prefetch = prefetch

    def more_coming() -> bool:
        """Will another track arrive? (Then the end of the playlist repeats the current track.)"""
        if prefetch.enabled or daemon.queue.has_waiting():
            return True
        running = daemon.queue.running
        # the worker announces generation_complete before it releases the job: that track is no longer coming
        return running is not None and running.track_id not in player.playlist

    player.more_coming = more_coming
    player.progress_listeners.append(prefetch.on_progress)
    daemon.subscribe("generation_started", player.on_generation_started)
    daemon.subscribe("generation_complete", player.on_generation_complete)


def register(dispatcher: Dispatcher, daemon: Daemon) -> None:
    if getattr(daemon, "player", None) is None:
        attach(daemon)
    player, prefetch = daemon.player, daemon.prefetch
    assert player is not None and prefetch is not None  # attach() set both

    @dispatcher.method("play", PlayParams)
    def play(p: PlayParams) -> dict[str, Any]:
        return player.play(p.track_id)

    @dispatcher.method("pause")
    def pause(_: None) -> dict[str, Any]:
        return player.pause()

    @dispatcher.method("resume")
    def resume(_: None) -> dict[str, Any]:
        return player.resume()

    @dispatcher.method("toggle")
    def toggle(_: None) -> dict[str, Any]:
        return player.toggle()

    @dispatcher.method("stop")
    def stop(_: None) -> dict[str, Any]:
        return player.stop()

    @dispatcher.method("skip")
    def skip(_: None) -> dict[str, Any]:
        return player.skip()

    @dispatcher.method("seek", SeekParams)
    def seek(p: SeekParams) -> dict[str, Any]:
        return player.seek(p.position_sec)

    @dispatcher.method("volume", VolumeParams)
    def volume(p: VolumeParams) -> dict[str, Any]:
        return player.set_volume(p.level)

    @dispatcher.method("loop", LoopParams)
    def loop(p: LoopParams) -> dict[str, Any]:
        return player.set_loop(p.mode) if p.mode is not None else player.state()

    @dispatcher.method("crossfade", CrossfadeParams)
    def crossfade(p: CrossfadeParams) -> dict[str, Any]:
        return player.set_crossfade(p.seconds) if p.seconds is not None else player.state()

    @dispatcher.method("playlist_get")
    def playlist_get(_: None) -> dict[str, Any]:
        return player.playlist_get()

    @dispatcher.method("playlist_add", PlaylistAddParams)
    def playlist_add(p: PlaylistAddParams) -> dict[str, Any]:
        return player.playlist_add(p.track_id, p.position)

    @dispatcher.method("playlist_remove", PlaylistRemoveParams)
    def playlist_remove(p: PlaylistRemoveParams) -> dict[str, Any]:
        return player.playlist_remove(p.track_id)

    @dispatcher.method("playlist_clear")
    def playlist_clear(_: None) -> dict[str, Any]:
        return player.playlist_clear()

    @dispatcher.method("audio_devices")
    def audio_devices(_: None) -> dict[str, Any]:
        return player.devices()

    @dispatcher.method("audio_device_set", AudioDeviceSetParams)
    def audio_device_set(p: AudioDeviceSetParams) -> dict[str, Any]:
        return player.set_device(p.device)

    @dispatcher.method("prefetch_config", PrefetchConfigParams)
    def prefetch_config(p: PrefetchConfigParams) -> dict[str, Any]:
        return prefetch.configure(**p.model_dump(exclude_none=True))
