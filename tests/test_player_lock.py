"""One player per machine: two players (as two daemons would) on one cache dir, each on its own test device.
The last one the user plays wins; auto-play never takes the sound away; a stop from giving way sticks."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from lofi_daemon.audio.player import Player
from lofi_daemon.audio.player_lock import PlayerLock
from lofi_daemon.cache.store import TrackStore
from lofi_daemon.errors import ErrorCode, LofiError

from tests.playback_helpers import ManualOutput, Recorder, dominant_freq, put_track, sine

pytest.importorskip("fcntl")

RATE = 16000


def make_player(tmp_path, store, timeout_sec=60.0):
    rec = Recorder()
    holder = {}
    player = Player(
        store,
        rec,
        start_thread=False,
        volume=1.0,
        crossfade_sec=0.5,
        output_factory=lambda r, d: holder.setdefault("o", ManualOutput(r, d, rate=RATE)),
        lock=PlayerLock(lambda: tmp_path / "cache", timeout_sec=timeout_sec),
    )
    return player, holder["o"], rec


@pytest.fixture
def pair(tmp_path):
    store = TrackStore(tmp_path / "cache" / "tracks")
    a = make_player(tmp_path, store)
    b = make_player(tmp_path, store)
    yield store, a, b
    a[0].close()
    b[0].close()
    store.close()


def tone(store, freq, seconds=3.0):
    return put_track(store, f"tone {freq}", sine(freq, seconds, RATE), RATE, seed=freq).track_id


def play_in_thread(player, track_id):
    """`play` blocks until the other player gave way: run it beside the test, which drives the other one."""
    result = {}

    def run():
        try:
            result["state"] = player.play(track_id)
        except LofiError as e:
            result["error"] = e

    t = threading.Thread(target=run)
    t.start()
    return t, result


def pump_until(out, poll, thread, ceiling_sec=120.0):
    """Drive a test device block by block until `thread` is done (the other player's play returned). The
    wall-clock ceiling only guards against a hang; the test waits for the event."""
    deadline = time.monotonic() + ceiling_sec
    while thread.is_alive() and time.monotonic() < deadline:
        out.pump(out.block / RATE, poll)
        thread.join(0.005)
    assert not thread.is_alive(), "the other player never got the sound"


def test_last_play_wins_and_auto_play_never_takes_the_sound(pair):
    store, (a, out_a, rec_a), (b, out_b, rec_b) = pair
    t1, t2, t3 = tone(store, 300), tone(store, 500), tone(store, 700)
    a.set_loop("track")  # A keeps sounding until it is asked to give way
    b.set_loop("track")
    a.play(t1)
    out_a.pump(0.5, a.poll)
    # B's generation finishes: auto-play waits, says why, and B knows who plays
    b.on_generation_complete({"track_id": t2})
    assert b.state()["state"] == "stopped" and b.state()["playing_elsewhere"] == os.getpid()
    assert t2 in b.playlist_get()["tracks"]
    assert any("another lofi" in p["message"] for p in rec_b.of("log"))
    assert a.state()["playing_elsewhere"] is None
    # B's user plays: A gives way (stops, closes its device), then B sounds
    thread, result = play_in_thread(b, t2)
    pump_until(out_a, a.poll, thread)
    thread.join()
    assert result["state"]["state"] == "playing"
    assert a.state()["state"] == "stopped" and not out_a.is_open
    assert rec_a.of("playback_ended")[-1] == {"track_id": t1, "reason": "stopped"}
    assert any("moved to another lofi" in p["message"] for p in rec_a.of("log"))
    assert not np.any(out_a.pump(1.0, a.poll))
    heard = out_b.pump(1.0, b.poll)
    assert abs(dominant_freq(heard[2000:, 0], RATE) - 500) < 3
    # A's prefetch finishes after it gave way: the stop sticks, nothing doubles up
    a.on_generation_complete({"track_id": t3})
    assert a.state()["state"] == "stopped" and not np.any(out_a.pump(1.0, a.poll))
    # A's user plays again: B gives way in turn
    thread, result = play_in_thread(a, t1)
    pump_until(out_b, b.poll, thread)
    thread.join()
    assert result["state"]["state"] == "playing" and b.state()["state"] == "stopped"
    assert b.state()["playing_elsewhere"] == os.getpid()


def test_a_silent_player_lets_go_and_auto_play_may_start_elsewhere(pair):
    store, (a, out_a, rec_a), (b, out_b, rec_b) = pair
    t1, t2 = tone(store, 300), tone(store, 500)
    a.play(t1)
    out_a.pump(0.5, a.poll)
    a.pause()
    out_a.pump(1.0, a.poll)  # paused and silent: the device stops and the lock goes
    assert not a.lock.held
    b.on_generation_complete({"track_id": t2})
    assert b.state()["state"] == "playing"
    heard = out_b.pump(1.0, b.poll)
    assert abs(dominant_freq(heard[2000:, 0], RATE) - 500) < 3


def test_a_play_that_is_not_given_way_fails_clearly(tmp_path):
    store = TrackStore(tmp_path / "cache" / "tracks")
    a, out_a, _ = make_player(tmp_path, store)
    b, out_b, _ = make_player(tmp_path, store, timeout_sec=0.3)
    t1, t2 = tone(store, 300), tone(store, 500)
    a.play(t1)  # A's control step never runs (a frozen daemon): it cannot answer
    with pytest.raises(LofiError) as e:
        b.play(t2)
    assert e.value.code == ErrorCode.AUDIO_DEVICE_ERROR and f"pid {os.getpid()}" in e.value.message
    assert b.state()["state"] == "paused" and not out_b.active
    assert not (tmp_path / "cache" / "player.request").exists()  # the question is withdrawn
    a.close()
    b.close()
    store.close()


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, b"%d\\n" % os.getpid())
print("holding", flush=True)
time.sleep(600)
"""


def test_a_player_that_dies_holding_the_lock_does_not_keep_the_sound(tmp_path):
    (tmp_path / "cache").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "cache" / "player.lock")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        lock = PlayerLock(lambda: tmp_path / "cache", timeout_sec=0.2)
        assert lock.holder() == holder.pid and not lock.try_acquire()
        # it asked earlier and died waiting: a stale question is no reason to give way
        (tmp_path / "cache" / "player.request").write_text(f"{holder.pid} 0123")
    finally:
        holder.kill()  # like kill -9: no clean-up ran
        holder.wait()
    assert lock.holder() is None and lock.try_acquire()
    assert lock.handover_requested() is None and not (tmp_path / "cache" / "player.request").exists()
    lock.release()
