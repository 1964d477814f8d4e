"""ACE-Step's memory plan: which sessions are open when, what is needed before anything loads, and that staged
("low") generation gives exactly what resident ("high") generation gives."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.ace_step import backend as backend_mod
from lofi_daemon.backends.ace_step import memory
from lofi_daemon.backends.ace_step.backend import AceStepBackend
from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.cancel import CancelToken
from lofi_daemon.config import Settings
from lofi_daemon.errors import Cancelled, ErrorCode, LofiError

from tests.ace_step_helpers import FIXTURE

GB = 10**9
SIZES = {
    "text_encoder": 1 * GB,
    "transformer_encoder": GB // 2,
    "transformer_decoder": 3 * GB,
    "dcae_decoder": GB // 2,
    "vocoder": GB // 2,
}
TOTAL = sum(SIZES.values()) + memory.ACTIVATIONS_BYTES


def test_plan_arithmetic():
    low = memory.plan("low", SIZES, None)
    assert not low.resident and low.need_bytes == 3 * GB + memory.ACTIVATIONS_BYTES
    assert low.largest_stage == "transformer_decoder"
    high = memory.plan("high", SIZES, 1)
    assert high.resident and high.need_bytes == TOTAL
    # auto: resident only when everything takes at most 70 % of what is available
    assert memory.plan("auto", SIZES, int(TOTAL / 0.7) + 1).resident
    assert not memory.plan("auto", SIZES, int(TOTAL / 0.7) - 1).resident
    assert memory.plan("auto", SIZES, None).resident  # unknown free memory: the old behaviour


def test_requested_mode_from_environment():
    assert memory.requested_mode({}) == "auto"
    assert memory.requested_mode({memory.ENV_MEMORY: " LOW "}) == "low"
    assert memory.requested_mode({memory.ENV_MEMORY: "lots"}) == "auto"


def test_stage_bytes_count_external_data():
    sizes = memory.stage_bytes({"transformer_decoder": FIXTURE / "transformer_decoder.onnx"})
    raw = (FIXTURE / "transformer_decoder.onnx").stat().st_size
    raw += (FIXTURE / "transformer_decoder_weights.bin").stat().st_size
    assert sizes == {"transformer_decoder": int(raw * memory.PREPACK_FACTOR)}
    # weights inside the graph: protobuf and initializers coexist while loading
    inline = memory.stage_bytes({"vocoder": FIXTURE / "vocoder.onnx"})
    assert inline == {"vocoder": int((FIXTURE / "vocoder.onnx").stat().st_size * memory.INLINE_FACTOR)}


def make_backend(tmp_path, monkeypatch, mode: str, free: int | None = 64 * GB) -> tuple[AceStepBackend, list]:
    monkeypatch.setenv(memory.ENV_MEMORY, mode)
    monkeypatch.setattr(backend_mod, "available_memory_bytes", lambda: free)
    opened: list[tuple[str, list[str]]] = []
    real = backend_mod.session_factory

    def factory(*a, **k):
        make = real(*a, **k)

        def counted(path, init):
            opened.append(path)
            return make(path, init)

        return counted

    monkeypatch.setattr(backend_mod, "session_factory", factory)
    s = Settings.from_env(
        {"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path), "LOFI_THREADS": "1"}
    )
    return AceStepBackend(s), opened


def request(b, **params):
    return GenerationRequest(
        "ace_step", "rainy night lofi piano", 5.0, 3, b.validate({"inference_steps": 4, **params})
    )


def test_refuses_before_loading_anything_and_names_the_need(tmp_path, monkeypatch):
    b, opened = make_backend(tmp_path, monkeypatch, "auto", free=1000)
    with pytest.raises(LofiError) as e:
        b.load()
    err = e.value
    plan = b.memory_plan(b.layout())
    assert err.code == ErrorCode.MODEL_LOAD_FAILED and opened == [] and not b.loaded
    assert err.data["needed_bytes"] == plan.need_bytes and err.data["available_bytes"] == 1000
    assert err.data["memory"] == "low" and err.data["largest_stage"] == "transformer_decoder"
    assert f"{plan.need_bytes / 1e9:.1f} GB needed" in err.message and "transformer decoder" in err.message


def test_low_plan_opens_one_stage_at_a_time_and_matches_resident(tmp_path, monkeypatch):
    high, opened_high = make_backend(tmp_path, monkeypatch, "high")
    high.load()
    assert len(opened_high) == 5 and high.pipeline.graphs.resident
    ref = high.generate(request(high), lambda *a, **k: None, CancelToken())
    assert len(opened_high) == 5  # nothing reopened

    low, opened = make_backend(tmp_path, monkeypatch, "low")
    low.load()
    graphs = low.pipeline.graphs
    assert opened == [] and graphs.open_stages == [] and not graphs.resident
    seen = []
    real_session = graphs.session

    def watching(stage):
        sess = real_session(stage)
        seen.append(list(graphs.open_stages))
        return sess

    graphs.session = watching
    out = low.generate(request(low), lambda *a, **k: None, CancelToken())
    del graphs.session
    np.testing.assert_array_equal(out.samples, ref.samples)
    assert max(len(s) for s in seen) == 1  # never two graphs at once
    order = list(dict.fromkeys(s[0] for s in seen))
    assert order == ["text_encoder", "transformer_encoder", "transformer_decoder", "dcae_decoder", "vocoder"]
    assert graphs.open_stages == [] and out.info["memory"] == "low"
    assert len(opened) == 5  # each stage opened once per generation


def test_low_plan_releases_the_decoder_when_cancelled(tmp_path, monkeypatch):
    b, _ = make_backend(tmp_path, monkeypatch, "low")
    token = CancelToken()
    calls = []

    def cancel_on_third(done, total, **f):
        calls.append(f["stage"])
        if len(calls) == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        b.generate(request(b, inference_steps=8), cancel_on_third, token)
    assert b.pipeline.graphs.open_stages == []


def test_low_plan_checks_memory_again_before_each_generation(tmp_path, monkeypatch):
    b, opened = make_backend(tmp_path, monkeypatch, "low")
    b.load()
    monkeypatch.setattr(backend_mod, "available_memory_bytes", lambda: 1000)
    with pytest.raises(LofiError) as e:
        b.generate(request(b), lambda *a, **k: None, CancelToken())
    assert e.value.code == ErrorCode.MODEL_LOAD_FAILED and opened == []


def test_transformer_graphs_hold_disjoint_weights():
    """The DiT is split into an encoder graph and a decoder graph: no weight tensor is stored in both."""
    onnx = pytest.importorskip("onnx")
    from onnx import numpy_helper

    def digests(name):
        m = onnx.load(str(FIXTURE / name), load_external_data=True)
        out = {}
        for t in m.graph.initializer:
            a = numpy_helper.to_array(t)
            if a.size >= 64:  # small constants (shapes, eps) may legitimately repeat
                out[hash((a.dtype.str, a.shape, a.tobytes()))] = t.name
        return out

    enc, dec = digests("transformer_encoder.onnx"), digests("transformer_decoder.onnx")
    assert len(enc) > 10 and len(dec) > 10
    assert set(enc) & set(dec) == set()
