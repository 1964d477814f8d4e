"""The real MusicGen backend (tiny random-weight fixture) behind the real daemon process, over RPC."""

from __future__ import annotations

import soundfile as sf

from tests.daemon_client import ROOT

TINY = str(ROOT / "tests" / "fixtures" / "musicgen-tiny")


def test_generate_over_rpc_writes_a_real_track(daemon):
    d = daemon(LOFI_MUSICGEN_DIR=TINY, LOFI_DEFAULT_BACKEND="musicgen")
    backends = {b["name"]: b for b in d.call("get_backends")["backends"]}
    assert backends["musicgen"]["installed"] is True
    r = d.call("generate", {"prompt": "rainy night jazz piano", "duration_sec": 6, "seed": 11, "top_k": 50})
    assert r["backend"] == "musicgen"
    done = d.wait_notification("generation_complete", track_id=r["track_id"], timeout=120)
    audio, rate = sf.read(done["path"])
    assert rate == 32000 and len(audio) == 6 * 32000
    assert 0 < abs(audio).max() <= 1.0
    progress = [n["params"] for n in d.notifications if n["method"] == "generation_progress"]
    assert progress and all(p["percent"] <= 99 for p in progress)
    assert "tokens_generated" in progress[-1]
    # Same request, same seed: answered from the cache with the same id.
    again = d.call(
        "generate", {"prompt": "rainy night jazz piano", "duration_sec": 6, "seed": 11, "top_k": 50}
    )
    assert (again["status"], again["track_id"]) == ("cached", r["track_id"])
    err = d.request("generate", {"prompt": "x", "duration_sec": 121})["error"]
    assert err["data"]["error_code"] == "INVALID_DURATION"
    err = d.request("generate", {"prompt": "x", "guidance_scale": 11})["error"]
    assert err["data"]["error_code"] == "INVALID_GUIDANCE_SCALE"


def test_a_model_dir_without_the_model_names_the_missing_file(daemon, tmp_path):
    """A directory the user pointed at is not "download it first": it is MODEL_NOT_FOUND naming the file."""
    empty = tmp_path / "my-musicgen"
    empty.mkdir()
    ace = tmp_path / "my-ace-step"
    ace.mkdir()
    (ace / "text_encoder.onnx").write_bytes(b"")
    d = daemon(LOFI_MUSICGEN_DIR=str(empty), LOFI_ACE_STEP_DIR=str(ace))
    for params in ({"backend": "musicgen"}, {"backend": "musicgen", "allow_download": True}):
        err = d.request("generate", {"prompt": "x", **params})["error"]
        assert err["data"]["error_code"] == "MODEL_NOT_FOUND", err
        assert "missing tokenizer.json, config.json, text_encoder.onnx" in err["message"], err
        assert str(empty) in err["message"], err
        assert "unset LOFI_MUSICGEN_DIR" in err["data"]["hint"], err
    err = d.request("generate", {"prompt": "x", "backend": "ace_step"})["error"]
    assert err["data"]["error_code"] == "MODEL_NOT_FOUND", err
    assert "transformer_encoder.onnx" in err["message"] and "text_encoder.onnx" not in err["message"], err
    # never downloaded (no directory set): still BACKEND_NOT_INSTALLED with the way to consent
    d2 = daemon(LOFI_TONE_NOT_INSTALLED="1")
    err = d2.request("generate", {"prompt": "x"})["error"]
    assert err["data"]["error_code"] == "BACKEND_NOT_INSTALLED", err
