"""cache_list, cache_delete, cache_clear, cache_stats, cache_favourite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, LofiError
from ..rpc.dispatch import Dispatcher
from ..rpc.schemas.cache import CacheClearParams, CacheFavouriteParams, CacheListParams, CacheTrackParams
from .store import TrackStore

if TYPE_CHECKING:
    from ..audio.player import Player


def register(dispatcher: Dispatcher, *, store: TrackStore, player: Player) -> None:
    """`player` keeps what it plays and its playlist out of deletions (`release`, `release_all`)."""

    @dispatcher.method("cache_list", CacheListParams)
    def cache_list(p: CacheListParams) -> dict[str, Any]:
        tracks = store.list_tracks(
            limit=p.limit, sort=p.sort, backend=p.backend, query=p.query, favourite=p.favourite
        )
        return {"tracks": [t.to_dict() for t in tracks]}

    @dispatcher.method("cache_delete", CacheTrackParams)
    def cache_delete(p: CacheTrackParams) -> dict[str, Any]:
        if not player.release(p.track_id, lambda: store.delete(p.track_id)):
            raise LofiError(
                ErrorCode.TRACK_NOT_FOUND, f"track {p.track_id} is not in the cache", track_id=p.track_id
            )
        return {"track_id": p.track_id, "deleted": True}

    @dispatcher.method("cache_clear", CacheClearParams)
    def cache_clear(p: CacheClearParams) -> dict[str, Any]:
        removed, keep = player.release_all(
            lambda keep: store.clear(keep_favourites=p.keep_favourites, keep=keep)
        )
        left = {t.track_id for t in store.list_tracks()}
        return {"removed": removed, "kept_playing": sorted(keep & left)}

    @dispatcher.method("cache_stats")
    def cache_stats(_: None) -> dict[str, Any]:
        return store.stats()

    @dispatcher.method("cache_favourite", CacheFavouriteParams)
    def cache_favourite(p: CacheFavouriteParams) -> dict[str, Any]:
        return store.set_favourite(p.track_id, p.favourite).to_dict()
