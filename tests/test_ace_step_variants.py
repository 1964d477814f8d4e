"""Transformer decoder precisions (`models.ace_step.variant`): int8 is the CPU default when present, fp16 the GPU
default, explicit choices are honoured or refused clearly, the track identity follows the precision, and int8's
error does not grow over a whole sampling loop."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from lofi_daemon.backends.ace_step import backend as backend_mod
from lofi_daemon.backends.ace_step.backend import AceStepBackend
from lofi_daemon.backends.ace_step.layout import ModelLayout, choose_decoder, detect
from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.cancel import CancelToken
from lofi_daemon.config import ModelSettings, Settings
from lofi_daemon.errors import ErrorCode, LofiError

from tests.ace_step_helpers import FIXTURE, fixed_inputs

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def int8_dir(tmp_path_factory):
    """The tiny fixture plus an int8 decoder made by scripts/quantize_ace_step.py."""
    from scripts.quantize_ace_step import quantize_int8

    d = tmp_path_factory.mktemp("ace-int8") / "ace-step"
    shutil.copytree(FIXTURE, d, ignore=shutil.ignore_patterns("torch"))
    quantize_int8(d / "transformer_decoder.onnx", d / "transformer_decoder_int8.onnx")
    return d


def backend(tmp_path, model_dir, variant=None) -> AceStepBackend:
    s = Settings(provider="cpu", threads=1, cache_dir=tmp_path)
    s.models["ace_step"] = ModelSettings(dir=model_dir, variant=variant)
    return AceStepBackend(s)


def test_choice_per_provider(tmp_path):
    for name in ("transformer_decoder.onnx", "transformer_decoder_int8.onnx"):
        (tmp_path / name).write_bytes(b"x")
    layout = ModelLayout("lofi", tmp_path)
    assert choose_decoder(layout, None, "cpu") == "int8"
    assert choose_decoder(layout, None, "cuda") == "fp32"  # no fp16 file: fall back to full precision
    assert choose_decoder(layout, "fp32", "cpu") == "fp32"
    assert choose_decoder(layout, "fp16", "cuda") is None
    (tmp_path / "transformer_decoder_fp16.onnx").write_bytes(b"x")
    assert choose_decoder(layout, None, "cuda") == "fp16" and choose_decoder(layout, None, "coreml") == "fp16"
    assert choose_decoder(layout, None, "cpu") == "int8"  # never fp16 by default on a CPU
    (tmp_path / "transformer_decoder_int8.onnx").unlink()
    assert choose_decoder(layout, None, "cpu") == "fp32"


def test_gpu_provider_selects_fp16_and_falls_back(tmp_path, int8_dir, monkeypatch):
    b = backend(tmp_path, int8_dir)
    monkeypatch.setattr(AceStepBackend, "provider", property(lambda self: "cuda"))
    assert b.decoder_dtype(b.layout()) == "fp32"  # fp16 missing: fp32, not the CPU's int8
    fp16 = int8_dir.parent / "with-fp16"
    shutil.copytree(int8_dir, fp16)
    shutil.copy(fp16 / "transformer_decoder.onnx", fp16 / "transformer_decoder_fp16.onnx")
    b16 = backend(tmp_path, fp16)
    assert b16.decoder_dtype(b16.layout()) == "fp16"
    assert b16.stage_graphs(b16.layout())["transformer_decoder"].name == "transformer_decoder_fp16.onnx"


def test_cpu_default_is_int8_and_changes_the_track_identity(tmp_path, int8_dir):
    default, fp32 = backend(tmp_path, int8_dir), backend(tmp_path, int8_dir, "fp32")
    assert default.decoder_dtype(default.layout()) == "int8" and fp32.decoder_dtype(fp32.layout()) == "fp32"
    assert "-int8-" in default.model_version() and "-int8-" not in fp32.model_version()
    # the fp32 identity is the one tracks had before precisions were selectable
    assert fp32.model_version() == backend(tmp_path, FIXTURE).model_version()
    st = default.status()
    assert st["decoder_variant"] == "int8" and st["decoder_variants"] == ["fp32", "int8"]
    req = GenerationRequest("ace_step", "lofi", 5.0, 3, default.validate({"inference_steps": 4}))
    a = default.generate(req, lambda *a, **k: None, CancelToken())
    b = fp32.generate(req, lambda *a, **k: None, CancelToken())
    assert a.info["decoder_variant"] == "int8" and b.info["decoder_variant"] == "fp32"
    assert not np.array_equal(a.samples, b.samples)


def test_missing_or_unknown_variant_is_refused(tmp_path):
    b = backend(tmp_path, FIXTURE, "int8")
    with pytest.raises(LofiError) as e:
        b.load()
    assert e.value.code == ErrorCode.MODEL_NOT_FOUND and "quantize_ace_step.py" in e.value.message
    assert "error" in b.status()
    with pytest.raises(LofiError) as e:
        backend(tmp_path, None, "int4").variant()
    assert e.value.code == ErrorCode.MODEL_NOT_FOUND and "int8" in e.value.message
    # a precision name with the hub source keeps the hub variant (its only precision is fp32)
    assert backend(tmp_path, None, "fp32").variant().name == "lofi-nvim-fp32"


def test_int8_error_does_not_grow_over_a_whole_loop(int8_dir):
    """int8 vs fp32 final latents of the CPU preset's 30-step loop (and upstream's 60) stay within twice the
    error of a single evaluation: the loop averages quantisation noise instead of compounding it (measured:
    ≈ 1.0× on this fixture, docs/benchmarks.md for full width)."""
    from lofi_daemon.backends.ace_step.pipeline import AceStepPipeline, SamplingParams
    from lofi_daemon.backends.ace_step.sessions import session_factory

    layout = detect(int8_dir)
    make = session_factory(threads=1)
    fp = AceStepPipeline(layout, make)
    q = AceStepPipeline(
        layout, make, files={"transformer_decoder": layout.path("transformer_decoder_int8.onnx")}
    )
    ids, mask, lyric_ids, lyric_mask, noise = fixed_inputs(frames=32)

    def rel_rms(a, b):
        return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))

    c = fp.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, SamplingParams())
    per_eval = max(
        rel_rms(
            q.graphs.velocity(noise, c.cond, c.mask, np.float32(t), [1.0]),
            fp.graphs.velocity(noise, c.cond, c.mask, np.float32(t), [1.0]),
        )
        for t in (999.0, 600.0, 100.0)
    )
    assert 1e-4 < per_eval < 0.05  # int8 really ran, and is int8-sized
    for steps in (30, 60):
        p = SamplingParams(steps=steps)
        loop = rel_rms(q.sample(c, noise, p), fp.sample(c, noise, p))
        assert loop <= 2 * per_eval, (steps, loop, per_eval)


def test_memory_need_follows_the_chosen_decoder(tmp_path, int8_dir, monkeypatch):
    monkeypatch.setattr(backend_mod, "available_memory_bytes", lambda: 64 * 10**9)
    small, big = backend(tmp_path, int8_dir), backend(tmp_path, int8_dir, "fp32")
    s_sizes = backend_mod.memory.stage_bytes(small.stage_graphs(small.layout()))
    b_sizes = backend_mod.memory.stage_bytes(big.stage_graphs(big.layout()))
    assert s_sizes["transformer_decoder"] < b_sizes["transformer_decoder"]
    assert {k: v for k, v in s_sizes.items() if k != "transformer_decoder"} == {
        k: v for k, v in b_sizes.items() if k != "transformer_decoder"
    }
