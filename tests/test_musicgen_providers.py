"""Execution-provider selection and fallback (no GPU here: availability lists are given explicitly)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lofi_daemon.config import Settings
from lofi_daemon.errors import ErrorCode, LofiError
from lofi_daemon.runtime import sessions
from lofi_daemon.runtime.providers import COREML, CPU, CUDA, plan_providers

FIXTURE = Path(__file__).parent / "fixtures" / "musicgen-tiny"


def test_auto_prefers_cuda_then_coreml_then_cpu():
    assert plan_providers("auto", [CUDA, COREML, CPU]).candidates == ["cuda", "coreml", "cpu"]
    assert plan_providers("auto", [COREML, CPU]).candidates == ["coreml", "cpu"]
    plan = plan_providers("auto", [CPU])
    assert plan.candidates == ["cpu"] and plan.messages == []


def test_explicit_provider_available_keeps_cpu_as_fallback():
    assert plan_providers("cuda", [CUDA, CPU]).candidates == ["cuda", "cpu"]
    assert plan_providers("CoreML", [COREML, CPU]).candidates == ["coreml", "cpu"]
    assert plan_providers("cpu", [CUDA, CPU]).candidates == ["cpu"]


@pytest.mark.parametrize("requested", ["cuda", "coreml"])
def test_unavailable_provider_falls_back_with_message(requested):
    plan = plan_providers(requested, [CPU])
    assert plan.candidates == ["cpu"]
    assert len(plan.messages) == 1
    assert requested in plan.messages[0] and "falling back to cpu" in plan.messages[0]


def test_unknown_provider_name_is_reported_and_auto_used():
    plan = plan_providers("tpu", [CUDA, CPU])
    assert plan.candidates == ["cuda", "cpu"]
    assert "tpu" in plan.messages[0]


def test_create_session_threads_and_fallback_warning():
    warnings: list[str] = []
    settings = Settings(provider="cuda", threads=1)
    sess = sessions.create_session(FIXTURE / "text_encoder.onnx", settings, warn=warnings.append)
    assert sessions.session_provider(sess) == "cpu"
    assert sessions.session_options(settings).intra_op_num_threads == 1
    # this machine's onnxruntime has no CUDA: the user is told once, and the session still works
    assert any("cuda" in w for w in warnings)


def test_create_session_tries_next_provider_when_one_fails(monkeypatch):
    """A provider that is listed but fails at session creation (e.g. broken CUDA install) is skipped."""
    import onnxruntime as ort

    real = ort.InferenceSession
    tried: list[list[str]] = []

    def fake_session(path, sess_options=None, providers=None):
        tried.append(list(providers))
        if CUDA in providers:
            raise RuntimeError("CUDA failure 500: named symbol not found")
        return real(path, sess_options=sess_options, providers=providers)

    monkeypatch.setattr(sessions.ort, "InferenceSession", fake_session)
    monkeypatch.setattr("lofi_daemon.runtime.providers.ort.get_available_providers", lambda: [CUDA, CPU])
    sess = sessions.create_session(FIXTURE / "text_encoder.onnx", Settings(provider="auto"))
    assert tried == [[CUDA, CPU], [CPU]]
    assert sessions.session_provider(sess) == "cpu"


def test_create_session_missing_file_is_model_load_failed(tmp_path):
    with pytest.raises(LofiError) as ei:
        sessions.create_session(tmp_path / "nope.onnx", Settings(provider="cpu"))
    assert ei.value.code == ErrorCode.MODEL_LOAD_FAILED
    assert "nope.onnx" in ei.value.message


def test_provider_facts_are_logged_once_per_process(caplog):
    # an availability list no other test uses: the message is new to this process
    available = [CPU, "OnlyInThisTestExecutionProvider"]
    with caplog.at_level("INFO", logger="lofi_daemon.runtime.providers"):
        for _ in range(22):  # e.g. one `:Lofi models` asked the backends' status this often
            plan_providers("auto", available)
    lines = [r.getMessage() for r in caplog.records if "provider auto" in r.getMessage()]
    assert sorted(lines) == sorted(
        f"provider auto: {name} not available in this onnxruntime build (has: cpu, OnlyInThisTestExecutionProvider)"
        for name in ("cuda", "coreml")
    )


def test_daemon_log_says_a_provider_fact_once(daemon, tmp_path):
    d = daemon()
    d.call("initialize", {})
    for _ in range(5):
        d.call("get_backends")
        d.call("status")
    d.call("shutdown")
    d.proc.wait(30)
    log_text = (tmp_path / "log" / "daemon.log").read_text()
    for name in ("cuda", "coreml"):
        assert log_text.count(f"provider auto: {name} not available") <= 1


@pytest.mark.parametrize("backend_cls", ["musicgen", "ace_step"])
def test_backend_fallback_warning_uses_the_level_the_plugin_shows(tmp_path, backend_cls):
    # the plugin shows `log` notifications of level "warning" or "error" only; backends once sent "warn"
    from lofi_daemon.backends.ace_step.backend import AceStepBackend
    from lofi_daemon.backends.musicgen.backend import MusicGenBackend
    from lofi_daemon.config import ModelSettings

    from tests.ace_step_helpers import FIXTURE as ACE_FIXTURE

    sent: list[tuple[str, dict]] = []
    settings = Settings(cache_dir=tmp_path, log_dir=tmp_path, provider="cuda", threads=1)
    if backend_cls == "musicgen":
        settings.models["musicgen"] = ModelSettings(dir=FIXTURE)
        backend = MusicGenBackend(settings, lambda m, p: sent.append((m, p)))
    else:
        settings.models["ace_step"] = ModelSettings(dir=ACE_FIXTURE)
        backend = AceStepBackend(settings, lambda m, p: sent.append((m, p)))
    backend.load()
    levels = {p["level"] for m, p in sent if m == "log"}
    assert levels == {"warning"}, sent
