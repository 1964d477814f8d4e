"""The radio through the real daemon process: radio_start/steer/status/stop and their notifications, played on the
ALSA file device, with the synthetic continuing backend (tests/doubles/radio_backend.py)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.daemon_client import ROOT, TONE, wait_until
from tests.playback_helpers import wav_capture_config
from tests.portaudio import require_portaudio

require_portaudio()

RADIO = "tests.doubles.radio_backend:RadioToneBackend"


def test_radio_rpc_surface_and_sound(daemon, tmp_path):
    capture = tmp_path / "capture.wav"
    d = daemon(LOFI_BACKEND_PLUGINS=f"{TONE},{RADIO}", **wav_capture_config(tmp_path / "audio", capture))
    init = d.call("initialize", {"options": {"playback": {"volume": 0.5}}})
    assert {"radio_start", "radio_steer", "radio_stop", "radio_status"} <= set(
        init["capabilities"]["methods"]
    )
    assert {"radio_started", "radio_window", "radio_stopped"} <= set(init["capabilities"]["notifications"])
    # bad requests: clear errors, nothing started
    err = d.request("radio_start", {"prompt": "lofi", "backend": "tone"})["error"]
    assert "the radio needs a backend that continues" in err["message"]
    err = d.request("radio_start", {"prompt": "lofi", "backend": "radio_tone", "plan": "nope"})["error"]
    assert err["message"].startswith("unknown radio plan 'nope'")
    err = d.request("radio_steer", {"energy": 2})["error"]
    assert err["code"] == -32602
    assert d.call("radio_status")["on"] is False

    started = d.call("radio_start", {"prompt": "lofi", "backend": "radio_tone", "plan": "focus", "seed": 3})
    assert started["on"] is True and started["plan"] == "focus"
    first = d.wait_notification("radio_window", index=0)
    assert first["section"] == "intro" and "soft keys" in first["prompt"]
    d.call("radio_steer", {"prompt": "high lofi"})
    # the next window to start takes the new prompt, with its plan section's words (which section depends on how
    # far the radio got meanwhile)
    steered = wait_until(
        lambda: [
            n["params"]
            for n in list(d.notifications)
            if n["method"] == "radio_window" and n["params"]["prompt"].startswith("high lofi, ")
        ]
    )[0]
    assert steered["section"] in ("intro", "groove") and steered["prompt"].endswith(" bpm")
    status = d.call("radio_status")
    assert status["windows"] >= 2 and status["prompt"] == "high lofi" and "focus" in status["plans"]
    d.wait_notification("playback_started", track_id=started["radio_id"])
    stopped = d.call("radio_stop")
    assert stopped == {"stopped": True, "radio_id": started["radio_id"]}
    d.wait_notification("radio_stopped", reason="stopped")
    assert d.call("radio_status")["on"] is False
    d.call("shutdown")
    d.proc.wait(60)
    audio, _sr = sf.read(capture, dtype="float32", always_2d=True)
    assert np.abs(audio).max() > 0.1  # the radio was heard


@pytest.mark.slow
def test_musicgen_radio_in_the_daemon_continues_each_window_from_the_last_codes(daemon, tmp_path):
    """The real daemon with the tiny MusicGen: 30 s windows, each next one re-reading 12 s (600 frames) of codes and
    adding 18 s, played and saved as tracks (radio.save)."""
    d = daemon(
        LOFI_MUSICGEN_DIR=str(ROOT / "tests" / "fixtures" / "musicgen-tiny"),
        LOFI_PROVIDER="cpu",
        **wav_capture_config(tmp_path / "audio", tmp_path / "capture.wav"),
    )
    d.call("initialize", {"options": {"prefetch": {"enabled": False}}})
    started = d.call("radio_start", {"prompt": "lofi", "seed": 9, "save": True, "guidance_scale": 3})
    first = d.wait_notification("radio_window", index=0)
    second = d.wait_notification("radio_window", index=1)
    assert (first["context_frames"], first["new_frames"]) == (0, 1500)
    assert (second["context_frames"], second["new_frames"]) == (600, 900)
    d.wait_notification("playback_started", track_id=started["radio_id"])
    assert d.call("radio_stop")["stopped"] is True
    saved = {t["track_id"]: t for t in d.call("cache_list")["tracks"]}
    assert {first["track_id"], second["track_id"]} <= set(saved)
    assert (
        saved[second["track_id"]]["prompt"] == "lofi"
        and saved[second["track_id"]]["params"]["guidance_scale"] == 3
    )
    # the radio's windows never entered the playlist
    assert d.call("playlist_get")["tracks"] == []


def test_prefetch_waits_while_the_radio_is_on(tmp_path, monkeypatch):
    """The radio is the next music: prefetch queues nothing while it is on, even with the queue empty."""
    from lofi_daemon.config import Settings
    from lofi_daemon.daemon import Daemon
    from lofi_daemon.rpc.schemas.radio import RadioStartParams

    from tests.playback_helpers import put_track, sine

    monkeypatch.setenv("LOFI_BACKEND_PLUGINS", f"{TONE},{RADIO}")
    d = Daemon(Settings(cache_dir=tmp_path / "cache", log_dir=tmp_path / "log"))  # worker not started
    try:
        track = put_track(
            d.store, "p", sine(220, 4.0, 16000), 16000, backend="tone", params={"guidance_scale": 1.0}
        )
        d.radio.start(RadioStartParams(prompt="lofi", backend="radio_tone"))
        window = d.queue.take(timeout=0)  # the radio's first window leaves the queue (as if running)
        assert window is not None and window.task is not None
        d.queue.done(window)
        d.prefetch.on_progress(track.track_id, 3.5, 4.0)  # past the trigger point of a playing track
        assert d.queue.waiting() == []
        d.radio.stop()
        d.prefetch.on_progress(track.track_id, 3.5, 4.0)
        assert [j.priority for j in d.queue.waiting()] == ["prefetch"]
    finally:
        d.player.close()
        d.store.close()
