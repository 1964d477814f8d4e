"""The radio through the real daemon process: radio_start/steer/status/stop and their notifications, played on the
ALSA file device, with the synthetic continuing backend (tests/doubles/radio_backend.py)."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from tests.daemon_client import TONE
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
    d.wait_notification(
        "radio_window", prompt="high lofi, soft keys, vinyl crackle, relaxed, laid-back, soft drums, 70 bpm"
    )
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
