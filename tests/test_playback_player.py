"""The player with a test-driven device: commands, notifications, playlist, auto-play, device loss."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.audio.player import Player
from lofi_daemon.cache.store import TrackStore
from lofi_daemon.errors import ErrorCode, LofiError

from tests.playback_helpers import ManualOutput, Recorder, dominant_freq, put_track, sine

DEV_RATE = 16000
TRACK_RATE = 32000  # MusicGen's rate: the player must resample


@pytest.fixture
def env(tmp_path):
    store = TrackStore(tmp_path / "tracks")
    rec = Recorder()
    outputs = []

    def factory(render, device):
        out = ManualOutput(render, device, rate=DEV_RATE)
        outputs.append(out)
        return out

    player = Player(store, rec, output_factory=factory, start_thread=False, volume=1.0, crossfade_sec=1.0)
    yield store, player, outputs[0], rec
    player.close()
    store.close()


def tone_track(store, freq, seconds=4.0, seed=None):
    return put_track(
        store, f"tone {freq}", sine(freq, seconds, TRACK_RATE, amp=0.5), TRACK_RATE, seed=seed or freq
    )


def test_play_resamples_and_reports(env):
    store, player, out, rec = env
    t = tone_track(store, 440)
    state = player.play(t.track_id)
    assert state["state"] == "playing" and state["track_id"] == t.track_id
    assert state["duration_sec"] == pytest.approx(4.0)
    audio = out.pump(1.0, player.poll)
    assert abs(dominant_freq(audio[2000:, 0], DEV_RATE) - 440) < 3
    rms = np.sqrt(np.mean(audio[2000:, 0] ** 2))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.02)
    assert np.array_equal(audio[:, 0], audio[:, 1])  # mono duplicated
    assert rec.of("playback_started") == [{"track_id": t.track_id, "duration_sec": pytest.approx(4.0)}]
    assert store.get(t.track_id).play_count == 1
    assert player.state()["position_sec"] == pytest.approx(1.0, abs=0.05)


def test_pause_resume_toggle_stop_notifications(env):
    store, player, out, rec = env
    t = tone_track(store, 440)
    player.play(t.track_id)
    out.pump(0.5, player.poll)
    assert player.pause()["state"] == "paused"
    silent = out.pump(0.5, player.poll)
    assert np.all(silent[400:] == 0)
    pos = player.state()["position_sec"]
    assert player.toggle()["state"] == "playing"
    assert player.toggle()["state"] == "paused"
    assert player.play()["state"] == "playing"  # play without id resumes
    assert player.state()["position_sec"] == pytest.approx(pos)
    st = player.stop()
    assert st["state"] == "stopped" and st["track_id"] is None
    assert rec.names().count("playback_paused") == 2 and rec.names().count("playback_resumed") == 2
    assert rec.of("playback_ended")[-1] == {"track_id": t.track_id, "reason": "stopped"}
    # nothing audible: the device is stopped after a short grace period
    out.pump(1.0, player.poll)
    assert not out.active


def test_volume_and_seek(env):
    store, player, out, rec = env
    t = tone_track(store, 440)
    player.play(t.track_id)
    out.pump(0.5, player.poll)
    assert player.set_volume(0.25)["volume"] == 0.25
    audio = out.pump(0.5, player.poll)
    rms = np.sqrt(np.mean(audio[800:, 0] ** 2))  # ramp done within 20 ms
    assert rms == pytest.approx(0.25 * 0.5 / np.sqrt(2), rel=0.03)
    assert player.seek(3.0)["position_sec"] == pytest.approx(3.0, abs=1e-3)
    with pytest.raises(LofiError) as e:
        player.play("0123456789abcdef")
    assert e.value.code == ErrorCode.TRACK_NOT_FOUND


def test_playlist_advances_with_crossfade_and_no_gap(env):
    store, player, out, rec = env
    a, b, c = tone_track(store, 300), tone_track(store, 500), tone_track(store, 700)
    player.playlist_add(a.track_id)
    player.playlist_add(b.track_id)
    player.playlist_add(c.track_id)
    assert player.playlist_get()["tracks"] == [a.track_id, b.track_id, c.track_id]
    player.play()
    audio = out.pump(11.5, player.poll)
    mono = audio[:, 0]
    # never silent until the end of the last track (4 + 4 + 4 s minus two 1 s crossfades = 10 s)
    env_rms = np.sqrt(np.mean(mono[: 10 * DEV_RATE - 800].reshape(-1, 400) ** 2, axis=1))
    assert env_rms[1:].min() > 0.2
    assert np.all(mono[10 * DEV_RATE + 10 :] == 0)
    assert abs(dominant_freq(mono[int(1.0 * DEV_RATE) : int(2.5 * DEV_RATE)], DEV_RATE) - 300) < 3
    assert abs(dominant_freq(mono[int(4.5 * DEV_RATE) : int(5.5 * DEV_RATE)], DEV_RATE) - 500) < 3
    assert abs(dominant_freq(mono[int(8.0 * DEV_RATE) : int(9.5 * DEV_RATE)], DEV_RATE) - 700) < 3
    started = [p["track_id"] for p in rec.of("playback_started")]
    assert started == [a.track_id, b.track_id, c.track_id]
    ended = [(p["track_id"], p["reason"]) for p in rec.of("playback_ended")]
    assert ended == [(a.track_id, "finished"), (b.track_id, "finished"), (c.track_id, "finished")]
    assert player.state()["state"] == "stopped"


def test_skip_and_playlist_edits(env):
    store, player, out, rec = env
    a, b, c = tone_track(store, 300), tone_track(store, 500), tone_track(store, 700)
    player.play(a.track_id)
    with pytest.raises(LofiError):
        player.skip()  # nothing next
    player.playlist_add(c.track_id)
    player.playlist_add(b.track_id, position=1)  # right after the current track
    assert player.playlist_get() == {
        "tracks": [a.track_id, b.track_id, c.track_id],
        "current_index": 0,
        "loop": "off",
    }
    out.pump(0.5, player.poll)
    assert player.skip()["track_id"] == b.track_id
    out.pump(1.5, player.poll)
    assert rec.of("playback_ended")[0] == {"track_id": a.track_id, "reason": "skipped"}
    player.playlist_remove(c.track_id)
    assert player.playlist_get()["tracks"] == [a.track_id, b.track_id]
    assert player.playlist_clear() == {"tracks": [b.track_id], "current_index": 0, "loop": "off"}
    with pytest.raises(LofiError):
        player.playlist_add("ffffffffffffffff")


def test_loop_modes(env):
    store, player, out, rec = env
    a, b = tone_track(store, 300), tone_track(store, 500)
    player.set_loop("track")
    player.playlist_add(b.track_id)
    player.play(a.track_id)
    out.pump(10.0, player.poll)
    assert [p["track_id"] for p in rec.of("playback_started")] == [a.track_id]
    assert not rec.of("log")  # looping by choice: no warning
    player.set_loop("playlist")
    out.pump(10.0, player.poll)
    started = [p["track_id"] for p in rec.of("playback_started")]
    assert started[:3] == [a.track_id, b.track_id, a.track_id]


def test_repeats_current_when_more_is_coming_and_warns_once(env):
    store, player, out, rec = env
    a = tone_track(store, 300)
    player.more_coming = lambda: True  # e.g. a prefetch is generating
    player.play(a.track_id)
    audio = out.pump(12.0, player.poll)
    env_rms = np.sqrt(np.mean(audio[800:, 0].reshape(-1, 400)[:-1] ** 2, axis=1))
    assert env_rms.min() > 0.2  # never silent
    warnings = [p for p in rec.of("log") if p["level"] == "warning"]
    assert len(warnings) == 1 and "not ready" in warnings[0]["message"]
    # the generation arrives: it is added and crossfaded into at the next seam
    b = tone_track(store, 600)
    player.on_generation_complete({"track_id": b.track_id})
    out.pump(4.0, player.poll)
    assert rec.of("playback_started")[-1]["track_id"] == b.track_id


def test_auto_play_starts_when_idle_but_not_after_a_user_stop(env):
    store, player, out, rec = env
    a = tone_track(store, 300)
    player.on_generation_complete({"track_id": a.track_id})
    assert player.state()["state"] == "playing" and player.state()["track_id"] == a.track_id
    player.stop()
    b = tone_track(store, 500)
    player.on_generation_complete({"track_id": b.track_id})
    assert player.state()["state"] == "stopped"
    assert b.track_id in player.playlist_get()["tracks"]
    c = tone_track(store, 700)
    player.on_generation_started({"track_id": c.track_id, "priority": "normal"})  # the user asks for music
    player.on_generation_complete({"track_id": c.track_id})
    assert player.state()["track_id"] == c.track_id


def test_stop_sticks_through_failed_plays_and_prefetch_completions(env):
    store, player, out, rec = env
    a, gone = tone_track(store, 300), tone_track(store, 400)
    player.play(a.track_id)
    out.pump(0.5, player.poll)
    player.stop()
    with pytest.raises(LofiError) as e:
        player.play("0" * 16)  # `:Lofi play nonexist`
    assert e.value.code == ErrorCode.TRACK_NOT_FOUND
    store.delete(gone.track_id)  # another Neovim deleted it
    with pytest.raises(LofiError):
        player.play(gone.track_id)
    # a prefetch finishes (it started before the stop): it joins the playlist but does not start
    b = tone_track(store, 500)
    player.on_generation_started({"track_id": b.track_id, "priority": "prefetch"})
    player.on_generation_complete({"track_id": b.track_id})
    out.pump(2.0, player.poll)
    assert player.state()["state"] == "stopped"
    assert b.track_id in player.playlist_get()["tracks"]
    assert not np.any(out.pump(0.5, player.poll))
    # a track the user asked for before stopping is not a reason to start either
    c = tone_track(store, 600).track_id
    player.on_generation_started({"track_id": c, "priority": "normal"})
    player.stop()
    player.on_generation_complete({"track_id": c})  # it finishes after the stop
    assert player.state()["state"] == "stopped"
    # only the user's play ends the stop
    assert player.play(b.track_id)["state"] == "playing"


def test_every_play_that_is_heard_is_counted(env):
    store, player, out, rec = env
    a, b = tone_track(store, 300, seconds=3.0), tone_track(store, 500, seconds=3.0)
    player.on_generation_complete({"track_id": a.track_id})  # auto-play
    player.playlist_add(b.track_id)  # reached by the playlist
    out.pump(8.0, player.poll)
    assert player.state()["state"] == "stopped"
    assert (store.get(a.track_id).play_count, store.get(b.track_id).play_count) == (1, 1)
    player.set_loop("track")  # each repetition starts it again from the top
    player.play(a.track_id)
    out.pump(7.0, player.poll)  # 3 s track, 1 s crossfades: starts at 0, 2, 4 and 6 s
    loops = len([p for p in rec.of("playback_started") if p["track_id"] == a.track_id])
    assert store.get(a.track_id).play_count == 1 + 4 and loops == 2


def test_a_track_heard_while_it_is_generated_is_counted_once_it_is_stored(env):
    store, player, out, rec = env
    audio = sine(440, 2.0, TRACK_RATE)
    tid = put_track(store, "streamed", audio, TRACK_RATE, seed=77).track_id
    store.delete(tid)  # the same id, not in the cache yet: as while generating
    with player.streaming(tid, TRACK_RATE, 1, 2.0) as push:
        push(audio)
    out.pump(0.2, player.poll)
    assert rec.of("playback_started")[-1]["track_id"] == tid
    put_track(store, "streamed", audio, TRACK_RATE, seed=77)  # the worker stores it, then announces it
    player.on_generation_complete({"track_id": tid})
    assert store.get(tid).play_count == 1


def test_device_loss_pauses_keeps_state_and_recovers(env):
    store, player, out, rec = env
    a = tone_track(store, 300)
    player.play(a.track_id)
    out.pump(1.0, player.poll)
    out.break_device()
    out.fail_start = True
    player.poll()
    st = player.state()
    assert st["state"] == "paused" and st["track_id"] == a.track_id and st["device_error"]
    assert st["position_sec"] == pytest.approx(1.0, abs=0.05)
    assert any(p["level"] == "error" and p["error_code"] == "AUDIO_DEVICE_ERROR" for p in rec.of("log"))
    with pytest.raises(LofiError) as e:
        player.resume()
    assert e.value.code == ErrorCode.AUDIO_DEVICE_ERROR
    assert player.state()["state"] == "paused"
    out.fail_start = False  # the device is back
    st = player.resume()
    assert st["state"] == "playing" and st["device_error"] is None
    audio = out.pump(0.5, player.poll)
    assert abs(dominant_freq(audio[800:, 0], DEV_RATE) - 300) < 3
    assert player.state()["position_sec"] == pytest.approx(1.5, abs=0.05)


def test_position_notifications_are_rate_limited(env, monkeypatch):
    store, player, out, rec = env
    a = tone_track(store, 300, seconds=6.0)
    clock = [1000.0]
    monkeypatch.setattr("lofi_daemon.audio.player.time.monotonic", lambda: clock[0])

    def poll():
        clock[0] += 512 / DEV_RATE  # wall clock follows the audio, as on a real device
        player.poll()

    player.play(a.track_id)
    out.pump(5.0, poll)
    pos = rec.of("playback_position")
    assert 4 <= len(pos) <= 6
    assert all(p["track_id"] == a.track_id and p["duration_sec"] == pytest.approx(6.0) for p in pos)
    assert [p["position_sec"] for p in pos] == sorted(p["position_sec"] for p in pos)


def test_device_selection_and_protection(env):
    store, player, out, rec = env
    a = tone_track(store, 300)
    player.play(a.track_id)
    assert player.devices()["devices"][0]["name"] == "manual"
    with pytest.raises(LofiError) as e:
        player.set_device(7)
    assert e.value.code == ErrorCode.AUDIO_DEVICE_ERROR
    assert player.set_device(0)["state"] == "playing"
    assert a.track_id in player.protected_ids()
    store.protect = player.protected_ids  # as daemon.py wires the store to the player
    store.max_mb = 0  # even an impossible limit never evicts what is playing
    store.evict()
    assert store.get(a.track_id) is not None


def test_switching_to_a_device_with_another_rate_keeps_playing_in_tune(env):
    store, player, out, rec = env
    a = tone_track(store, 440, seconds=6.0)
    player.play(a.track_id)
    out.pump(2.0, player.poll)
    st = player.set_device("half")
    assert st["sample_rate"] == DEV_RATE // 2 and player.mixer.rate == DEV_RATE // 2
    assert st["state"] == "playing" and st["track_id"] == a.track_id
    assert st["position_sec"] == pytest.approx(2.0, abs=0.05)
    audio = out.pump(1.0, player.poll)
    assert abs(dominant_freq(audio[400:, 0], DEV_RATE // 2) - 440) < 3
    assert len(rec.of("playback_started")) == 1  # the same play continues


def test_device_rate_change_while_streaming(env):
    store, player, out, rec = env
    x = sine(440, 4.0, TRACK_RATE, amp=0.5)
    stream = player.stream("3" * 16, TRACK_RATE, 1, duration_sec=4.0)
    stream.push(x[: 2 * TRACK_RATE])
    player.poll()
    out.pump(0.5, player.poll)
    assert player.state()["track_id"] == "3" * 16
    player.set_device(1)
    stream.push(x[2 * TRACK_RATE :])
    stream.finish()
    audio = out.pump(2.0, player.poll)
    assert abs(dominant_freq(audio[400:, 0], DEV_RATE // 2) - 440) < 3
    assert player.mixer.current_source.length == pytest.approx(4.0 * DEV_RATE // 2, abs=2)


def test_release_refuses_the_playing_track_and_drops_a_deleted_one_from_the_playlist(env):
    """What the cache handlers ask of the player instead of reading its mixer and playlist."""
    store, player, out, rec = env
    a, b = tone_track(store, 300), tone_track(store, 500)
    player.play(a.track_id)
    player.playlist_add(b.track_id)
    asked: list[str] = []
    with pytest.raises(LofiError) as e:
        player.release(a.track_id, lambda: asked.append(a.track_id) or True)
    assert e.value.code == ErrorCode.CACHE_ERROR and asked == []  # refused before deleting anything
    assert player.release(b.track_id, lambda: store.delete(b.track_id)) is True
    assert player.playlist_get()["tracks"] == [a.track_id] and store.get(b.track_id) is None
    assert player.release(b.track_id, lambda: store.delete(b.track_id)) is False  # nothing left to delete


def test_release_all_keeps_what_sounds_and_the_playlist(env):
    store, player, out, rec = env
    a, b, c = tone_track(store, 300), tone_track(store, 500), tone_track(store, 700)
    player.play(a.track_id)
    player.playlist_add(b.track_id)
    removed, keep = player.release_all(lambda keep: store.clear(keep_favourites=False, keep=keep))
    assert removed == 1 and keep == {a.track_id, b.track_id}
    assert store.get(c.track_id) is None and store.get(b.track_id) is not None
    assert player.playlist_get()["tracks"] == [a.track_id, b.track_id]


def test_a_loop_track_repeats_seamlessly_and_an_ordinary_one_crossfades(env):
    """A track made with generate's `loop` is one period of a loop: in loop mode it wraps end to start with no
    crossfade (the sine runs on at its level, continuous across the wrap, resampled 32 → 16 kHz circularly); an
    ordinary track with the same audio crossfades into itself (equal power: correlated audio swells there)."""
    store, player, out, rec = env
    samples = sine(250.0, 3.0, TRACK_RATE, amp=0.5)  # 750 whole cycles: a perfect loop
    looped = put_track(store, "loop", samples, TRACK_RATE, params={"guidance_scale": 3.0, "loop": True})
    plain = put_track(store, "plain", samples, TRACK_RATE)
    player.set_loop("track")
    level = {}
    for t in (looped, plain):
        player.play(t.track_id)
        audio = out.pump(5.0, player.poll)[:, 0]
        wrap = audio[int(2.0 * DEV_RATE) : int(4.5 * DEV_RATE)]  # the first repeat, and a margin
        level[t.track_id] = float(np.abs(wrap).max())
        if t is looped:
            step = 2 * np.pi * 250.0 / DEV_RATE * 0.5  # the largest sample-to-sample step of this sine
            assert np.abs(np.diff(wrap)).max() <= step * 1.01
        player.stop()
    assert level[looped.track_id] == pytest.approx(0.5, abs=0.01)
    assert level[plain.track_id] > 0.6
