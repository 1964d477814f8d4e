"""End to end through the real daemon process: generate → cache → auto-play → prefetch → crossfade, played on
the ALSA file device; and the cache / playback / playlist / prefetch RPC surface."""

from __future__ import annotations

import time

import numpy as np
import pytest
import soundfile as sf

from tests.daemon_client import CEILING
from tests.playback_helpers import dominant_freq, wav_capture_config
from tests.portaudio import require_portaudio

require_portaudio()


def test_generate_autoplay_prefetch_never_silent(daemon, tmp_path):
    capture = tmp_path / "capture.wav"
    env = wav_capture_config(tmp_path / "audio", capture)
    d = daemon(**env)
    init = d.call(
        "initialize",
        # 3 s tones repeating with 1 s crossfades: the seam joins each tone in phase with itself (a pure tone's
        # loop could otherwise cancel itself at the seam, which real music does not)
        {
            "options": {
                "playback": {"volume": 0.5, "crossfade_sec": 1.0},
                "prefetch": {"strategy": "preset_cycle", "presets": ["p one", "p two"]},
            }
        },
    )
    assert {"play", "cache_list", "prefetch_config", "audio_devices"} <= set(init["capabilities"]["methods"])
    devices = d.call("audio_devices")
    assert any(dev["is_default"] for dev in devices["devices"])
    first = d.call("generate", {"prompt": "e2e first", "duration_sec": 3, "seed": 10})
    d.wait_notification("playback_started", track_id=first["track_id"])
    # prefetch: queued at `prefetch` priority from the preset list, then auto-played after a crossfade
    started = d.wait_notification("generation_started", priority="prefetch")
    assert started["prompt"] == "p one"
    d.wait_notification("playback_started", track_id=started["track_id"])
    state = d.call("stop")
    assert state["state"] == "stopped"
    d.wait_notification("playback_ended", track_id=started["track_id"], reason="stopped")
    warnings = [
        n["params"] for n in d.notifications if n["method"] == "log" and n["params"]["level"] == "warning"
    ]
    # the null device plays far faster than real time, so the first track had to repeat while the next one was
    # generated: said once, never silent
    assert any("repeating" in w["message"] for w in warnings)
    playlist = d.call("playlist_get")
    assert playlist["tracks"][:2] == [first["track_id"], started["track_id"]]
    d.call("shutdown")
    d.proc.wait(CEILING)

    audio, sr = sf.read(capture, dtype="float32", always_2d=True)
    x = audio[:, 0]
    loud = np.flatnonzero(np.abs(x) > 0.01)
    x = x[loud[0] : loud[-1] + 1]
    # no gap from the first sound to the stop: never 1 ms of digital silence (two tones crossfading may beat,
    # but their sum only touches zero at single samples)
    quiet = np.abs(x) < 2 / 32768
    run = np.convolve(quiet.astype(np.int32), np.ones(48, np.int32), mode="valid")
    assert run.max() < 48
    first_freq = 220 + 10 % 440  # the tone test backend's pitch for seed 10
    assert abs(dominant_freq(x[:sr], sr) - first_freq) < 2
    # the prefetched track was heard: its pitch (from its seed) is the main one in some half second
    second_freq = 220 + started["seed"] % 440
    halves = [dominant_freq(x[i : i + sr // 2], sr) for i in range(sr, len(x) - sr // 2, sr // 2)]
    assert any(abs(f - second_freq) < 2 for f in halves)


def test_cache_and_playlist_rpc_surface(daemon, tmp_path):
    d = daemon(XDG_CONFIG_HOME=str(tmp_path / "no-audio"))
    d.call("initialize", {"options": {"playback": {"auto_play": False}}})
    ids = []
    for i, prompt in enumerate(["rain piano", "sun guitar", "rain drums"]):
        r = d.call("generate", {"prompt": prompt, "duration_sec": 1.5, "seed": i})
        d.wait_notification("generation_complete", track_id=r["track_id"])
        ids.append(r["track_id"])
    tracks = d.call("cache_list", {"query": "rain", "sort": "oldest"})["tracks"]
    assert [t["track_id"] for t in tracks] == [ids[0], ids[2]]
    assert (
        tracks[0]["prompt"] == "rain piano"
        and tracks[0]["backend"] == "tone"
        and tracks[0]["format"] == "flac"
    )
    assert d.call("cache_list", {"limit": 1})["tracks"][0]["track_id"] == ids[2]
    stats = d.call("cache_stats")
    assert stats["count"] == 3 and stats["size_bytes"] > 0 and stats["max_mb"] == 500
    assert d.call("cache_favourite", {"track_id": ids[1], "favourite": True})["favourite"] is True
    assert d.call("playlist_add", {"track_id": ids[0]})["tracks"] == [ids[0]]
    assert d.call("playlist_add", {"track_id": ids[2], "position": 0})["tracks"] == [ids[2], ids[0]]
    assert d.call("playlist_remove", {"track_id": ids[2]})["tracks"] == [ids[0]]
    # no audio device here: a clear AUDIO_DEVICE_ERROR, and the state is kept
    err = d.request("play", {"track_id": ids[0]})["error"]
    assert err["data"]["error_code"] == "AUDIO_DEVICE_ERROR"
    status = d.call("status")["playback"]
    assert status["track_id"] == ids[0] and status["state"] == "paused" and status["device_error"]
    assert d.call("volume", {"level": 0.7})["volume"] == 0.7
    assert d.request("volume", {"level": 1.5})["error"]["code"] == -32602
    assert (
        d.request("play", {"track_id": "ffffffffffffffff"})["error"]["data"]["error_code"]
        == "TRACK_NOT_FOUND"
    )
    assert d.call("stop")["state"] == "stopped"
    assert d.call("cache_delete", {"track_id": ids[0]})["deleted"] is True
    assert d.call("playlist_get")["tracks"] == []
    assert d.request("cache_delete", {"track_id": ids[0]})["error"]["data"]["error_code"] == "TRACK_NOT_FOUND"
    assert d.call("cache_clear")["removed"] == 1  # the favourite stays
    assert [t["track_id"] for t in d.call("cache_list")["tracks"]] == [ids[1]]
    cfg = d.call("prefetch_config", {"strategy": "random_preset", "trigger_percent": 25})
    assert cfg["strategy"] == "random_preset" and cfg["trigger_percent"] == 25
    assert d.request("prefetch_config", {"strategy": "nope"})["error"]["code"] == -32602
    # a cache hit is answered at once and still auto-plays nothing because auto_play is off
    again = d.call("generate", {"prompt": "sun guitar", "duration_sec": 1.5, "seed": 1})
    assert again["status"] == "cached" and again["track_id"] == ids[1]


def test_musicgen_track_is_played_sample_for_sample(daemon, tmp_path):
    """The real MusicGen pipeline (tiny random-weight fixture) generates; what reaches the sound device is exactly
    the cached track, resampled from 32 kHz to the device's 48 kHz, to 16-bit precision."""
    from scipy.signal import resample_poly

    from tests.daemon_client import ROOT

    capture = tmp_path / "capture.wav"
    d = daemon(
        LOFI_MUSICGEN_DIR=str(ROOT / "tests" / "fixtures" / "musicgen-tiny"),
        LOFI_DEFAULT_BACKEND="musicgen",
        LOFI_PROVIDER="cpu",
        **wav_capture_config(tmp_path / "audio", capture),
    )
    # Not streamed: the capture device has no clock, so a track played while it is generated would underrun.
    d.call(
        "initialize",
        {"options": {"playback": {"volume": 1.0, "stream": False}, "prefetch": {"enabled": False}}},
    )
    r = d.call("generate", {"prompt": "rainy night jazz piano", "duration_sec": 5, "seed": 3})
    done = d.wait_notification("generation_complete", track_id=r["track_id"], timeout=120)
    d.wait_notification("playback_ended", track_id=r["track_id"], reason="finished")
    d.call("shutdown")
    d.proc.wait(CEILING)

    track, rate = sf.read(done["path"], dtype="float64")
    assert rate == 32000
    expected = resample_poly(track, 3, 2)
    d10 = 480  # the 10 ms de-click fade-in at the start, and fade-out at the end of the last track
    expected[:d10] *= (np.arange(d10) + 0.5) / d10
    expected[-d10:] *= 1.0 - (np.arange(d10) + 0.5) / d10
    played, sr = sf.read(capture, dtype="float64", always_2d=True)
    assert sr == 48000 and np.array_equal(played[:, 0], played[:, 1])
    x = played[:, 0]
    # align: the capture is digital silence until the first played sample; try a few samples around that
    c0 = int(np.flatnonzero(np.abs(x) > 1.5 / 32768)[0])
    r0 = int(np.flatnonzero(np.abs(expected) > 1.5 / 32768)[0])
    errors = {}
    for k in range(max(0, c0 - r0 - 3), c0 - r0 + 4):
        y = x[k : k + len(expected)]
        if len(y) == len(expected):
            errors[k] = float(np.max(np.abs(y - np.clip(expected, -1, 1))))
    k = min(errors, key=errors.get)
    assert errors[k] < 3 / 32768
    assert np.all(np.abs(x[k + len(expected) :]) < 2 / 32768)  # then silence: played once, stopped


def test_cli_generate_play_plays_the_track_once(tmp_path):
    """`lofi-daemon generate --play`: the one-shot CLI plays the new track exactly once (no auto-play before
    it, no prefetch after it) and exits when it has ended."""
    import json
    import subprocess
    import sys

    from tests.daemon_client import daemon_env

    capture = tmp_path / "capture.wav"
    env = daemon_env(tmp_path, **wav_capture_config(tmp_path / "audio", capture))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lofi_daemon",
            "generate",
            "cli",
            "tone",
            "--backend",
            "tone",
            "--duration",
            "2",
            "--seed",
            "40",
            "--play",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout.strip().splitlines()[-1])
    track, rate = sf.read(info["path"], dtype="float64")
    played, sr = sf.read(capture, dtype="float64", always_2d=True)
    x = played[:, 0]
    loud = np.flatnonzero(np.abs(x) > 1.5 / 32768)
    heard = (loud[-1] - loud[0] + 1) / sr
    assert heard == pytest.approx(2.0, abs=0.01)  # once, the whole track
    assert abs(dominant_freq(x[loud[0] : loud[-1]], sr) - (220 + 40)) < 2


def test_musicgen_plays_while_generating_and_caches_the_same_track(daemon, tmp_path):
    """Play while generating: sound starts before the generation ends, and the cached track is exactly the one a
    non-streamed run writes (the stream is a view of the generation, never a different result)."""
    import json
    import subprocess
    import sys

    from tests.daemon_client import ROOT, daemon_env

    tiny = str(ROOT / "tests" / "fixtures" / "musicgen-tiny")
    d = daemon(
        LOFI_MUSICGEN_DIR=tiny,
        LOFI_DEFAULT_BACKEND="musicgen",
        LOFI_PROVIDER="cpu",
        **wav_capture_config(tmp_path / "audio", tmp_path / "capture.wav"),
    )
    d.call("initialize", {"options": {"prefetch": {"enabled": False}}})
    r = d.call("generate", {"prompt": "lofi streaming", "duration_sec": 20, "seed": 5})
    done = d.wait_notification("generation_complete", track_id=r["track_id"], timeout=120)
    order = [
        n["method"] for n in d.notifications if n["method"] in ("playback_started", "generation_complete")
    ]
    assert order[:2] == ["playback_started", "generation_complete"]
    # heard while it was generated: counted once the cache has it (it was `Played: 0 times`); the count is
    # recorded by a subscriber of generation_complete, just after the client got it
    deadline = time.monotonic() + 60
    while (count := d.call("cache_list")["tracks"][0]["play_count"]) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count >= 1
    streamed, rate = sf.read(done["path"], dtype="float32")

    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "lofi_daemon",
            "generate",
            "lofi streaming",
            "--duration",
            "20",
            "--seed",
            "5",
            "--backend",
            "musicgen",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=daemon_env(tmp_path / "cli", LOFI_MUSICGEN_DIR=tiny, LOFI_PROVIDER="cpu"),
    )
    assert cli.returncode == 0, cli.stderr
    info = json.loads(cli.stdout)
    assert info["track_id"] == r["track_id"]
    plain, rate2 = sf.read(info["path"], dtype="float32")
    assert rate == rate2 == 32000
    assert np.array_equal(streamed, plain)


def wait_log(d, text: str, timeout: float = 60.0) -> dict:
    """The first `log` notification whose message contains `text` (waits for it)."""
    deadline = time.monotonic() + timeout
    while True:
        for n in list(d.notifications):
            if n["method"] == "log" and text in n["params"]["message"]:
                return n["params"]
        assert time.monotonic() < deadline, f"no log with {text!r}; got {d.events()}"
        time.sleep(0.05)


def started_prefetches(d) -> int:
    return sum(
        1
        for n in list(d.notifications)
        if n["method"] == "generation_started" and n["params"]["priority"] == "prefetch"
    )


def test_two_daemons_on_one_cache_share_one_player_and_the_last_play_wins(daemon, tmp_path):
    cache = tmp_path / "shared-cache"
    captures = {name: tmp_path / f"{name}.wav" for name in ("a", "b")}
    a, b = (
        daemon(
            LOFI_CACHE_DIR=str(cache),
            LOFI_LOG_DIR=str(tmp_path / f"log-{name}"),
            **wav_capture_config(tmp_path / f"audio-{name}", captures[name]),
        )
        for name in ("a", "b")
    )
    # prefetch on (the default): a track repeats until the next is ready, so a player keeps sounding until it is
    # asked to give way (the null device outruns real time)
    options = {"options": {"playback": {"crossfade_sec": 0.5}}}
    a.call("initialize", options)
    b.call("initialize", options)
    first = a.call("generate", {"prompt": "two one", "duration_sec": 2, "seed": 50})  # 270 Hz
    a.wait_notification("playback_started", track_id=first["track_id"])
    # B's own generation completes: auto-play does not take the sound from A; B says so and knows who plays
    second = b.call("generate", {"prompt": "two two", "duration_sec": 2, "seed": 200})  # 420 Hz
    b.wait_notification("generation_complete", track_id=second["track_id"])
    wait_log(b, "another lofi")
    state = b.call("status")["playback"]
    assert state["state"] == "stopped" and state["playing_elsewhere"] == a.proc.pid
    assert "playback_started" not in b.events()
    # B's user plays: A stops and lets go, B plays
    assert b.call("play", {"track_id": second["track_id"]})["state"] == "playing"
    a.wait_notification("playback_ended", reason="stopped")
    wait_log(a, f"moved to another lofi (pid {b.proc.pid})")
    prefetches_at_handover = started_prefetches(a)
    starts_at_handover = a.events().count("playback_started")
    assert a.call("status")["playback"]["playing_elsewhere"] == b.proc.pid
    # the prefetch chain lives on with the player: B prefetches, A (silent now) starts at most the one it had queued
    prefetch = b.wait_notification("generation_started", priority="prefetch")
    b.wait_notification("generation_complete", track_id=prefetch["track_id"])
    assert started_prefetches(a) <= prefetches_at_handover + 1
    assert a.call("status")["playback"]["state"] == "stopped"
    assert a.events().count("playback_started") == starts_at_handover  # A never restarted by itself
    for d in (a, b):
        d.call("shutdown")
        d.proc.wait(30)

    def pitches(path):
        audio, sr = sf.read(path, dtype="float32", always_2d=True)
        x = audio[:, 0]
        return {
            round(dominant_freq(x[i : i + sr], sr))
            for i in range(0, len(x) - sr, sr)
            if np.any(x[i : i + sr])
        }

    # each was heard from its own device (prefetched tracks have random seeds, so their pitches are not checked)
    assert 270 in pitches(captures["a"]) and 420 in pitches(captures["b"])


def test_stop_sticks_through_a_failed_play_and_the_prefetch_that_follows(daemon, tmp_path):
    d = daemon(**wav_capture_config(tmp_path / "audio", tmp_path / "capture.wav"))
    d.call("initialize", {})
    first = d.call("generate", {"prompt": "stop sticks", "duration_sec": 2, "seed": 7})
    d.wait_notification("playback_started", track_id=first["track_id"])
    prefetch = d.wait_notification("generation_started", priority="prefetch")
    assert d.call("stop")["state"] == "stopped"
    starts = d.events().count("playback_started")
    reply = d.request("play", {"track_id": "0123456789abcdef"})  # `:Lofi play nonexist`
    assert reply["error"]["data"]["error_code"] == "TRACK_NOT_FOUND"
    d.wait_notification("generation_complete", track_id=prefetch["track_id"])
    assert d.call("status")["playback"]["state"] == "stopped"
    assert d.events().count("playback_started") == starts  # the prefetch did not start the music
    # nothing plays, so no new prefetch follows: the chain ends with the stop
    deadline = time.monotonic() + 60
    while d.call("status")["queue"]["running"] is not None:  # the worker lets go of the job just after
        assert time.monotonic() < deadline, "the prefetch job never finished"
        time.sleep(0.05)
    assert d.call("status")["queue"]["waiting"] == 0 and started_prefetches(d) == 1
