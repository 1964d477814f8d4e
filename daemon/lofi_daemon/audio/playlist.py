"""Playlist arithmetic: which tracks come next, and where the current position goes when one leaves. Pure
functions over the player's list and index (-1: no current track), so the rules can be read and tested alone."""

from __future__ import annotations

from typing import Literal

LoopMode = Literal["off", "track", "playlist"]
LOOP_MODES = ("off", "track", "playlist")


def upcoming(playlist: list[str], index: int, current: str | None, loop: LoopMode, count: int) -> list[str]:
    """The next `count` tracks after `current` (at `index`): the same track again for loop "track", wrapping
    around for loop "playlist", stopping at the end otherwise."""
    if current is None:
        return []
    if loop == "track":
        return [current] * count
    ids: list[str] = []
    n = len(playlist)
    i = index
    for _ in range(count):
        i += 1
        if i >= n:
            if loop != "playlist" or n == 0:
                break
            i = 0
        ids.append(playlist[i])
    return ids


def remove(playlist: list[str], index: int, track_id: str, current: str | None) -> int:
    """Remove `track_id` from `playlist` (in place) and return the new index of the current position: it moves
    back when an earlier entry leaves, or when the entry at it leaves while something else sounds."""
    if track_id in playlist:
        i = playlist.index(track_id)
        playlist.pop(i)
        if i < index or (i == index and current != track_id):
            index -= 1
    return index
