"""Quantized decoder files (what hub `small_i8` / `_quantized` / `_q4` users download) run through the same
pipeline: dtypes come from the session inputs, nothing is special-cased per variant."""

from __future__ import annotations

import os

import numpy as np
import pytest
from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.backends.musicgen.backend import MusicGenBackend
from lofi_daemon.backends.musicgen.pipeline import MusicGenPipeline, SamplingParams
from lofi_daemon.cancel import CancelToken

from tests.musicgen_fixture import FIXTURE, cpu_settings, fixture_files, tiny_settings

pytest.importorskip("onnx")  # onnxruntime.quantization needs it (export extra)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    from scripts.quantize_musicgen import quantize

    d = tmp_path_factory.mktemp("quantized")
    for name in [
        "tokenizer.json",
        "config.json",
        "generation_config.json",
        "text_encoder.onnx",
        "encodec_decode.onnx",
    ]:
        os.symlink(FIXTURE / name, d / name)
    src = FIXTURE / "decoder_model_merged.onnx"
    quantize(src, d / "decoder_model_merged_quantized.onnx", "int8")
    quantize(src, d / "decoder_model_merged_q4.onnx", "q4")
    return d


@pytest.mark.parametrize("name", ["decoder_model_merged_quantized.onnx", "decoder_model_merged_q4.onnx"])
def test_quantized_decoder_generates_close_to_fp32(quantized, name):
    greedy = SamplingParams(top_k=1)
    ref = MusicGenPipeline(fixture_files(), cpu_settings(None)).generate("lofi", 0.6, 0, greedy)
    files = {**fixture_files(), "decoder_merged": quantized / name}
    pipe = MusicGenPipeline(files, cpu_settings(None))
    out = pipe.generate("lofi", 0.6, 0, greedy)
    assert out.frames.shape == ref.frames.shape and np.isfinite(out.audio).all()
    assert (
        out.frames == ref.frames
    ).mean() > 0.3  # same model, coarser weights: mostly the same greedy codes
    assert (quantized / name).stat().st_size < (FIXTURE / "decoder_model_merged.onnx").stat().st_size


def test_local_dir_with_quantized_files_uses_int8_by_default(quantized, tmp_path):
    backend = MusicGenBackend(tiny_settings(tmp_path, quantized))
    assert backend.local_files()["decoder_merged"].name == "decoder_model_merged_quantized.onnx"
    assert backend.model_version().startswith("musicgen-local-int8-")
    out = backend.generate(
        GenerationRequest("musicgen", "lofi", 0.5, 2, backend.validate({})), None, CancelToken()
    )
    assert out.samples.shape == (16000, 1)
    q4 = MusicGenBackend(tiny_settings(tmp_path, quantized, "q4"))
    assert (
        q4.model_version().startswith("musicgen-local-q4-") and q4.model_version() != backend.model_version()
    )
