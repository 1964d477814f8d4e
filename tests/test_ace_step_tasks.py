"""Upstream's editing tasks through AceStepBackend on the tiny fixture (no torch): a source track is generated and
cached, then retaken, repainted, extended, used as audio2audio reference and edited. The loops' maths against
upstream's is in tests/test_ace_step_tasks_reference.py; here: what each task keeps, its length, its identity,
and the errors for bad requests."""

from __future__ import annotations

import os

import numpy as np
import pytest
from lofi_daemon.backends.ace_step.backend import AceStepBackend
from lofi_daemon.backends.base import GenerationRequest, track_id_for
from lofi_daemon.cache.store import TrackStore
from lofi_daemon.cancel import CancelToken
from lofi_daemon.config import Settings
from lofi_daemon.errors import ErrorCode, LofiError

from tests.ace_step_helpers import FIXTURE, rel_err

LATENT_SEC = 4096 / 44100


def make_backend(tmp_path, model_dir=FIXTURE) -> AceStepBackend:
    s = Settings.from_env(
        {"LOFI_ACE_STEP_DIR": str(model_dir), "LOFI_CACHE_DIR": str(tmp_path), "LOFI_THREADS": "1"}
    )
    return AceStepBackend(s, tracks=TrackStore(tmp_path / "tracks"))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A loaded backend with a store holding one 5 s ACE-Step track (6 steps, lyrics) and one foreign track."""
    b = make_backend(tmp_path_factory.mktemp("tasks"))
    b.load()
    latents: list[np.ndarray] = []
    decode = b.pipeline.latents_to_audio

    def spy(lat, *a, **k):  # the latents of every generation, to check what the tasks keep
        latents.append(lat)
        return decode(lat, *a, **k)

    b.pipeline.latents_to_audio = spy
    source = run(b, "rainy night lofi piano", inference_steps=6, lyrics="la la la", seed=11)
    foreign = GenerationRequest("musicgen", "a tone", 5.0, 1, {"top_k": 250})
    b.tracks.put("00000000000000aa", source[1], request=foreign, model_version="x", generation_time_sec=1)
    return b, source[0], latents


def run(b, prompt="rainy night lofi piano", seed=5, duration=5.0, **params):
    req = GenerationRequest("ace_step", prompt, duration, seed, b.validate(params))
    audio = b.generate(req, lambda *a, **k: None, CancelToken())
    track_id = track_id_for(req, b.model_version())
    b.tracks.put(track_id, audio, request=req, model_version=b.model_version(), generation_time_sec=1)
    return track_id, audio


def test_retake_at_variance_zero_is_the_source_and_above_zero_a_variation(env):
    b, source, _ = env
    original = b.tracks.read_audio(source)[0]
    # the source's noise, steps and lyrics come from the source track; the request's seed is the retake seed
    params = b.validate({"task": "retake", "source_track": source})
    assert params["inference_steps"] == 6 and params["lyrics"] == "la la la"
    assert params["retake_variance"] == 0.5
    same = run(b, task="retake", source_track=source, retake_variance=0.0, seed=99)[1].samples
    assert same.shape == original.shape
    assert rel_err(same, original) < 1e-3  # only the FLAC's 24-bit rounding differs
    varied = run(b, task="retake", source_track=source, retake_variance=0.5, seed=99)[1].samples
    other = run(b, task="retake", source_track=source, retake_variance=0.5, seed=100)[1].samples
    assert varied.shape == original.shape
    assert rel_err(varied, original) > 1e-2 and rel_err(varied, other) > 1e-2


def test_a_variation_of_a_variation_starts_where_that_variation_started(env):
    b, source, _ = env
    root = run(b, "dusty tape loop", inference_steps=6, seed=31)[0]
    first = run(b, "dusty tape loop", task="retake", source_track=root, retake_variance=0.4, seed=21)[0]
    # at variance 0 the variation's variation is the variation itself (its noise is rebuilt through the chain)
    again = run(b, "dusty tape loop", task="retake", source_track=first, retake_variance=0.0, seed=22)[1]
    assert rel_err(again.samples, b.tracks.read_audio(first)[0]) < 1e-3
    assert rel_err(again.samples, b.tracks.read_audio(root)[0]) > 1e-2
    # a repainted track is not a generation to vary
    painted = run(b, task="repaint", source_track=source, repaint_start=1.0, repaint_end=2.0)[0]
    with pytest.raises(LofiError, match="made by repaint"):
        b.validate({"task": "retake", "source_track": painted})
    # once the variation's source is evicted its noise cannot be rebuilt: said, not guessed
    req = GenerationRequest("ace_step", "p", 5.0, 23, b.validate({"task": "retake", "source_track": first}))
    b.tracks.delete(root)
    with pytest.raises(LofiError, match="no longer cached") as e:
        b.generate(req, lambda *a, **k: None, CancelToken())
    assert e.value.code == ErrorCode.TRACK_NOT_FOUND


def test_repaint_regenerates_the_range_and_keeps_the_rest(env):
    b, source, latents = env
    audio, rate = b.tracks.read_audio(source)
    encoded = b.pipeline.encode_audio(audio, rate)[..., :53]  # 5 s = 53 whole latent frames
    track, out = run(b, task="repaint", source_track=source, repaint_start=1.0, repaint_end=3.0)
    lat = latents[-1]
    lo, hi = int(1.0 * 44100 / 4096), int(3.0 * 44100 / 4096)
    assert lat.shape == encoded.shape
    np.testing.assert_array_equal(lat[..., :lo], encoded[..., :lo])
    np.testing.assert_array_equal(lat[..., hi:], encoded[..., hi:])
    assert rel_err(lat[..., lo:hi], encoded[..., lo:hi]) > 0.05
    assert out.samples.shape == audio.shape
    assert out.info["task"] == "repaint" and out.info["source_track"] == source
    stored = b.tracks.get(track)
    assert stored.params["repaint_start"] == 1.0 and stored.params["retake_variance"] == 0.5


def test_extend_adds_frames_on_both_sides(env):
    b, source, latents = env
    audio, rate = b.tracks.read_audio(source)
    encoded = b.pipeline.encode_audio(audio, rate)[
        ..., :53
    ]  # the fraction of a sample past 53 frames is dropped
    _, out = run(b, task="extend", source_track=source, extend_left=1.0, extend_right=2.0)
    left, right = int(1.0 / LATENT_SEC), int(2.0 / LATENT_SEC)
    lat = latents[-1]
    assert lat.shape[-1] == encoded.shape[-1] + left + right
    np.testing.assert_array_equal(lat[..., left : left + encoded.shape[-1]], encoded)
    assert out.samples.shape[0] == audio.shape[0] + round((left + right) * 4096 * 48000 / 44100)


def test_audio2audio_and_edit_keep_the_length_and_move_the_audio(env):
    b, source, latents = env
    audio, rate = b.tracks.read_audio(source)
    encoded = b.pipeline.encode_audio(audio, rate)[..., :53]
    _, weak = run(b, task="audio2audio", source_track=source, ref_audio_strength=0.2)
    weak_lat = latents[-1]
    _, strong = run(b, task="audio2audio", source_track=source, ref_audio_strength=0.8)
    strong_lat = latents[-1]
    assert weak.samples.shape == strong.samples.shape == audio.shape
    assert rel_err(strong_lat, encoded) < rel_err(weak_lat, encoded)  # strength keeps more of the reference
    _, edited = run(b, "sunny morning jazz guitar", task="edit", source_track=source, edit_n_min=0.5)
    assert edited.samples.shape == audio.shape and rel_err(latents[-1], encoded) > 1e-2
    assert edited.info["task"] == "edit"


def test_each_task_has_its_own_identity(env):
    b, source, _ = env
    ids = set()
    for params in (
        {},
        {"task": "retake", "source_track": source},
        {"task": "retake", "source_track": source, "retake_variance": 0.3},
        {"task": "repaint", "source_track": source, "repaint_start": 1.0, "repaint_end": 2.0},
        {"task": "repaint", "source_track": source, "repaint_start": 1.0, "repaint_end": 3.0},
        {"task": "extend", "source_track": source, "extend_right": 5.0},
        {"task": "audio2audio", "source_track": source},
        {"task": "edit", "source_track": source},
    ):
        req = GenerationRequest("ace_step", "p", 5.0, 1, b.validate(params))
        ids.add(track_id_for(req, b.model_version()))
    assert len(ids) == 8
    assert "task" not in b.validate({})  # text2music identities are unchanged


@pytest.mark.parametrize(
    ("params", "code", "words"),
    [
        ({"task": "repaint"}, ErrorCode.INVALID_PARAMS, "needs source_track"),
        ({"task": "paint", "source_track": "SRC"}, ErrorCode.INVALID_PARAMS, "task"),
        ({"source_track": "SRC"}, ErrorCode.INVALID_PARAMS, "needs a task"),
        (
            {"task": "retake", "source_track": "0123456789abcdef"},
            ErrorCode.TRACK_NOT_FOUND,
            "no cached track",
        ),
        ({"task": "retake", "source_track": "not-an-id"}, ErrorCode.INVALID_PARAMS, "source_track"),
        (
            {"task": "retake", "source_track": "SRC", "repaint_start": 1.0},
            ErrorCode.INVALID_PARAMS,
            "not a param",
        ),
        (
            {"task": "repaint", "source_track": "SRC", "repaint_start": 3.0, "repaint_end": 2.0},
            ErrorCode.INVALID_PARAMS,
            "non-empty",
        ),
        (
            {"task": "repaint", "source_track": "SRC", "repaint_start": 1.0, "repaint_end": 60.0},
            ErrorCode.INVALID_PARAMS,
            "non-empty",
        ),
        (
            {"task": "repaint", "source_track": "SRC", "repaint_start": 1.03, "repaint_end": 1.1},
            ErrorCode.INVALID_PARAMS,
            "spanning a latent frame",
        ),
        ({"task": "extend", "source_track": "SRC"}, ErrorCode.INVALID_PARAMS, "extend_left or extend_right"),
        ({"task": "extend", "source_track": "SRC", "extend_right": 238.0}, ErrorCode.INVALID_DURATION, "240"),
        (
            {"task": "audio2audio", "source_track": "SRC", "ref_audio_strength": 0.99},
            ErrorCode.INVALID_PARAMS,
            "no step",
        ),
        (
            {"task": "edit", "source_track": "SRC", "edit_n_min": 0.8, "edit_n_max": 0.5},
            ErrorCode.INVALID_PARAMS,
            "below",
        ),
        ({"task": "retake", "source_track": "00000000000000aa"}, ErrorCode.INVALID_PARAMS, "musicgen track"),
    ],
)
def test_bad_task_requests_get_clear_errors(env, params, code, words):
    b, source, _ = env
    params = {k: (source if v == "SRC" else v) for k, v in params.items()}
    with pytest.raises(LofiError) as e:
        b.validate(params)
    assert e.value.code == code and words in e.value.message, e.value.message


def test_foreign_tracks_can_be_repainted(env):
    b, _, _ = env
    params = b.validate({"task": "repaint", "source_track": "00000000000000aa", "repaint_end": 2.0})
    assert params["repaint_start"] == 0.0 and params["inference_steps"] == 30  # nothing inherited


def test_without_a_track_cache_or_an_encoder_tasks_are_refused(tmp_path, env):
    _, source, _ = env
    lone = AceStepBackend(
        Settings.from_env({"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path)})
    )
    with pytest.raises(LofiError, match="track cache"):
        lone.validate({"task": "retake", "source_track": source})
    # an export made before the encoder existed: every file but dcae_encoder.onnx
    old = tmp_path / "old-export"
    old.mkdir()
    for f in FIXTURE.iterdir():
        if f.name != "dcae_encoder.onnx":
            os.symlink(f, old / f.name)
    s = Settings.from_env(
        {"LOFI_ACE_STEP_DIR": str(old), "LOFI_CACHE_DIR": str(tmp_path), "LOFI_THREADS": "1"}
    )
    b = AceStepBackend(s, tracks=env[0].tracks)
    req = GenerationRequest(
        "ace_step", "p", 5.0, 1, b.validate({"task": "repaint", "source_track": source, "repaint_end": 2.0})
    )
    with pytest.raises(LofiError) as e:
        b.generate(req, lambda *a, **k: None, CancelToken())
    assert e.value.code == ErrorCode.MODEL_NOT_FOUND and "--encoder-only" in e.value.message


def test_a_negative_prompt_is_inherited_like_the_lyrics_and_refused_by_flowedit(env):
    """A retake of a track made with a negative prompt keeps it (the unconditional branch the source was
    generated with); FlowEdit's unconditional pass stays upstream's, so `edit` refuses one instead of ignoring it."""
    b, _, _ = env
    source = run(b, "rainy night lofi piano", inference_steps=2, negative_prompt="vocals", seed=12)[0]
    params = b.validate({"task": "retake", "source_track": source})
    assert params["negative_prompt"] == "vocals"
    with pytest.raises(LofiError) as exc:
        b.validate({"task": "edit", "source_track": source, "negative_prompt": "drums"})
    assert exc.value.data["param"] == "negative_prompt"


def test_progress_counts_the_encode_so_the_eta_covers_it(env):
    """A repaint reports its source's encode first (as ENCODE_SHARE of the decode's cost), then the evaluations it
    runs (the skipped steps are not counted), then the decode; the fraction done only grows and ends at 1."""
    b, source, _ = env
    calls = []
    params = b.validate({"task": "repaint", "source_track": source, "repaint_start": 1.0, "repaint_end": 3.0})
    req = GenerationRequest("ace_step", "p", 5.0, 1, params)
    b.generate(req, lambda done, total, **f: calls.append((done, total, f["stage"])), CancelToken())
    stages = [c[2] for c in calls]
    assert stages[0] == "encode" and stages[-1] == "decode" and "diffusion" in stages
    assert stages == sorted(stages, key=["encode", "diffusion", "decode"].index)
    fractions = [done / total for done, total, _ in calls]
    assert fractions == sorted(fractions) and fractions[0] > 0 and fractions[-1] == pytest.approx(1.0)
    diffusion = [c for c in calls if c[2] == "diffusion"]
    encode_evals = calls[0][0]
    # 6 steps at variance 0.5: steps 3, 4, 5 run; step 3 lies in the guidance window [1, 4), so 2 + 1 + 1
    assert diffusion[-1][0] - encode_evals == pytest.approx(4)
    # the provisional total (before the task's evaluations are known) is the text2music count
    assert calls[0][1] != diffusion[0][1]
