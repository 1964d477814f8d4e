"""Play-while-generating: chunked EnCodec decode while the decoder runs."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.backends.musicgen.backend import MusicGenBackend
from lofi_daemon.backends.musicgen.pipeline import MusicGenPipeline, SamplingParams
from lofi_daemon.backends.musicgen.streaming import generate_streaming
from lofi_daemon.cancel import CancelToken

from tests.musicgen_fixture import cpu_settings, fixture_files, tiny_settings
from tests.tolerances import audio_tol


@pytest.fixture(scope="module")
def pipe():
    return MusicGenPipeline(fixture_files(), cpu_settings(), window_sec=1.0, stride_sec=0.6)


@pytest.mark.parametrize("duration", [0.3, 1.0, 2.37])
def test_stream_equals_one_shot_decode(pipe, duration):
    chunks, steps_at_chunk = [], []
    state = {"step": 0}

    def progress(done, total, **kw):
        state["step"] = done

    def on_audio(samples):
        chunks.append(samples)
        steps_at_chunk.append(state["step"])

    res = generate_streaming(pipe, "lofi", duration, 4, SamplingParams(), progress, None, on_audio, chunk=20)
    stream = np.concatenate(chunks)
    assert stream.dtype == np.float32 and stream.shape == (int(round(duration * 32000)), 1)
    # chunks decoded with 50 frames of history: the LSTM's truncation error (~1e-7, streaming.py) is below rounding
    err = np.abs(stream[:, 0] - res.audio).max()
    assert err < audio_tol(len(res.frames), res.audio), err
    # the saved track does not depend on streaming: same seed without streaming, same samples
    plain = pipe.generate("lofi", duration, 4, SamplingParams())
    assert np.array_equal(plain.audio, res.audio) and np.array_equal(plain.frames, res.frames)
    if duration > 1:
        frames = len(res.frames)
        assert len(chunks) >= 1 + (frames - 25 - 3) // 20  # 25-frame first chunk, then 20-frame chunks
        assert steps_at_chunk[0] < state["step"]  # the first audio arrived long before the last step
        assert res.timings["first_audio_sec"] < res.timings["total_sec"]


def test_backend_on_audio(tmp_path):
    backend = MusicGenBackend(tiny_settings(tmp_path), window_sec=1.0, stride_sec=0.6)
    got = []
    req = GenerationRequest("musicgen", "lofi", 1.5, 3, backend.validate({}))
    out = backend.generate(req, lambda *a, **k: None, CancelToken(), on_audio=got.append)
    stream = np.concatenate(got)
    assert stream.shape == out.samples.shape == (48000, 1)
    err = np.abs(stream - out.samples).max()
    assert err < audio_tol(int(1.5 * 50), out.samples), err  # 50 frames/s
