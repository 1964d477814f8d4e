"""The Riffusion backend: strict parameters, model sources (local ONNX export, PyTorch-only directory, hub),
clip chaining with equal-power crossfades, and generation on the tiny fixture (48 kHz mono, progress, cancel)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.backends.riffusion import backend as rb
from lofi_daemon.cancel import CancelToken
from lofi_daemon.config import ModelSettings, Settings
from lofi_daemon.errors import Cancelled, ErrorCode, LofiError

from tests.riffusion_helpers import FIXTURE


def make(tmp_path, folder=FIXTURE) -> rb.RiffusionBackend:
    s = Settings(cache_dir=tmp_path / "cache", threads=1)
    s.models["riffusion"] = ModelSettings(dir=folder)
    return rb.RiffusionBackend(s)


def test_validate_fills_defaults_and_is_strict(tmp_path):
    b = make(tmp_path)
    assert b.validate({}) == {
        "negative_prompt": "",
        "cfg_scale": 7.0,
        "steps": 30,
        "scheduler": "dpmsolver++",
        "denoising": 1.0,
        "interpolate_to": "",
        "init": "",
        "init_strength": 0.5,
        "init_sha256": "",
    }
    got = b.validate(
        {
            "negative_prompt": "  harsh   noise ",
            "cfg_scale": 3,
            "steps": 12,
            "scheduler": "DPM++",
            "denoising": 0.5,
            "interpolate_to": " rainy  jazz",
        }
    )
    assert got == {
        "negative_prompt": "harsh noise",
        "cfg_scale": 3.0,
        "steps": 12,
        "scheduler": "dpmsolver++",
        "denoising": 0.5,
        "interpolate_to": "rainy jazz",
        "init": "",
        "init_strength": 0.5,
        "init_sha256": "",
    }
    assert b.validate({"scheduler": "ddim"})["scheduler"] == "ddim"
    with pytest.raises(LofiError):  # strict like the other backends: no float for a whole number
        b.validate({"steps": 12.0})
    # the plugin's generic spellings (steps= → inference_steps, guidance= → guidance_scale) mean the same
    assert b.validate({"inference_steps": 12, "guidance_scale": 3}) == b.validate(
        {"steps": 12, "cfg_scale": 3}
    )
    with pytest.raises(LofiError) as err:
        b.validate({"steps": 12, "inference_steps": 13})
    assert err.value.code == ErrorCode.INVALID_PARAMS and err.value.data["param"] == "inference_steps"
    bad = {
        "top_k": (250, ErrorCode.INVALID_PARAMS),  # another backend's parameter
        "cfg_scale": (0.5, ErrorCode.INVALID_GUIDANCE_SCALE),
        "steps": (2.5, ErrorCode.INVALID_INFERENCE_STEPS),
        "scheduler": ("euler", ErrorCode.INVALID_SCHEDULER),
        "negative_prompt": (7, ErrorCode.INVALID_PARAMS),
        "interpolate_to": ("x" * 1001, ErrorCode.INVALID_PARAMS),
        "denoising": (1.5, ErrorCode.INVALID_PARAMS),
    }
    for key, (value, code) in bad.items():
        with pytest.raises(LofiError) as err:
            b.validate({key: value})
        assert err.value.code == code and err.value.data["param"] == key
    for value in (True, float("nan"), 101, 0):
        with pytest.raises(LofiError):
            b.validate({"steps": value})
    with pytest.raises(LofiError) as err:  # 0.1 of 5 steps runs none
        b.validate({"steps": 5, "denoising": 0.1})
    assert err.value.data["param"] == "denoising"


def test_registry_names_the_real_hub_repo_without_invented_hashes():
    from lofi_daemon.models.registry import RIFFUSION_VARIANTS, default_variant

    v = default_variant("riffusion", "cpu")
    assert v is RIFFUSION_VARIANTS["v1-diffusers"] and v.repo_id == "riffusion/riffusion-model-v1"
    assert v.commit is None and all(f.sha256 is None and f.size is None for f in v.files)
    assert {"unet", "vae", "text_encoder", "tokenizer_vocab", "tokenizer_merges", "scheduler"} <= {
        f.role for f in v.files
    }


def test_model_sources(tmp_path, monkeypatch):
    b = make(tmp_path)
    assert b.is_installed() and b.model_version().startswith("riffusion-onnx-")
    assert b.status()["installed"] is True and b.status()["source"] == "local"

    torch_layout = tmp_path / "pt"
    (torch_layout / "unet").mkdir(parents=True)
    (torch_layout / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    with pytest.raises(LofiError) as err:
        make(tmp_path, torch_layout).model_dir()
    assert (
        err.value.code == ErrorCode.MODEL_NOT_FOUND and "lofi-daemon convert riffusion" in err.value.message
    )

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    hub_backend = rb.RiffusionBackend(Settings(cache_dir=tmp_path / "cache"))
    assert not hub_backend.is_installed()
    with pytest.raises(LofiError) as err:
        hub_backend.model_dir()
    assert err.value.code == ErrorCode.BACKEND_NOT_INSTALLED
    assert "riffusion/riffusion-model-v1" in err.value.message and "export" in err.value.message
    assert hub_backend.status()["needs_export"] is True
    # `lofi-daemon convert riffusion` writes into lofi's model folder, found there without any setting
    import shutil

    shutil.copytree(FIXTURE, hub_backend.converted_dir(), ignore=shutil.ignore_patterns("torch"))
    assert hub_backend.is_installed() and hub_backend.local_dir == hub_backend.converted_dir()
    assert hub_backend.status()["source"] == "local"


def test_clip_plan_covers_the_duration_with_no_spare_clip():
    clip, fade = rb.spectrogram.RIFFUSION_V1.samples_for_width(512), int(rb.CROSSFADE_SEC * rb.MODEL_RATE)
    for dur in (5.0, 5.11, 5.2, 10.0, 60.0, 240.0):
        n = rb.clip_plan(dur, clip, fade)
        need = math.ceil(dur * rb.MODEL_RATE)
        assert n * clip - (n - 1) * fade >= need
        assert n == 1 or (n - 1) * clip - (n - 2) * fade < need


def test_chain_is_an_equal_power_crossfade():
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(40_000) for _ in range(3)]
    fade = 8_000
    out = rb.chain(clips, fade)
    assert out.shape == (3 * 40_000 - 2 * fade,)
    assert np.array_equal(out[: 40_000 - fade], clips[0][: 40_000 - fade])  # untouched outside the seams
    seam = out[40_000 - fade : 40_000]
    # uncorrelated unit-power clips: cos² + sin² = 1 keeps the power at 1 through the seam (±3 σ of the estimate)
    assert abs(np.mean(seam**2) - 1.0) < 3 * math.sqrt(2 / fade)
    t = (np.arange(fade) + 0.5) / fade
    want = clips[0][-fade:] * np.cos(np.pi / 2 * t) + clips[1][:fade] * np.sin(np.pi / 2 * t)
    assert np.allclose(seam, want)


def test_generates_48k_mono_with_progress_per_step(tmp_path):
    b = make(tmp_path)
    params = b.validate({"steps": 2, "cfg_scale": 5})
    events = []
    req = GenerationRequest("riffusion", "dusty lofi piano", 5.0, 9, params)
    out = b.generate(req, lambda done, total, **kw: events.append((done, total, kw)), CancelToken())
    assert out.sample_rate == 48000 and out.samples.shape == (240_000, 1) and out.samples.dtype == np.float32
    assert np.isfinite(out.samples).all() and 0.5 < np.abs(out.samples).max() <= 1.0
    assert [e[:2] for e in events] == [(1, 2), (2, 2)] and events[-1][2]["clips"] == 1
    assert out.info["clips"] == 1 and out.info["image_size"] == [512, 512]


def test_cancel_lands_within_one_step(tmp_path):
    b = make(tmp_path)
    token = CancelToken()
    steps = []

    def progress(done, total, **kw):
        steps.append(done)
        token.cancel()

    req = GenerationRequest("riffusion", "lofi", 12.0, 1, b.validate({"steps": 5}))
    with pytest.raises(Cancelled):
        b.generate(req, progress, token)
    assert steps == [1]


def test_denoising_chains_later_clips_from_the_previous_one(tmp_path):
    b = make(tmp_path)
    tracks, events = {}, {}
    for strength in (1.0, 0.5):
        seen = events[strength] = []
        req = GenerationRequest(
            "riffusion", "lofi piano", 8.0, 4, b.validate({"steps": 2, "denoising": strength})
        )
        tracks[strength] = b.generate(
            req, lambda d, t, seen=seen, **kw: seen.append((d, t)), CancelToken()
        ).samples[:, 0]
    assert events[1.0] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert events[0.5] == [(1, 3), (2, 3), (3, 3)]  # the second clip runs int(2 · 0.5) = 1 step
    # the first clip (until the crossfade, less the resampler's reach) is the same; the second is not
    first = (
        int((rb.spectrogram.RIFFUSION_V1.samples_for_width(512) / rb.MODEL_RATE - rb.CROSSFADE_SEC) * 48000)
        - 100
    )
    assert np.array_equal(tracks[1.0][:first], tracks[0.5][:first])
    assert not np.allclose(tracks[1.0][-48000:], tracks[0.5][-48000:], atol=1e-3)


def test_cancel_after_the_last_step_stops_the_conversion(tmp_path, monkeypatch):
    b = make(tmp_path)
    token = CancelToken()
    iterations = []
    real = rb.spectrogram._GriffinLim._pass

    def counting_pass(self, *args):  # one call per worker and Griffin–Lim iteration
        iterations.append(1)
        return real(self, *args)

    monkeypatch.setattr(rb.spectrogram._GriffinLim, "_pass", counting_pass)

    def progress(done, total, **kw):
        if done == total:
            token.cancel()  # diffusion is over: the conversion in the worker must notice

    req = GenerationRequest("riffusion", "lofi", 5.0, 1, b.validate({"steps": 2}))
    with pytest.raises(Cancelled):
        b.generate(req, progress, token)
    assert iterations == []  # it stopped before its first iteration
    rb.spectrogram.audio_from_image(np.zeros((512, 40), np.uint8))  # the conversion the backend runs
    assert iterations  # counts iterations


def test_slerp_keeps_the_ends_and_the_norm():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 4, 64, 64), dtype=np.float32)
    assert np.allclose(rb.slerp(0.0, a, b), a, atol=1e-6) and np.allclose(rb.slerp(1.0, a, b), b, atol=1e-6)
    mid = rb.slerp(0.5, a, b)
    # independent Gaussians are nearly orthogonal: the arc keeps the norm where a lerp loses ~29 %
    assert abs(np.linalg.norm(mid) / np.linalg.norm(a) - 1) < 0.02
    assert np.linalg.norm(0.5 * (a + b)) / np.linalg.norm(a) < 0.75
    assert np.allclose(rb.slerp(0.3, a, a), a, atol=1e-6)  # parallel: the lerp branch


def test_interpolate_to_starts_at_the_prompt_and_walks_away(tmp_path):
    b = make(tmp_path)
    out = {}
    for target in ("", "funky drum break"):
        req = GenerationRequest(
            "riffusion", "lofi piano", 8.0, 4, b.validate({"steps": 2, "interpolate_to": target})
        )
        res = b.generate(req, lambda *a, **k: None, CancelToken())
        out[target] = res.samples[:, 0]
        assert res.info["interpolated"] is bool(target) and res.info["clips"] == 2
    first = (
        int((rb.spectrogram.RIFFUSION_V1.samples_for_width(512) / rb.MODEL_RATE - rb.CROSSFADE_SEC) * 48000)
        - 100
    )
    assert np.array_equal(out[""][:first], out["funky drum break"][:first])  # alpha 0: the plain first clip
    assert not np.allclose(out[""][-48000:], out["funky drum break"][-48000:], atol=1e-3)


def test_a_stereo_image_makes_a_stereo_track(tmp_path, monkeypatch):
    """A model that draws riffusion's stereo layout (R black, left in G, right in B) gets both channels decoded:
    a 440 Hz left and a 1000 Hz right picture come out as those tones on those sides."""
    b = make(tmp_path)
    S = rb.spectrogram
    t = np.arange(S.RIFFUSION_V1.samples_for_width(512)) / rb.MODEL_RATE
    left, right = (S.image_from_audio(0.4 * np.sin(2 * np.pi * f * t)) for f in (440.0, 1000.0))
    stereo = np.stack([np.zeros_like(left), left, right], axis=2)
    b.load()
    monkeypatch.setattr(b.pipeline, "image", lambda latents: stereo)
    req = GenerationRequest("riffusion", "lofi", 5.0, 1, b.validate({"steps": 1}))
    out = b.generate(req, lambda *a, **k: None, CancelToken()).samples
    assert out.shape == (240000, 2)
    freqs = np.fft.rfftfreq(out.shape[0], 1 / 48000)
    peaks = [freqs[np.argmax(np.abs(np.fft.rfft(out[:, c] * np.hanning(out.shape[0]))))] for c in (0, 1)]
    assert abs(peaks[0] - 440.0) < 5 and abs(peaks[1] - 1000.0) < 10
    assert np.max(np.abs(out)) <= rb.CLIP_PEAK * 1.05  # one peak for both channels


def test_chain_crossfades_every_channel():
    a, c = np.ones((1000, 2)), -np.ones((1000, 2))
    out = rb.chain([a, c], 100)
    assert out.shape == (1900, 2) and np.array_equal(out[:, 0], out[:, 1])
    assert np.array_equal(out[:, 0], rb.chain([a[:, 0], c[:, 0]], 100))
