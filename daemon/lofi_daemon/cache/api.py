"""cache_list, cache_delete, cache_clear, cache_stats, cache_favourite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, LofiError
from ..rpc.dispatch import Dispatcher
from ..rpc.schemas.cache import CacheClearParams, CacheFavouriteParams, CacheListParams, CacheTrackParams

if TYPE_CHECKING:
    from ..daemon import Daemon


def register(dispatcher: Dispatcher, daemon: Daemon) -> None:
    # Handlers read daemon.store each time: `initialize` may move the cache to another directory.
    @dispatcher.method("cache_list", CacheListParams)
    def cache_list(p: CacheListParams) -> dict[str, Any]:
        tracks = daemon.store.list_tracks(
            limit=p.limit, sort=p.sort, backend=p.backend, query=p.query, favourite=p.favourite
        )
        return {"tracks": [t.to_dict() for t in tracks]}

    @dispatcher.method("cache_delete", CacheTrackParams)
    def cache_delete(p: CacheTrackParams) -> dict[str, Any]:
        player = daemon.player
        if player is not None and player.mixer.track_id == p.track_id:
            raise LofiError(
                ErrorCode.CACHE_ERROR,
                f"track {p.track_id} is playing; stop or skip it first",
                track_id=p.track_id,
            )
        if not daemon.store.delete(p.track_id):
            raise LofiError(
                ErrorCode.TRACK_NOT_FOUND, f"track {p.track_id} is not in the cache", track_id=p.track_id
            )
        if player is not None and p.track_id in player.playlist:
            player.playlist_remove(p.track_id)
        return {"track_id": p.track_id, "deleted": True}

    @dispatcher.method("cache_clear", CacheClearParams)
    def cache_clear(p: CacheClearParams) -> dict[str, Any]:
        player = daemon.player
        keep = set(player.protected_ids()) if player is not None else set()
        removed = daemon.store.clear(keep_favourites=p.keep_favourites, keep=keep)
        if player is not None:
            for tid in list(player.playlist):
                if daemon.store.get(tid) is None:
                    player.playlist_remove(tid)
        left = {t.track_id for t in daemon.store.list_tracks()}
        return {"removed": removed, "kept_playing": sorted(keep & left)}

    @dispatcher.method("cache_stats")
    def cache_stats(_: None) -> dict[str, Any]:
        return daemon.store.stats()

    @dispatcher.method("cache_favourite", CacheFavouriteParams)
    def cache_favourite(p: CacheFavouriteParams) -> dict[str, Any]:
        return daemon.store.set_favourite(p.track_id, p.favourite).to_dict()
