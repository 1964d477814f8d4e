"""Real audio path: PortAudio → ALSA → a WAV file (an ALSA `file` plugin device, so no sound card is needed). Each scenario runs the real
Player with its real sounddevice stream in a subprocess (PortAudio reads the ALSA config when it initialises), then
the test analyses what was actually played. The null ALSA slave has no clock: audio plays faster than real time."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.playback_helpers import dominant_freq, wav_capture_config
from tests.portaudio import require_portaudio

REPO = Path(__file__).resolve().parents[1]
CAPTURE_RATE = 48000

require_portaudio()

CHILD = textwrap.dedent(
    """
    import json, sys, time
    sys.path[:0] = [sys.argv[1] + "/daemon", sys.argv[1]]
    from pathlib import Path
    from lofi_daemon.audio.player import Player
    from lofi_daemon.cache.store import TrackStore
    from tests.playback_helpers import Recorder, put_track, sine

    tmp, scenario = Path(sys.argv[2]), sys.argv[3]
    store = TrackStore(tmp / "tracks")
    rec = Recorder()
    result = {}
    if scenario == "no_device":
        player = Player(store, rec)
        t = put_track(store, "tone", sine(440, 1.0, 32000), 32000)
        try:
            player.play(t.track_id)
        except Exception as e:
            result["error"] = [type(e).__name__, int(getattr(e, "code", 0)), str(e)]
        result["state"] = player.state()
        result["devices"] = player.devices()
        player.close()
        print(json.dumps(result)); sys.exit(0)

    if scenario == "device_lost":
        def wait_error():
            deadline = time.monotonic() + 120  # a ceiling (loaded machine), as tests.daemon_client.CEILING
            while player.state()["device_error"] is None and time.monotonic() < deadline:
                time.sleep(0.005)
            return player.state()

        player = Player(store, rec, volume=0.6)
        t = put_track(store, "lost", sine(440, 30.0, 32000), 32000)
        player.play(t.track_id)
        result["lost"] = wait_error()
        time.sleep(0.2)
        result["lost_later"] = player.state()
        result["resumed"] = player.resume()
        result["lost_again"] = wait_error()
        result["notifications"] = rec.items
        player.close()
        print(json.dumps(result)); sys.exit(0)

    player = Player(store, rec, volume=0.6, crossfade_sec=0.5)
    result["devices"] = player.devices()
    if scenario == "tone":
        t = put_track(store, "tone", sine(440, 3.0, 32000), 32000)  # MusicGen rate: resampled to 48 kHz
        player.play(t.track_id)
    elif scenario == "playlist":
        ids = [put_track(store, f"t{f}", sine(f, 3.0, 48000), 48000).track_id for f in (300, 500, 700)]
        for tid in ids:
            player.playlist_add(tid)
        player.play()
        result["ids"] = ids
    elif scenario == "loop":
        player.set_loop("track")
        t = put_track(store, "loop", sine(600, 2.5, 48000), 48000)
        player.play(t.track_id)
        frames = int(2.5 * 48000)
        while player.mixer.frames_rendered < 4.3 * frames:
            time.sleep(0.001)
        player.stop()
    deadline = time.monotonic() + 120
    while (player.state()["state"] != "stopped" or player.output.active) and time.monotonic() < deadline:
        time.sleep(0.01)
    result["rate"] = player.mixer.rate
    result["state"] = player.state()
    result["notifications"] = rec.items
    result["underflows"] = player.output.underflows
    player.close()
    print(json.dumps(result))
    """
)


def run_scenario(
    tmp_path: Path, scenario: str, configured: bool = True, asoundrc: str | None = None
) -> tuple[dict, np.ndarray | None]:
    capture = tmp_path / "capture.wav"
    env = {**os.environ}
    env.update(
        wav_capture_config(tmp_path, capture) if configured else {"XDG_CONFIG_HOME": str(tmp_path / "empty")}
    )
    if asoundrc is not None:
        (tmp_path / "alsa" / "asoundrc").write_text(asoundrc)
        configured = False
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), str(tmp_path), scenario],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # above the child's own 120 s ceilings
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    audio = None
    if configured:
        data, sr = sf.read(capture, dtype="float32", always_2d=True)
        assert sr == CAPTURE_RATE and data.shape[1] == 2
        audio = data
    return result, audio


def active(audio: np.ndarray) -> np.ndarray:
    nz = np.flatnonzero(np.abs(audio[:, 0]) > 1.5 / 32768)
    return audio[nz[0] : nz[-1] + 1]


def amplitude(x: np.ndarray, freq: float, rate: int) -> float:
    t = np.arange(len(x)) / rate
    return 2 * math.hypot(
        np.mean(x * np.sin(2 * np.pi * freq * t)), np.mean(x * np.cos(2 * np.pi * freq * t))
    )


def expected_sequence(tracks: list[np.ndarray], xfade: int, volume: float) -> np.ndarray:
    """What a listener should hear: tracks joined by equal-power crossfades of `xfade` frames, at `volume`,
    with the player's 10 ms de-click ramps at the very start and the very end."""
    t = (np.arange(xfade) + 0.5) / xfade
    fade_in, fade_out = np.sin(t * np.pi / 2), np.cos(t * np.pi / 2)
    out = tracks[0].astype(np.float64).copy()
    d = CAPTURE_RATE // 100  # the player's 10 ms linear de-click fade-in at the very start
    out[:d] *= (np.arange(d) + 0.5) / d
    for nxt in tracks[1:]:
        out[-xfade:] = out[-xfade:] * fade_out + nxt[:xfade] * fade_in
        out = np.concatenate([out, nxt[xfade:]])
    out[-d:] *= 1.0 - (np.arange(d) + 0.5) / d  # and the de-click fade-out at the end of the last track
    return out * volume


