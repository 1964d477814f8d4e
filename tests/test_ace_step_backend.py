"""AceStepBackend on the tiny fixture (no torch): generation through the backend class, determinism, cancel
granularity, validation codes, defaults, LoRA identity, model discovery and the memory / install checks."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.ace_step import backend as backend_mod
from lofi_daemon.backends.ace_step.backend import AceStepBackend
from lofi_daemon.backends.base import GenerationRequest, track_id_for
from lofi_daemon.cancel import CancelToken
from lofi_daemon.config import Settings
from lofi_daemon.errors import Cancelled, ErrorCode, LofiError

from tests.ace_step_helpers import FIXTURE, rel_err, tiny_pipeline
from tests.tolerances import ACE_VELOCITY, f32_tol


def make_backend(tmp_path, **kw) -> AceStepBackend:
    s = Settings.from_env(
        {"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path), "LOFI_THREADS": "1"}
    )
    return AceStepBackend(s, **kw)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    b = make_backend(tmp_path_factory.mktemp("ace"))
    b.load()
    return b


def request(b, seed=3, duration=5.0, **params):
    raw = {"inference_steps": 6, **params}
    return GenerationRequest("ace_step", "rainy night lofi piano", duration, seed, b.validate(raw))


def test_generates_deterministic_stereo_48k_of_requested_length(backend):
    steps = []
    out = backend.generate(request(backend), lambda d, t, **f: steps.append((d, t, f)), CancelToken())
    again = backend.generate(request(backend), lambda *a, **k: None, CancelToken())
    other = backend.generate(request(backend, seed=4), lambda *a, **k: None, CancelToken())
    assert out.sample_rate == 48000 and out.samples.dtype == np.float32 and out.samples.ndim == 2
    assert out.samples.shape[1] == 2
    # upstream floors the latent frame count: the track is within one latent frame (92.9 ms) of the request
    assert abs(out.duration_sec - 5.0) <= 4096 / 44100
    assert out.samples.shape[0] == int(np.ceil(53 * 4096 * 160 / 147))
    assert np.isfinite(out.samples).all() and np.abs(out.samples).max() > 0
    assert not np.array_equal(out.samples[:, 0], out.samples[:, 1])
    np.testing.assert_array_equal(out.samples, again.samples)
    assert rel_err(out.samples, other.samples) > 1e-3
    diffusion = [s for s in steps if s[2]["stage"] == "diffusion"]
    assert [s[2]["current_step"] for s in diffusion] == [1, 2, 3, 4, 5, 6]
    assert all(s[2]["total_steps"] == 6 for s in steps)
    # progress counts evaluations (6 steps, cond + uncond in the guidance window [1, 4): 9), then the decode
    assert [s[0] for s in diffusion] == [1, 3, 5, 7, 8, 9] == [s[2]["evaluations"] for s in diffusion]
    assert len({s[1] for s in steps}) == 1
    assert_progress_covers_decode(steps)
    assert out.info["layout"] == "lofi" and out.info["latent_frames"] == 53


def assert_progress_covers_decode(steps):
    """Progress keeps moving after the last diffusion step (DCAE, then vocoder) and ends at the total, so an ETA
    taken from it (elapsed / done × remaining) includes the decode."""
    total = steps[0][1]
    decode = [s for s in steps if s[2]["stage"] == "decode"]
    last_diffusion = max(s[0] for s in steps if s[2]["stage"] == "diffusion")
    assert last_diffusion < total
    assert [s[2]["decode_fraction"] for s in decode] == [0.3, 1.0]  # one DCAE call, one vocoder call
    assert [s[0] for s in steps] == sorted(s[0] for s in steps) and decode[0][0] > last_diffusion
    assert decode[-1][0] == pytest.approx(total)


def test_decode_cost_for_eta_is_learned_from_the_last_generation(tmp_path):
    b = make_backend(tmp_path)
    first, second = [], []
    b.generate(request(b, inference_steps=4), lambda d, t, **f: first.append((d, t, f)), CancelToken())
    measured = b._decode_evals
    b.generate(request(b, inference_steps=4), lambda d, t, **f: second.append((d, t, f)), CancelToken())
    evals = 6  # 4 steps, the guidance window [1, 3) doubled
    assert (
        first[0][1]
        == evals + backend_mod.DECODE_EVALS_PRIOR["int8" if b.decoder_dtype(b.layout()) == "int8" else "fp32"]
    )
    assert measured is not None and measured > 0 and second[0][1] == pytest.approx(evals + measured)
    assert_progress_covers_decode(second)


def test_cancel_stops_within_one_evaluation(backend):
    graphs = backend.pipeline.graphs
    token = CancelToken()
    calls = []
    real = graphs.velocity

    def counting(*a, **k):
        calls.append(1)
        if len(calls) == 5:  # cancelled while the 5th evaluation runs (inside the guidance window)
            token.cancel()
        return real(*a, **k)

    graphs.velocity = counting
    try:
        with pytest.raises(Cancelled):
            backend.generate(request(backend, inference_steps=10), lambda *a, **k: None, token)
    finally:
        del graphs.velocity
    assert len(calls) == 5


def test_batched_cond_uncond_equals_separate_calls():
    from lofi_daemon.backends.ace_step.pipeline import SamplingParams

    from tests.ace_step_helpers import fixed_inputs

    pipe = tiny_pipeline()
    ids, mask, lyric_ids, lyric_mask, noise = fixed_inputs(frames=17)
    p = SamplingParams(steps=8)
    c = pipe.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p)
    one = pipe.sample(c, noise, p)
    pipe.batch_cfg = True
    two = pipe.sample(c, noise, p)
    # same conditions, batched or not: only the kernels' blocking differs over 8 chained evaluations
    assert rel_err(two, one) < f32_tol(8 * ACE_VELOCITY), rel_err(two, one)


@pytest.mark.parametrize("negative_len", [4, 15])  # shorter and longer than the prompt's 9 tokens
def test_negative_prompt_is_the_unconditional_branch(negative_len):
    """The negative prompt's text states replace the unconditional branch's null text, with their own mask: that
    branch is then exactly the negative prompt's own conditional encoding with the lyrics zeroed (upstream's
    unconditional branch zeroes the lyrics). Batched with the conditional branch (the shorter one padded under a
    zero mask) it samples what the separate calls do, and it changes the result."""
    from lofi_daemon.backends.ace_step.pipeline import SamplingParams

    from tests.ace_step_helpers import fixed_inputs

    pipe = tiny_pipeline()
    ids, mask, lyric_ids, lyric_mask, noise = fixed_inputs(frames=17)
    neg_ids = np.random.default_rng(5).integers(3, 300, size=(1, negative_len)).astype(np.int64)
    negative = (neg_ids, np.ones_like(neg_ids))
    plain_p = SamplingParams(steps=6, use_erg_tag=False, use_erg_lyric=False, use_erg_diffusion=False)
    c = pipe.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, plain_p, negative)
    as_cond = pipe.conditions_from_ids(neg_ids, negative[1], np.zeros_like(lyric_ids), lyric_mask, plain_p)
    without = pipe.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, plain_p)
    np.testing.assert_array_equal(c.cond, without.cond)
    np.testing.assert_array_equal(c.uncond, as_cond.cond)
    np.testing.assert_array_equal(c.null_mask, as_cond.mask)
    assert c.uncond.shape[1] != c.cond.shape[1]

    p = SamplingParams(steps=6)  # upstream's ERG on: the negative text stays at full strength
    c = pipe.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p, negative)
    one = pipe.sample(c, noise, p)
    pipe.batch_cfg = True
    two = pipe.sample(c, noise, p)
    assert rel_err(two, one) < f32_tol(6 * ACE_VELOCITY), rel_err(two, one)
    plain = pipe.sample(pipe.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p), noise, p)
    assert rel_err(one, plain) > 1e-3


def test_negative_prompt_param_and_identity(backend):
    base = backend.validate({})
    assert "negative_prompt" not in base  # none: requests without one keep their ids
    assert backend.validate({"negative_prompt": "  \n "}) == base
    neg = backend.validate({"negative_prompt": " vocals,\n  drums "})
    assert neg == {**base, "negative_prompt": "vocals, drums"}
    ids = {
        track_id_for(GenerationRequest("ace_step", "lofi", 5.0, 1, params), "v")
        for params in (base, neg, backend.validate({"negative_prompt": "vocals"}))
    }
    assert len(ids) == 3
    with pytest.raises(LofiError) as err:
        backend.validate({"negative_prompt": "x" * 1001})
    assert err.value.data["param"] == "negative_prompt"
    out = backend.generate(request(backend, negative_prompt="vocals"), lambda *a, **k: None, CancelToken())
    plain = backend.generate(request(backend), lambda *a, **k: None, CancelToken())
    assert rel_err(out.samples, plain.samples) > 1e-3


def test_defaults_and_identity(tmp_path):
    b = make_backend(tmp_path)
    params = b.validate({})
    # the CPU preset: 30 Euler steps instead of upstream's 60, everything else upstream's defaults
    assert params == {
        "inference_steps": 30,
        "guidance_scale": 15.0,
        "scheduler": "euler",
        "cfg_type": "apg",
        "omega": 10.0,
        "guidance_interval": 0.5,
    }
    assert b.validate({"inference_steps": 60})["inference_steps"] == 60
    gpu = AceStepBackend(Settings(provider="cuda"))
    assert gpu.provider != "cpu" or gpu.validate({})["inference_steps"] == 30  # no CUDA here: falls back
    assert (b.sample_rate, b.channels, b.min_duration_sec, b.max_duration_sec, b.default_duration_sec) == (
        48000,
        2,
        5.0,
        240.0,
        60.0,
    )
    style = tmp_path / "lora" / "dusty-tape"
    style.mkdir(parents=True)
    (style / "pytorch_lora_weights.safetensors").write_bytes(b"x")
    with_lora = b.validate({"lora": "dusty-tape", "lora_weight": 0.5})
    assert with_lora["lora"] == "dusty-tape" and with_lora["lora_weight"] == 0.5
    assert b.validate({"lora": "dusty-tape"})["lora_weight"] == 1.0
    ids = {
        track_id_for(GenerationRequest("ace_step", "p", 30.0, 1, prm), b.model_version())
        for prm in (params, with_lora, b.validate({"lora": "dusty-tape"}), b.validate({"lyrics": "la la"}))
    }
    assert len(ids) == 4
    assert b.model_version().startswith("ace-step-lofi-")


@pytest.mark.parametrize(
    "raw,code",
    [
        ({"inference_steps": 0}, ErrorCode.INVALID_INFERENCE_STEPS),
        ({"inference_steps": 201}, ErrorCode.INVALID_INFERENCE_STEPS),
        ({"inference_steps": 2.5}, ErrorCode.INVALID_INFERENCE_STEPS),
        ({"guidance_scale": 0.5}, ErrorCode.INVALID_GUIDANCE_SCALE),
        ({"guidance_scale": 30.5}, ErrorCode.INVALID_GUIDANCE_SCALE),
        ({"scheduler": "ddim"}, ErrorCode.INVALID_SCHEDULER),
        ({"cfg_type": "double"}, ErrorCode.INVALID_PARAMS),
        ({"guidance_interval": 1.5}, ErrorCode.INVALID_PARAMS),
        ({"lora": "no-such-style"}, ErrorCode.INVALID_PARAMS),
        ({"lora_weight": 0.5}, ErrorCode.INVALID_PARAMS),
        ({"lyrics": 5}, ErrorCode.INVALID_PARAMS),
    ],
)
def test_validation_codes(tmp_path, raw, code):
    with pytest.raises(LofiError) as e:
        make_backend(tmp_path).validate(raw)
    assert e.value.code == code


@pytest.mark.parametrize("duration", [4.9, 240.5])
def test_duration_outside_5_to_240_is_invalid_duration(tmp_path, duration):
    from lofi_daemon.jobs.api import build_job
    from lofi_daemon.rpc.schemas.generation import GenerateParams

    b = make_backend(tmp_path)
    backends = {"ace_step": b}
    with pytest.raises(LofiError) as e:
        build_job(
            backends,
            b.settings,
            GenerateParams(prompt="x", backend="ace_step", duration_sec=duration),
            "normal",
        )
    assert e.value.code == ErrorCode.INVALID_DURATION
    job = build_job(
        backends, b.settings, GenerateParams(prompt="x", backend="ace_step", duration_sec=240), "normal"
    )
    assert job.request.params["inference_steps"] == 30  # the CPU preset


def test_memory_check_refuses_to_load(tmp_path, monkeypatch):
    b = make_backend(tmp_path)
    monkeypatch.setattr(backend_mod, "available_memory_bytes", lambda: 1000)
    with pytest.raises(LofiError) as e:
        b.load()
    assert e.value.code == ErrorCode.MODEL_LOAD_FAILED and "memory" in e.value.message
    plan = b.memory_plan(b.layout())
    assert e.value.data["needed_bytes"] == plan.need_bytes > 1_000_000 and not b.loaded
    monkeypatch.setattr(backend_mod, "available_memory_bytes", lambda: 64 * 10**9)
    b.load()
    assert b.loaded


def test_hub_variant_not_installed_says_size(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    b = AceStepBackend(Settings.from_env({"LOFI_CACHE_DIR": str(tmp_path)}))
    assert not b.is_installed()
    with pytest.raises(LofiError) as e:
        b.layout()
    assert e.value.code == ErrorCode.BACKEND_NOT_INSTALLED and "12.3 GB" in e.value.message
    st = b.status()
    assert st["installed"] is False and st["layout"] == "reference" and len(st["missing_files"]) == 7


def test_local_dir_without_model_is_model_not_found(tmp_path):
    s = Settings.from_env({"LOFI_ACE_STEP_DIR": str(tmp_path), "LOFI_CACHE_DIR": str(tmp_path)})
    b = AceStepBackend(s)
    assert not b.is_installed()
    with pytest.raises(LofiError) as e:
        b.layout()
    assert e.value.code == ErrorCode.MODEL_NOT_FOUND


def test_runtime_imports_neither_torch_nor_onnx():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, lofi_daemon.backends.ace_step.backend; "
        "bad = [m for m in ('torch', 'transformers', 'diffusers', 'optimum', 'onnx') if m in sys.modules]; "
        "sys.exit(1 if bad else 0)"
    )
    root = Path(__file__).resolve().parent.parent
    assert subprocess.run([sys.executable, "-c", code], cwd=root / "daemon").returncode == 0


def test_download_checks_disk_space_and_announces_size(tmp_path, monkeypatch):
    import collections

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    notes = []
    b = AceStepBackend(
        Settings.from_env({"LOFI_CACHE_DIR": str(tmp_path)}), lambda m, p: notes.append((m, p))
    )
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(backend_mod.shutil, "disk_usage", lambda p: usage(10**12, 0, 5 * 10**9))
    with pytest.raises(LofiError) as e:
        b.download(None, CancelToken())
    assert e.value.code == ErrorCode.MODEL_DOWNLOAD_FAILED and "disk space" in e.value.message
    calls = []
    monkeypatch.setattr(backend_mod.shutil, "disk_usage", lambda p: usage(10**12, 0, 50 * 10**9))
    monkeypatch.setattr(backend_mod.hub, "download_variant", lambda v, progress, cancel: calls.append(v.name))
    b.download(None, CancelToken())
    assert calls == ["lofi-nvim-fp32"]
    assert any(m == "log" and "12.3 GB" in p["message"] for m, p in notes)
