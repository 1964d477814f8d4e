"""The ONNX MusicGen pipeline on the committed tiny random-weight model (no torch needed here).

The transformers equivalence lives in test_musicgen_reference.py (torch-marked).
"""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.musicgen.pipeline import MusicGenPipeline, SamplingParams
from lofi_daemon.backends.musicgen.sampling import apply_guidance, sample
from lofi_daemon.cancel import CancelToken
from lofi_daemon.errors import Cancelled

from tests.musicgen_fixture import cpu_settings, fixture_files
from tests.tolerances import audio_tol

SETTINGS = cpu_settings()


@pytest.fixture(scope="module")
def pipe() -> MusicGenPipeline:
    return MusicGenPipeline(fixture_files(), SETTINGS)


@pytest.fixture(scope="module")
def short_window() -> MusicGenPipeline:
    """A 1 s window with 0.6 s stride: continuation after 50 frames, 20-frame prompts, 30 new frames each."""
    return MusicGenPipeline(fixture_files(), SETTINGS, window_sec=1.0, stride_sec=0.6)


def test_same_seed_same_audio_different_seed_different(pipe):
    a = pipe.generate("rainy night jazz piano", 1.0, 1234)
    b = pipe.generate("rainy night jazz piano", 1.0, 1234)
    c = pipe.generate("rainy night jazz piano", 1.0, 1235)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.audio, b.audio)
    assert not np.array_equal(a.frames, c.frames)
    assert (a.frames != c.frames).mean() > 0.5  # sampling at top-k 250 over 64 codes: mostly different


def test_codes_in_range_and_audio_shape(pipe):
    r = pipe.generate("lofi", 0.5, 7, SamplingParams(top_k=5, temperature=0.7))
    assert r.frames.shape == (25, 4)
    assert r.frames.min() >= 0 and r.frames.max() < pipe.config.codebook_size  # never the pad token
    assert r.audio.dtype == np.float32 and r.audio.shape == (16000,)
    assert np.isfinite(r.audio).all() and np.abs(r.audio).max() > 0


def test_prompt_changes_output_under_greedy(pipe):
    greedy = SamplingParams(top_k=1)
    a = pipe.generate_frames("rainy night jazz piano", 0.4, 0, greedy)[0]
    b = pipe.generate_frames("80s pop track with bassy drums and synth", 0.4, 0, greedy)[0]
    assert not np.array_equal(a, b)


def test_progress_every_step_and_cancel_within_one_step(pipe):
    calls = []
    pipe.generate("lofi", 0.2, 1, progress=lambda d, t, **kw: calls.append((d, t, kw)))
    assert [c[0] for c in calls] == list(range(1, 14))  # 10 frames + 3 delay steps
    assert all(c[1] == 13 for c in calls)
    assert calls[-1][2] == {"tokens_generated": 10, "tokens_estimated": 10}

    token = CancelToken()
    seen = []

    def progress(done, total, **kw):
        seen.append(done)
        if done == 5:
            token.cancel()

    with pytest.raises(Cancelled):
        pipe.generate("lofi", 2.0, 1, progress=progress, cancel=token)
    assert seen[-1] == 5  # the very next step noticed the cancellation


@pytest.mark.parametrize("duration", [2.6, 3.0, 1.37])
def test_beyond_window_exact_length(short_window, duration):
    r = short_window.generate("lofi", duration, 3)
    frames = int(np.ceil(round(duration * 50, 6)))
    assert r.frames.shape == (frames, 4)
    assert r.audio.shape == (int(round(duration * 32000)),)
    assert len(r.windows) > 1
    assert sum(w["new"] for w in r.windows) == frames


def test_continuation_reuses_the_previous_frames_as_prompt(short_window, monkeypatch):
    """Each window's prompt is exactly the last (window - stride) frames of what came before, and the output
    is the plain concatenation of every window's new frames: the token stream has no gap and no repeat."""
    seen = []
    real = short_window._window

    def spy(prompt_frames, new_frames, *args):
        out = real(prompt_frames, new_frames, *args)
        seen.append((prompt_frames.copy(), out.copy()))
        return out

    monkeypatch.setattr(short_window, "_window", spy)
    r = short_window.generate("lofi", 2.0, 11)
    assert [len(p) for p, _ in seen] == [0, 20, 20]
    assert [len(n) for _, n in seen] == [50, 30, 20]
    done = 0
    for prompt, new in seen:
        assert np.array_equal(prompt, r.frames[done - len(prompt) : done])
        assert np.array_equal(new, r.frames[done : done + len(new)])
        done += len(new)
    assert done == 100


