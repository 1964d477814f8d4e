"""MusicGenBackend: parameter validation, local model directories (three layouts), variant choice, generation."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
from lofi_daemon.backends.base import GenerationRequest, track_id_for
from lofi_daemon.backends.musicgen import nbits
from lofi_daemon.backends.musicgen.backend import MusicGenBackend
from lofi_daemon.backends.musicgen.files import decoder_dtype, dtype_order
from lofi_daemon.cancel import CancelToken
from lofi_daemon.config import Settings
from lofi_daemon.errors import Cancelled, ErrorCode, LofiError
from lofi_daemon.models.registry import MUSICGEN_VARIANTS, default_variant

from tests.musicgen_fixture import FIXTURE, tiny_settings

ONNX = ["text_encoder.onnx", "decoder_model_merged.onnx", "encodec_decode.onnx"]
META = ["tokenizer.json", "config.json", "generation_config.json"]


def link(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(src, dst)


@pytest.fixture
def backend(tmp_path):
    return MusicGenBackend(tiny_settings(tmp_path))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)


# ---- validation -------------------------------------------------------------------------------------------
def test_defaults_filled(backend):
    assert backend.validate({}) == {"guidance_scale": 3.0, "top_k": 250, "top_p": 0.0, "temperature": 1.0}
    assert backend.validate({"guidance_scale": 5, "top_k": 50, "top_p": 0.9, "temperature": 0.5}) == {
        "guidance_scale": 5.0,
        "top_k": 50,
        "top_p": 0.9,
        "temperature": 0.5,
    }


@pytest.mark.parametrize(
    "raw, code, word",
    [
        ({"guidance_scale": 0.5}, ErrorCode.INVALID_GUIDANCE_SCALE, "guidance_scale"),
        ({"guidance_scale": 10.5}, ErrorCode.INVALID_GUIDANCE_SCALE, "between 1 and 10"),
        ({"top_k": 0}, ErrorCode.INVALID_PARAMS, "top_k"),
        ({"top_k": 2049}, ErrorCode.INVALID_PARAMS, "2048"),
        ({"top_k": 2.5}, ErrorCode.INVALID_PARAMS, "integer"),
        ({"top_p": 1.5}, ErrorCode.INVALID_PARAMS, "top_p"),
        ({"temperature": 0.05}, ErrorCode.INVALID_PARAMS, "temperature"),
        ({"temperature": 3}, ErrorCode.INVALID_PARAMS, "between 0.1 and 2"),
        ({"temperature": "hot"}, ErrorCode.INVALID_PARAMS, "number"),
        # strict: no coercion of booleans, strings or integral floats
        ({"top_k": True}, ErrorCode.INVALID_PARAMS, "integer"),
        ({"top_k": 50.0}, ErrorCode.INVALID_PARAMS, "integer"),
        ({"top_p": "0.5"}, ErrorCode.INVALID_PARAMS, "number"),
        ({"guidance_scale": float("nan")}, ErrorCode.INVALID_GUIDANCE_SCALE, "finite"),
        ({"inference_steps": 10}, ErrorCode.INVALID_PARAMS, "does not take inference_steps"),
    ],
)
def test_invalid_params(backend, raw, code, word):
    with pytest.raises(LofiError) as ei:
        backend.validate(raw)
    assert ei.value.code == code
    assert word in ei.value.message


def test_backend_constants(backend):
    assert (backend.name, backend.sample_rate, backend.channels) == ("musicgen", 32000, 1)
    assert (backend.min_duration_sec, backend.max_duration_sec, backend.default_duration_sec) == (5, 120, 30)


def test_negative_prompt_reaches_the_guidance_batch(backend):
    """Through the backend, a negative prompt changes the audio (the pipeline's equality with transformers is
    in test_musicgen_reference.py); blank is none, the same audio as without."""
    params = {"top_k": 1}

    def audio(**extra):
        request = GenerationRequest("musicgen", "lofi", 5.0, 42, backend.validate({**params, **extra}))
        return backend.generate(request, lambda *a, **k: None, CancelToken()).samples

    plain = audio()
    assert not np.array_equal(audio(negative_prompt="drums"), plain)
    assert np.array_equal(audio(negative_prompt="  "), plain)


def test_a_loop_continues_the_token_stream_past_its_end(tmp_path):
    """loop=true: MusicGen generates on past the wanted length (its continuation windows go on from the tail),
    and the loop's head is crossfaded from that continuation. A short window makes the extra audio a window of
    its own that re-reads the tail's codes."""
    from lofi_daemon.backends import shaping

    b = MusicGenBackend(tiny_settings(tmp_path), window_sec=5.0, stride_sec=3.0)
    request = GenerationRequest("musicgen", "lofi", 5.0, 42, {**b.validate({}), "loop": True})
    audio = shaping.generate(b, request, lambda *a, **k: None, CancelToken())
    loop = audio.info["loop"]
    assert audio.info["windows"] >= 2, loop  # 5 s + the extra: more windows, continuing from the tail
    assert abs(audio.duration_sec - 5.0) <= 0.5 + 1 / 32000 and loop["length_sec"] == audio.duration_sec
    assert 0 < loop["seam"]["score"] <= 1 and loop["crossfade_sec"] == 0.625


