"""A full disk, for real: the cache on a 2 MB tmpfs filled to the last byte. Writing a track fails with DISK_FULL
saying where and how much; reading what is there (cache hit, list, stats, play) keeps working."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest

from tests.playback_helpers import wav_capture_config


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs at tmp_path/cache (needs root; skipped where mounting is not allowed)."""
    mnt = tmp_path / "cache"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory) -> None:
    """Write until the file system refuses another byte."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            block = b"\0" * size
            while True:
                try:
                    os.write(fd, block)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)


def test_full_disk_fails_writes_clearly_and_keeps_reads_working(small_disk, daemon, tmp_path):
    d = daemon(**wav_capture_config(tmp_path / "audio", tmp_path / "capture.wav"))
    d.call("initialize", {"options": {"playback": {"auto_play": False}, "prefetch": {"enabled": False}}})
    old = d.call("generate", {"prompt": "before", "duration_sec": 1, "seed": 1})
    d.wait_notification("generation_complete", track_id=old["track_id"])
    fill(small_disk)

    # a new track cannot be written: DISK_FULL naming the place and the numbers
    new = d.call("generate", {"prompt": "after", "duration_sec": 1, "seed": 2})
    err = d.wait_notification("generation_error", track_id=new["track_id"])
    assert (err["code"], err["error_code"]) == (-32015, "DISK_FULL"), err
    assert (
        err["message"].startswith(f"disk full at {small_disk / 'tracks'}: ")
        and "MB free, need" in err["message"]
    )
    assert err["free_bytes"] < err["need_bytes"] and "cache.dir" in err["hint"]

    # reads keep working: a cache hit, the list, the stats, playing
    hit = d.call("generate", {"prompt": "before", "duration_sec": 1, "seed": 1})
    assert hit["status"] == "cached" and hit["track_id"] == old["track_id"]
    assert [t["track_id"] for t in d.call("cache_list")["tracks"]] == [old["track_id"]]
    assert d.call("cache_stats")["count"] == 1
    d.call("play", {"track_id": old["track_id"]})  # (the null device may finish it before the reply)
    d.wait_notification("playback_started", track_id=old["track_id"])
    d.call("stop")
    # a change of the index may fail, but as DISK_FULL, never INTERNAL_ERROR
    fav = d.request("cache_favourite", {"track_id": old["track_id"]})
    assert "result" in fav or fav["error"]["data"]["error_code"] == "DISK_FULL", fav

    # room again: writing works again
    (small_disk / "filler").unlink()
    again = d.call("generate", {"prompt": "after", "duration_sec": 1, "seed": 2})
    d.wait_notification("generation_complete", track_id=again["track_id"])
    assert d.call("ping")["pong"] is True


def test_store_reads_never_need_the_disk(small_disk):
    """The index writes of read paths (LRU time, play count) are best-effort; a real change says DISK_FULL."""
    import numpy as np
    from lofi_daemon.backends.base import GeneratedAudio, GenerationRequest
    from lofi_daemon.cache.store import TrackStore
    from lofi_daemon.errors import ErrorCode, LofiError

    store = TrackStore(small_disk / "tracks")
    audio = GeneratedAudio(np.zeros((16000, 1), np.float32), 16000)
    request = GenerationRequest("tone", "x", 1.0, 1)
    track = store.put("a" * 16, audio, request=request, model_version="v", generation_time_sec=0.0)
    fill(small_disk)
    assert store.get(track.track_id, touch=True) is not None
    with pytest.raises(LofiError) as exc:  # the player logs this and plays on (the daemon test plays)
        store.mark_played(track.track_id)
    assert exc.value.code == ErrorCode.DISK_FULL
    assert [t.track_id for t in store.list_tracks()] == [track.track_id]
    assert store.read_audio(track.track_id)[0].shape == (16000, 1)
    with pytest.raises(LofiError) as exc:
        store.set_favourite(track.track_id, True)
    assert exc.value.code == ErrorCode.DISK_FULL and str(small_disk / "tracks") in exc.value.message
    with pytest.raises(LofiError) as exc:
        store.put(
            "b" * 16,
            audio,
            request=GenerationRequest("tone", "y", 1.0, 2),
            model_version="v",
            generation_time_sec=0.0,
        )
    assert exc.value.code == ErrorCode.DISK_FULL and "MB free, need" in exc.value.message
    assert not [p for p in (small_disk / "tracks").iterdir() if p.name.startswith(".tmp-")]  # no temp left
    store.close()
