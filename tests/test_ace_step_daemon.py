"""The real daemon process generates with ACE-Step when LOFI_ACE_STEP_DIR points at the tiny fixture."""

from __future__ import annotations

from tests.ace_step_helpers import FIXTURE


def test_daemon_generates_with_tiny_ace_step(daemon):
    d = daemon(LOFI_ACE_STEP_DIR=str(FIXTURE), LOFI_THREADS="1")
    info = next(b for b in d.call("get_backends")["backends"] if b["name"] == "ace_step")
    assert info["installed"] is True and info["sample_rate"] == 48000 and info["channels"] == 2
    assert info["layout"] == "lofi" and info["default_duration_sec"] == 60
    params = {
        "prompt": "dusty lofi piano",
        "backend": "ace_step",
        "duration_sec": 5,
        "seed": 7,
        "inference_steps": 4,
        "format": "wav",
    }
    r = d.call("generate", params)
    done = d.wait_notification("generation_complete", track_id=r["track_id"], timeout=120)
    assert done["sample_rate"] == 48000 and abs(done["duration_sec"] - 5.0) <= 4096 / 44100
    assert done["backend"] == "ace_step" and done["seed"] == 7
    track = next(t for t in d.call("cache_list")["tracks"] if t["track_id"] == r["track_id"])
    assert track["channels"] == 2 and track["sample_rate"] == 48000
    assert track["params"]["inference_steps"] == 4 and track["params"]["scheduler"] == "euler"
    again = d.call("generate", params)
    assert again["track_id"] == r["track_id"] and again["status"] == "cached"
    # an editing task on the cached track, resolved by the daemon from its track cache
    repaint = dict(params, task="repaint", source_track=r["track_id"], repaint_start=1.0, repaint_end=2.0)
    r2 = d.call("generate", repaint)
    assert r2["track_id"] != r["track_id"]
    done2 = d.wait_notification("generation_complete", track_id=r2["track_id"], timeout=120)
    assert done2["duration_sec"] == done["duration_sec"]  # a repaint keeps the source's length
    missing = dict(params, task="retake", source_track="0123456789abcdef")
    err = d.request("generate", missing)["error"]
    assert err["code"] == -32012 and "no cached track" in err["message"]  # TRACK_NOT_FOUND