# ---- local directory --------------------------------------------------------------------------------------
def test_local_dir_generates_without_network(backend, no_network):
    assert backend.is_installed()
    status = backend.status()
    assert status["source"] == "local" and status["installed"] and status["variant"] == "local-fp32"
    request = GenerationRequest("musicgen", "lofi", 5.0, 42, backend.validate({}))
    calls = []
    audio = backend.generate(request, lambda d, t, **kw: calls.append((d, t, kw)), CancelToken())
    assert audio.sample_rate == 32000 and audio.samples.shape == (160000, 1)
    assert audio.samples.dtype == np.float32 and audio.duration_sec == 5.0
    assert calls[-1][0] == calls[-1][1] == 253
    assert audio.info["tokens_generated"] == 250 and audio.info["provider"] == "cpu"
    again = backend.generate(request, lambda *a, **k: None, CancelToken())
    assert np.array_equal(audio.samples, again.samples)  # same request + seed ⇒ same audio
    assert backend.loaded
    backend.unload()
    assert not backend.loaded


def test_model_version_identifies_local_files(tmp_path):
    a = MusicGenBackend(tiny_settings(tmp_path)).model_version()
    assert (
        a.startswith("musicgen-local-fp32-") and a == MusicGenBackend(tiny_settings(tmp_path)).model_version()
    )
    other = tmp_path / "other"
    for name in ONNX + META:
        link(FIXTURE / name, other / name)
    # a different decoder file (here: the int8 name) changes the version and so every track id
    os.remove(other / "decoder_model_merged.onnx")
    link(FIXTURE / "decoder_model_merged.onnx", other / "decoder_model_merged_quantized.onnx")
    b = MusicGenBackend(tiny_settings(tmp_path, other)).model_version()
    assert b.startswith("musicgen-local-int8-") and b != a
    req = GenerationRequest("musicgen", "lofi", 5.0, 1, {})
    assert track_id_for(req, a) != track_id_for(req, b)


@pytest.mark.parametrize(
    "layout, mapping",
    [
        ("flat", {n: n for n in ONNX + META}),
        ("xenova", {**{n: n for n in META}, **{n: f"onnx/{n}" for n in ONNX}}),
        (
            "gabotechs",
            {
                **{n: f"small/{n}" for n in META},
                "text_encoder.onnx": "small_fp32/text_encoder.onnx",
                "encodec_decode.onnx": "small_fp32/encodec_decode.onnx",
                "decoder_model_merged.onnx": "small_i8/decoder_model_merged.onnx",
            },
        ),
    ],
)
def test_local_layouts_are_detected(tmp_path, layout, mapping, no_network):
    d = tmp_path / layout
    for src, dst in mapping.items():
        link(FIXTURE / src, d / dst)
    backend = MusicGenBackend(tiny_settings(tmp_path, d))
    files = backend.local_files()
    assert {k: str(v.relative_to(d)) for k, v in files.items()} == {
        "tokenizer": mapping["tokenizer.json"],
        "config": mapping["config.json"],
        "generation_config": mapping["generation_config.json"],
        "text_encoder": mapping["text_encoder.onnx"],
        "encodec_decode": mapping["encodec_decode.onnx"],
        "decoder_merged": mapping["decoder_model_merged.onnx"],
    }
    out = backend.generate(
        GenerationRequest("musicgen", "lofi", 0.3, 1, backend.validate({})), None, CancelToken()
    )
    assert out.samples.shape == (9600, 1)


def test_missing_file_is_named(tmp_path):
    d = tmp_path / "partial"
    for name in ONNX + META:
        if name != "encodec_decode.onnx":
            link(FIXTURE / name, d / name)
    backend = MusicGenBackend(tiny_settings(tmp_path, d))
    assert not backend.is_installed()
    with pytest.raises(LofiError) as ei:
        backend.load()
    assert ei.value.code == ErrorCode.MODEL_NOT_FOUND
    assert "encodec_decode.onnx" in ei.value.message and str(d) in ei.value.message
    assert "encodec_decode.onnx" in backend.status()["error"]


def test_missing_decoder_names_merged_and_split_forms(tmp_path):
    d = tmp_path / "nodecoder"
    for name in ["text_encoder.onnx", "encodec_decode.onnx", *META]:
        link(FIXTURE / name, d / name)
    with pytest.raises(LofiError) as ei:
        MusicGenBackend(tiny_settings(tmp_path, d)).load()
    msg = ei.value.message
    assert "decoder_model_merged" in msg and "decoder_with_past_model" in msg


