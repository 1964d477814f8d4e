"""The reference (lofi.nvim) ONNX layout: detected by its file names and run at its lower fidelity. Built here by
graph surgery on the tiny fixture (no ERG inputs, scalar timestep, 128-frame DCAE, mono vocoder input)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ace_step_helpers import FIXTURE, fixed_inputs, make_reference_layout, rel_err, tiny_pipeline
from tests.tolerances import ace_latents, f32_tol

pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def ref_dir(tmp_path_factory):
    return make_reference_layout(tmp_path_factory.mktemp("ace-ref") / "ace-step")


def test_detects_both_layouts(ref_dir):
    from lofi_daemon.backends.ace_step.layout import detect

    assert detect(FIXTURE).kind == "lofi"
    assert detect(ref_dir).kind == "reference"
    assert detect(ref_dir.parent) is None


def test_reference_sampling_equals_lofi_without_erg(ref_dir):
    from lofi_daemon.backends.ace_step.layout import detect
    from lofi_daemon.backends.ace_step.pipeline import AceStepPipeline, SamplingParams
    from lofi_daemon.backends.ace_step.sessions import session_factory

    ref = AceStepPipeline(detect(ref_dir), session_factory(threads=1))
    assert not ref.graphs.has_erg and ref.graphs.dcae_fixed == 128 and ref.graphs.vocoder_batch_one
    ours = tiny_pipeline()
    ids, mask, lyric_ids, lyric_mask, noise = fixed_inputs(frames=21, lyrics=False)
    p = ref.effective(SamplingParams(steps=8))
    assert (p.use_erg_tag, p.use_erg_lyric, p.use_erg_diffusion) == (False, False, False)
    lat_ref = ref.sample(ref.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p), noise, p)
    lat_ours = ours.sample(ours.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p), noise, p)
    # the same weights in two graph layouts: float32 rounding only over 8 Euler steps (tests/tolerances.py)
    assert rel_err(lat_ref, lat_ours) < f32_tol(ace_latents(8)), rel_err(lat_ref, lat_ours)
    # ERG (our default) genuinely changes the result, which the reference export cannot do
    p_erg = SamplingParams(steps=8)
    lat_erg = ours.sample(ours.conditions_from_ids(ids, mask, lyric_ids, lyric_mask, p_erg), noise, p_erg)
    assert rel_err(lat_erg, lat_ours) > 1e-3
    # audio: 128-frame DCAE windows (one padded window here) and a per-channel vocoder, still stereo
    wave = ref.waveform(ref.mel(lat_ref))
    assert wave.shape == (2, 21 * 4096) and not np.array_equal(wave[0], wave[1])


def test_backend_generates_with_reference_layout(ref_dir, tmp_path):
    from lofi_daemon.backends.ace_step.backend import AceStepBackend
    from lofi_daemon.backends.base import GenerationRequest
    from lofi_daemon.cancel import CancelToken
    from lofi_daemon.config import Settings
    from lofi_daemon.errors import ErrorCode, LofiError

    notes = []
    b = AceStepBackend(
        Settings.from_env({"LOFI_ACE_STEP_DIR": str(ref_dir), "LOFI_CACHE_DIR": str(tmp_path)}),
        lambda m, p: notes.append((m, p)),
    )
    assert b.is_installed() and b.model_version().startswith("ace-step-reference-")
    params = b.validate({"inference_steps": 4, "lyrics": "la la la"})
    out = b.generate(
        GenerationRequest("ace_step", "lofi", 14.0, 9, params), lambda *a, **k: None, CancelToken()
    )
    assert out.samples.shape == (int(np.ceil(150 * 4096 * 160 / 147)), 2) and out.sample_rate == 48000
    assert out.info["layout"] == "reference" and out.info["erg"] is False
    assert any("reference export" in p.get("message", "") for m, p in notes if m == "log")
    style = tmp_path / "lora" / "s"
    style.mkdir(parents=True)
    (style / "pytorch_lora_weights.safetensors").write_bytes(b"x")
    with pytest.raises(LofiError) as e:
        b.generate(
            GenerationRequest("ace_step", "lofi", 5.0, 9, b.validate({"lora": "s", "inference_steps": 2})),
            lambda *a, **k: None,
            CancelToken(),
        )
    assert e.value.code == ErrorCode.INVALID_PARAMS
