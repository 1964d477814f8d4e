"""The real daemon process generates with Riffusion when LOFI_RIFFUSION_DIR points at the tiny fixture: the track
goes through the queue into the cache, and asking again is a cache hit."""

from __future__ import annotations

from tests.riffusion_helpers import FIXTURE


def test_daemon_generates_with_tiny_riffusion(daemon):
    d = daemon(LOFI_RIFFUSION_DIR=str(FIXTURE), LOFI_THREADS="1")
    info = next(b for b in d.call("get_backends")["backends"] if b["name"] == "riffusion")
    assert info["installed"] is True and info["sample_rate"] == 48000 and info["channels"] == 1
    assert info["defaults"]["cfg_scale"] == 7.0 and info["max_duration_sec"] == 240
    params = {
        "prompt": "dusty lofi piano",
        "backend": "riffusion",
        "duration_sec": 5,
        "seed": 7,
        "steps": 2,
        "negative_prompt": "harsh",
        "format": "wav",
    }
    r = d.call("generate", params)
    done = d.wait_notification("generation_complete", track_id=r["track_id"], timeout=600)
    assert done["sample_rate"] == 48000 and abs(done["duration_sec"] - 5.0) < 1e-3
    assert done["backend"] == "riffusion" and done["seed"] == 7
    track = next(t for t in d.call("cache_list")["tracks"] if t["track_id"] == r["track_id"])
    assert track["channels"] == 1 and track["sample_rate"] == 48000
    assert track["params"] == {
        "steps": 2,
        "cfg_scale": 7.0,
        "scheduler": "dpmsolver++",
        "negative_prompt": "harsh",
        "denoising": 1.0,
        "interpolate_to": "",
        "init": "",
        "init_strength": 0.5,
        "init_sha256": "",
    }
    again = d.call("generate", params)
    assert again["track_id"] == r["track_id"] and again["status"] == "cached"
    other = d.call(
        "generate", {**params, "negative_prompt": "drums"}
    )  # every output-affecting param is identity
    assert other["track_id"] != r["track_id"]
    # init audio by track id: the cached track just made is the source, its bytes part of the new identity
    from_track = d.call("generate", {**params, "init": r["track_id"]})
    assert from_track["track_id"] not in (r["track_id"], other["track_id"])
    done = d.wait_notification("generation_complete", track_id=from_track["track_id"], timeout=600)
    track = next(t for t in d.call("cache_list")["tracks"] if t["track_id"] == from_track["track_id"])
    assert track["params"]["init"] == f"track:{r['track_id']}" and len(track["params"]["init_sha256"]) == 64
    err = d.request("generate", {**params, "init": "0123456789abcdef"})["error"]
    assert err["data"]["error_code"] == "TRACK_NOT_FOUND"
