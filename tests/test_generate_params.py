"""`generate` params are strict per backend: another backend's params, coerced types, non-finite numbers and
prompts with nothing visible in them are errors that name the problem, checked before anything is queued."""

from __future__ import annotations

import json

import pytest
from lofi_daemon.backends.ace_step.backend import AceStepBackend
from lofi_daemon.backends.base import GenerationRequest, track_id_for
from lofi_daemon.backends.musicgen.backend import MusicGenBackend
from lofi_daemon.backends.riffusion.backend import RiffusionBackend
from lofi_daemon.config import Settings
from lofi_daemon.errors import ErrorCode, LofiError

from tests.daemon_client import refusal


def error_of(reply):
    assert "error" in reply, reply
    return reply["error"]


@pytest.mark.parametrize(
    ("params", "name", "mentions"),
    [
        # parameters of the other backend were silently ignored
        ({"backend": "musicgen", "inference_steps": -5}, "INVALID_PARAMS", "inference_steps"),
        ({"backend": "musicgen", "lora": "../../etc/passwd"}, "INVALID_PARAMS", "lora"),
        ({"backend": "ace_step", "top_k": 50}, "INVALID_PARAMS", "top_k"),
        ({"bogus": 1}, "INVALID_PARAMS", "bogus"),
        # strings and booleans were coerced
        ({"duration_sec": "30"}, "INVALID_PARAMS", "duration_sec"),
        ({"seed": True}, "INVALID_PARAMS", "seed"),
        ({"seed": 1.5}, "INVALID_PARAMS", "seed"),
        ({"allow_download": "yes"}, "INVALID_PARAMS", "allow_download"),
        ({"backend": "musicgen", "top_k": "50"}, "INVALID_PARAMS", "top_k"),
        ({"backend": "musicgen", "temperature": True}, "INVALID_PARAMS", "temperature"),
        ({"backend": "musicgen", "guidance_scale": "3"}, "INVALID_GUIDANCE_SCALE", "guidance_scale"),
        ({"backend": "ace_step", "inference_steps": -5}, "INVALID_INFERENCE_STEPS", "inference_steps"),
        ({"backend": "ace_step", "inference_steps": "60"}, "INVALID_INFERENCE_STEPS", "inference_steps"),
        ({"backend": "ace_step", "scheduler": "dpm"}, "INVALID_SCHEDULER", "scheduler"),
        ({"backend": "ace_step", "lora_weight": 0.5}, "INVALID_PARAMS", "lora_weight"),
        # the shaping params every backend takes
        ({"loop": "yes"}, "INVALID_PARAMS", "loop"),
        ({"bpm": 300}, "INVALID_PARAMS", "bpm"),
        ({"bpm": "90"}, "INVALID_PARAMS", "bpm"),
        # an empty backend name fell back to the default backend
        ({"backend": ""}, "INVALID_PARAMS", "backend"),
        # a lone surrogate in a text param other than the prompt
        ({"backend": "ace_step", "lyrics": "\ud800"}, "INVALID_PARAMS", "lyrics"),
    ],
)
def test_generate_params_are_strict_per_backend(daemon, params, name, mentions):
    d = daemon()
    err = error_of(d.request("generate", {"prompt": "rain", **params}))
    assert err["data"]["error_code"] == name, err
    assert mentions in err["message"], err
    assert d.call("queue_status")["waiting"] == [] and d.call("queue_status")["running"] is None


@pytest.mark.parametrize(
    "prompt",
    ["\u200b\u200b", "\x00\x01\x7f", "\u200d \ufeff\u2060", "\t\n\r", "\ud800", "rain \udfff"],
)
def test_prompts_without_visible_text_are_invalid_prompt(daemon, prompt):
    d = daemon()
    err = error_of(d.request("generate", {"prompt": prompt}))
    assert (err["code"], err["data"]["error_code"]) == (-32006, "INVALID_PROMPT"), err
    assert d.call("ping")["pong"] is True


def test_non_finite_backend_params_are_refused(daemon):
    d = daemon()
    for field in ("guidance_scale", "duration_sec"):
        # 1e999 is valid JSON that overflows to infinity
        request = {"jsonrpc": "2.0", "id": 1, "method": "generate", "params": {"prompt": "x", field: "INF"}}
        body = json.dumps(request).replace('"INF"', "1e999").encode()
        d.send_raw(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        err = refusal(d, 1)  # refused as JSON (PARSE_ERROR) or by the schema, naming the field
        assert err["code"] == -32700 or (err["code"] in (-32602, -32010) and field in err["message"]), err


def test_valid_params_still_pass_and_are_canonical(tmp_path):
    mg = MusicGenBackend(Settings(cache_dir=tmp_path))
    assert mg.validate({"guidance_scale": 3, "top_k": 50}) == {
        "guidance_scale": 3.0,
        "top_k": 50,
        "top_p": 0.0,
        "temperature": 1.0,
    }
    ace = AceStepBackend(Settings(cache_dir=tmp_path))
    params = ace.validate({"scheduler": " Heun ", "lyrics": "  la la  ", "inference_steps": 8})
    # lyrics are kept whole (upstream keeps leading and trailing blank lines; ace-lyrics)
    assert (
        params["scheduler"] == "heun" and params["lyrics"] == "  la la  " and params["inference_steps"] == 8
    )
    assert "lora" not in params and "lora_weight" not in params
    with pytest.raises(LofiError) as exc:
        mg.validate({"guidance_scale": float("nan")})
    assert exc.value.code == ErrorCode.INVALID_GUIDANCE_SCALE
    with pytest.raises(LofiError) as exc:
        mg.validate({"top_p": float("inf")})
    assert exc.value.code == ErrorCode.INVALID_PARAMS and exc.value.data["param"] == "top_p"


@pytest.mark.parametrize("make", [MusicGenBackend, AceStepBackend, RiffusionBackend])
def test_every_backend_takes_a_negative_prompt_as_part_of_the_identity(tmp_path, make):
    b = make(Settings(cache_dir=tmp_path))
    base = b.validate({})
    neg = b.validate({"negative_prompt": "  vocals,\n\tdistorted  drums "})
    assert neg["negative_prompt"] == "vocals, distorted drums"  # one spelling, one id
    assert b.validate({"negative_prompt": "vocals, distorted drums"}) == neg
    assert b.validate({"negative_prompt": " \n "}) == base  # blank = none
    ids = {track_id_for(GenerationRequest(b.name, "rain", 10.0, 1, p), "v") for p in (base, neg)}
    assert len(ids) == 2
    with pytest.raises(LofiError) as exc:
        b.validate({"negative_prompt": "x" * 1001})
    assert exc.value.data["param"] == "negative_prompt" and "1000" in exc.value.message
    with pytest.raises(LofiError) as exc:
        b.validate({"negative_prompt": 3})
    assert exc.value.data["param"] == "negative_prompt"


def test_the_plugin_words_a_backend_param_error(daemon, tmp_path):
    from tests.nvim_helpers import embedded_nvim

    d = daemon()
    other = error_of(d.request("generate", {"prompt": "x", "backend": "musicgen", "inference_steps": 5}))
    typed = error_of(d.request("generate", {"prompt": "x", "backend": "musicgen", "top_k": "50"}))
    with embedded_nvim(tmp_path) as nvim:
        text = [nvim.exec_lua("return require('lofi.messages').error_text(...)", e) for e in (other, typed)]
    assert text == [
        "invalid option: `steps` is not a musicgen param",
        "invalid option: `top_k` expects a whole number",
    ]