def align(capture: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The capture cut so that it lines up with ref: both start at their first audible sample (a pure tone is
    periodic, so correlation alone would be ambiguous); the best of ±3 samples around that absorbs rounding."""
    lsb = 1 / 32768
    c0 = int(np.flatnonzero(np.abs(capture) > 1.5 * lsb)[0])
    r0 = int(np.flatnonzero(np.abs(ref) > 1.5 * lsb)[0])
    best = None
    for k in range(-3, 4):
        start = c0 - r0 + k
        if start < 0:
            continue
        y = capture[start : start + len(ref)]
        head = min(len(y), CAPTURE_RATE)  # judge the alignment on the first second only
        err = float(np.max(np.abs(y[:head] - ref[:head])))
        if best is None or err < best[0]:
            best = (err, y)
    return best[1]


def tone(freq: float, seconds: float) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(int(seconds * CAPTURE_RATE)) / CAPTURE_RATE)


def test_tone_plays_at_the_right_pitch_and_volume(tmp_path):
    result, audio = run_scenario(tmp_path, "tone")
    assert result["rate"] == CAPTURE_RATE
    assert any(d["is_default"] for d in result["devices"]["devices"])
    x = active(audio)
    assert len(x) == pytest.approx(3.0 * CAPTURE_RATE, abs=10)  # every frame of the 3 s track, no more
    assert np.array_equal(x[:, 0], x[:, 1])
    body = x[CAPTURE_RATE // 10 : -CAPTURE_RATE // 10, 0]
    assert abs(dominant_freq(body, CAPTURE_RATE) - 440) < 1
    rms = float(np.sqrt(np.mean(body**2)))
    assert rms == pytest.approx(0.6 * 0.5 / math.sqrt(2), rel=0.01)  # volume 0.6 × amplitude 0.5
    names = [m for m, _ in result["notifications"]]
    assert (
        names[0] == "playback_started"
        and [
            "playback_ended",
            {
                "track_id": result["state"]["track_id"] or result["notifications"][0][1]["track_id"],
                "reason": "finished",
            },
        ]
        in result["notifications"]
    )
    assert result["state"]["state"] == "stopped"


def test_playlist_crossfades_without_discontinuity(tmp_path):
    result, audio = run_scenario(tmp_path, "playlist")
    x = active(audio)[:, 0]
    r = CAPTURE_RATE
    # three 3 s tracks, two 0.5 s crossfades
    assert len(x) == pytest.approx(8.0 * r, abs=10)
    # sample for sample what should have been played (after the 10 ms de-click fade-in), to 16-bit precision:
    # so no click, gap or misplaced seam anywhere
    ref = expected_sequence([tone(300, 3), tone(500, 3), tone(700, 3)], r // 2, 0.6)
    y = align(audio[:, 0], ref)
    assert len(y) == len(ref) and np.max(np.abs(y - ref)) < 3 / 32768
    assert np.max(np.abs(np.diff(x))) <= np.max(np.abs(np.diff(ref))) + 3 / 32768
    # the envelope across the first seam (starts 2.5 s in): A cos-shaped out, B sin-shaped in (equal power)
    win = r // 100  # 10 ms: whole periods of 300, 500 and 700 Hz, so the components separate cleanly
    seam = int(2.5 * r)
    for k in range(0, 50, 5):
        seg = x[seam + k * win : seam + (k + 1) * win]
        t = (k + 0.5) / 50
        assert amplitude(seg, 300, r) == pytest.approx(0.3 * math.cos(t * math.pi / 2), abs=0.01)
        assert amplitude(seg, 500, r) == pytest.approx(0.3 * math.sin(t * math.pi / 2), abs=0.01)
    assert amplitude(x[seam - 2 * win : seam - win], 300, r) == pytest.approx(0.3, abs=0.005)
    assert amplitude(x[int(3.5 * r) : int(3.5 * r) + win], 500, r) == pytest.approx(0.3, abs=0.005)
    assert abs(dominant_freq(x[int(6.0 * r) : int(7.5 * r)], r) - 700) < 1
    started = [p["track_id"] for m, p in result["notifications"] if m == "playback_started"]
    assert started == result["ids"]


def test_loop_track_repeats_seamlessly(tmp_path):
    result, audio = run_scenario(tmp_path, "loop")
    x = active(audio)[:, 0]
    r = CAPTURE_RATE
    # each pass is 2.5 s minus a 0.5 s crossfade: ≥ 4 passes rendered before stop means ≥ 8 s of sound
    assert len(x) >= 4 * 2.0 * r
    ref = expected_sequence([tone(600, 2.5)] * 4, r // 2, 0.6)
    y = align(audio[:, 0], ref)
    # four passes with their seams where they belong (the last 0.5 s already overlaps a fifth pass)
    n = len(ref) - r // 2
    assert len(y) == len(ref) and np.max(np.abs(y[:n] - ref[:n])) < 3 / 32768
    env = np.sqrt(np.mean(x[: (len(x) // 480) * 480].reshape(-1, 480) ** 2, axis=1))
    assert env[2:-2].min() > 0.6 * 0.5 / math.sqrt(2) * 0.95  # never a gap
    assert [m for m, _ in result["notifications"]].count("playback_started") == 1
    assert result["notifications"][-1][0] == "playback_ended"


def test_no_device_is_an_audio_device_error_with_state_kept(tmp_path):
    result, _ = run_scenario(tmp_path, "no_device", configured=False)
    name, code, _message = result["error"]
    assert name == "LofiError" and code == -32013
    assert result["state"]["state"] == "paused" and result["state"]["track_id"]
    assert result["state"]["device_error"]
    assert result["devices"]["devices"] == []


# A "sound card" that goes away: the ALSA file plugin writes into a pipe whose reader quits after 400 kB
# (about 2 s of 48 kHz stereo S16); the next write fails with EPIPE and PortAudio ends the stream.
VANISHING_DEVICE = """pcm.!default {
    type plug
    slave { pcm "vanishing" format S16_LE rate 48000 channels 2 }
}
pcm.vanishing {
    type file
    slave.pcm "null"
    format "raw"
    file "| head -c 400000 > /dev/null"
}
"""


def test_device_that_disappears_pauses_keeps_position_and_recovers(tmp_path):
    result, _ = run_scenario(tmp_path, "device_lost", asoundrc=VANISHING_DEVICE)
    lost, later, resumed, again = (
        result["lost"],
        result["lost_later"],
        result["resumed"],
        result["lost_again"],
    )
    assert lost["state"] == "paused" and lost["track_id"] and lost["device_error"]
    assert 1.0 < lost["position_sec"] < 30.0  # about 2 s (plus what was buffered) had been played
    assert later["position_sec"] == lost["position_sec"] and later["state"] == "paused"  # nothing lost
    # resume opens the device again (a new pipe): playback carries on from the same position
    assert resumed["state"] == "playing" and resumed["device_error"] is None
    # (the unclocked null device may have played a little more by the time `resume` answers)
    assert lost["position_sec"] <= resumed["position_sec"] < lost["position_sec"] + 1.0
    assert again["device_error"] and again["position_sec"] > lost["position_sec"] + 1.0
    errors = [p for m, p in result["notifications"] if m == "log" and p["level"] == "error"]
    assert len(errors) == 2 and all(e["error_code"] == "AUDIO_DEVICE_ERROR" for e in errors)
    names = [m for m, _ in result["notifications"]]
    assert names.count("playback_paused") == 2 and names.count("playback_resumed") == 1
