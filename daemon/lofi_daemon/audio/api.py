"""play, pause, resume, toggle, stop, skip, seek, volume, loop, crossfade, playlist_*, audio_devices,
audio_device_set and prefetch_config: thin handlers over the player and the prefetcher the daemon built."""

from __future__ import annotations

from typing import Any

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


def register(dispatcher: Dispatcher, *, player: Player, prefetch: Prefetcher) -> None:
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
