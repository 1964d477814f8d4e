"""Playlist arithmetic on its own: what comes next in each loop mode, and where the position goes on removal."""

from __future__ import annotations

from lofi_daemon.audio.playlist import remove, upcoming


def test_upcoming_in_each_loop_mode():
    pl = ["a", "b", "c"]
    assert upcoming(pl, 1, "b", "off", 2) == ["c"]  # stops at the end
    assert upcoming(pl, 2, "c", "off", 2) == []
    assert upcoming(pl, 2, "c", "playlist", 2) == ["a", "b"]  # wraps around
    assert upcoming(pl, 1, "b", "track", 2) == ["b", "b"]
    assert upcoming(pl, -1, None, "playlist", 2) == []  # nothing plays: nothing comes next
    assert upcoming([], -1, "x", "playlist", 2) == []  # a track outside an empty playlist


def test_remove_moves_the_position_back_only_when_it_must():
    pl = ["a", "b", "c"]
    assert remove(pl, 2, "a", "c") == 1 and pl == ["b", "c"]  # an earlier entry left
    pl = ["a", "b", "c"]
    assert remove(pl, 1, "c", "b") == 1 and pl == ["a", "b"]  # a later entry left
    pl = ["a", "b", "c"]
    assert remove(pl, 1, "b", "b") == 1 and pl == [
        "a",
        "c",
    ]  # the sounding one left: its successor takes its place
    pl = ["a", "b", "c"]
    assert remove(pl, 1, "b", "x") == 0 and pl == ["a", "c"]  # the entry at the position left while x sounds
    pl = ["a"]
    assert remove(pl, 0, "z", "a") == 0 and pl == ["a"]  # not there: nothing changes