def test_missing_directory(tmp_path):
    with pytest.raises(LofiError) as ei:
        MusicGenBackend(tiny_settings(tmp_path, tmp_path / "nowhere")).load()
    assert ei.value.code == ErrorCode.MODEL_NOT_FOUND and "nowhere" in ei.value.message


def test_local_dir_prefers_int8_on_cpu_and_honours_requested_variant(tmp_path):
    d = tmp_path / "xen"
    for name in META:
        link(FIXTURE / name, d / name)
    for name in ["text_encoder.onnx", "encodec_decode.onnx"]:
        link(FIXTURE / name, d / "onnx" / name)
    for sfx in ["", "_quantized", "_q4", "_fp16"]:
        link(FIXTURE / "decoder_model_merged.onnx", d / "onnx" / f"decoder_model_merged{sfx}.onnx")
    pick = lambda v: MusicGenBackend(tiny_settings(tmp_path, d, v)).local_files()["decoder_merged"].name  # noqa: E731
    assert pick(None) == "decoder_model_merged_quantized.onnx"
    assert pick("q4") == "decoder_model_merged_q4.onnx"
    assert pick("fp32") == "decoder_model_merged.onnx"
    assert pick("xenova-small-fp16") == "decoder_model_merged_fp16.onnx"


def test_env_override_points_at_the_fixture(tmp_path):
    s = Settings.from_env({"LOFI_MUSICGEN_DIR": str(FIXTURE), "LOFI_PROVIDER": "cpu"})
    assert MusicGenBackend(s).local_files()["decoder_merged"] == FIXTURE / "decoder_model_merged.onnx"


# ---- hub variants -----------------------------------------------------------------------------------------
def test_default_variants_per_provider():
    assert default_variant("musicgen", "cpu").name == "small-int8"
    for provider in ("cuda", "coreml"):
        assert default_variant("musicgen", provider).dtype == "fp16"
    # fp16 is never the CPU default, and fp16 variants are not marked as CPU-suitable
    assert all("cpu" not in v.providers for v in MUSICGEN_VARIANTS.values() if v.dtype == "fp16")
    assert dtype_order(None, "cpu")[0] == "int8" and dtype_order(None, "cpu")[-1] == "fp16"
    assert dtype_order("small-fp32", "cpu")[0] == "fp32"


def test_hub_variant_selection(tmp_path, monkeypatch):
    monkeypatch.setattr(nbits, "fast_here", lambda: True)
    s = Settings(cache_dir=tmp_path, provider="cpu")
    assert MusicGenBackend(s).variant().name == "small-int8"
    s.models["musicgen"].variant = "q4"
    assert MusicGenBackend(s).variant().name == "xenova-small-q4"
    s.models["musicgen"].variant = "xenova-small-quantized"
    assert MusicGenBackend(s).model_version() == "musicgen-small-xenova-quantized-main+kv6-kvf32-nbits8"
    s.models["musicgen"].variant = "bogus"
    with pytest.raises(LofiError) as ei:
        MusicGenBackend(s).variant()
    assert ei.value.code == ErrorCode.MODEL_NOT_FOUND and "small-int8" in ei.value.message


def test_decoder_dtype_from_name():
    assert decoder_dtype("onnx/decoder_model_merged_quantized.onnx") == "int8"
    assert decoder_dtype("onnx/decoder_model_merged_q4.onnx") == "q4"
    assert decoder_dtype("small_i8/decoder_model_merged.onnx") == "int8"
    assert decoder_dtype("small_fp16/decoder_model.onnx") == "fp16"
    assert decoder_dtype("small_fp32/decoder_model_merged.onnx") == "fp32"


def test_cancel_propagates_as_cancelled(backend):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        backend.generate(GenerationRequest("musicgen", "lofi", 5.0, 1, {}), None, token)


def test_model_version_and_status_name_the_cpu_kernel_path(tmp_path, monkeypatch):
    """nbits.fast_here() changes the int8 decoder's graph (MatMulNBits or the exported chains), so it changes the
    track identity and is shown in the status (`:checkhealth lofi`); an fp32 decoder's graph does not depend on it."""
    s = Settings(cache_dir=tmp_path, provider="cpu")
    versions, products = set(), set()
    for fast in (True, False):
        monkeypatch.setattr(nbits, "fast_here", lambda fast=fast: fast)
        backend = MusicGenBackend(s)
        versions.add(backend.model_version())
        st = backend.status()
        assert st["kv_cache"] == "static" and st["kv_precision"] == "float32"
        products.add(st["decoder_products"])
    assert versions == {
        "musicgen-small-int8-main+kv6-kvf32-nbits8",
        "musicgen-small-int8-main+kv6-kvf32-chain",
    }
    assert products == {"int8 MatMulNBits (8-bit, accuracy 4)", "int8 MatMulInteger chains"}
    s.models["musicgen"].variant = "small-fp32"
    assert MusicGenBackend(s).model_version().endswith("+kv6-kvf32")
    assert MusicGenBackend(s).status()["decoder_products"] == "float32 MatMul"