def test_first_window_is_a_plain_generation(pipe, short_window):
    """Windowing does not change the first 30 s (here 1 s): same seed, same first frames."""
    long = short_window.generate_frames("lofi", 2.0, 5, SamplingParams())[0]
    plain = pipe.generate_frames("lofi", 1.0, 5, SamplingParams())[0]
    assert np.array_equal(long[:50], plain)


def test_continuation_is_conditioned_on_the_prompt(short_window):
    """Greedy continuation from a different history gives a different continuation (the prompt is read)."""
    greedy = SamplingParams(top_k=1)
    hidden, mask = short_window.encode_text("lofi")
    rng = np.random.default_rng(0)
    base = short_window.generate_frames("lofi", 1.0, 0, greedy)[0]
    other = np.roll(base, 7, axis=0)
    noop = lambda *_: None  # noqa: E731
    a = short_window._window(base[-20:], 10, hidden, mask, rng, greedy, None, noop, None)
    b = short_window._window(other[-20:], 10, hidden, mask, rng, greedy, None, noop, None)
    assert not np.array_equal(a, b)


def test_guidance_and_sampling_rules():
    logits = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(apply_guidance(logits, 3.0), [[-3.0, 2.0, 7.0]])
    np.testing.assert_allclose(apply_guidance(logits, 1.0), [[1.0, 2.0, 3.0]])
    rng = np.random.default_rng(0)
    row = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32))
    assert sample(row, rng, top_k=1)[0] == 0
    draws = [sample(row, rng, top_k=2)[0] for _ in range(300)]
    assert set(draws) == {0, 1}  # top-k 2 never picks the tail
    draws = [sample(row, rng, top_k=0 + 4, top_p=0.7)[0] for _ in range(300)]
    assert set(draws) == {0, 1}  # nucleus 0.7 keeps 0.5 + 0.3 (top_p > 0 overrides top_k, as in audiocraft)
    cold = [sample(row, rng, top_k=4, temperature=0.1)[0] for _ in range(100)]
    assert cold.count(0) > 95  # low temperature sharpens towards the argmax


def test_long_tracks_are_decoded_in_overlapping_pieces(short_window, monkeypatch):
    """Beyond 30 s EnCodec runs per 30 s piece (memory), with context, matching one call to float32 rounding."""
    r = short_window.generate("lofi", 2.5, 8)
    one_call = short_window.decode(r.frames)[: len(r.audio)]
    calls = []
    real = short_window.decode
    monkeypatch.setattr(short_window, "decode", lambda f: calls.append(len(f)) or real(f))
    monkeypatch.setattr(short_window, "decode_chunk_frames", 40)
    pieces = short_window.decode_track(r.frames)[: len(r.audio)]
    assert calls == [45, 85, 95, 55]  # 125 frames in 40s: [0,45) [0,85) [30,125) [70,125) with 50 + 5 context
    assert pieces.shape == one_call.shape
    # 50 frames of left context make the LSTM's truncation error (~1e-7, streaming.py) smaller than rounding
    err = np.abs(pieces - one_call).max()
    assert err < audio_tol(len(r.frames), one_call), err


def test_every_code_reaches_the_audio(pipe):
    """The audio comparisons in these tests (ORT vs transformers, pieces vs one call, streamed vs saved) allow
    float32 rounding (tests/tolerances.py audio_tol). They can only catch a wrong code if a code changes the audio by
    far more than that: the fixture's EnCodec
    codebooks are random (transformers initialises them to zeros, which made every code sound the same)."""
    frames = np.random.default_rng(3).integers(0, pipe.config.codebook_size, (60, 4))
    base = pipe.decode(frames)
    for k in range(4):
        changed = frames.copy()
        changed[30, k] = (changed[30, k] + 1) % pipe.config.codebook_size
        assert np.abs(pipe.decode(changed) - base).max() > 10 * audio_tol(60, base), (
            f"codebook {k} is unheard"
        )
