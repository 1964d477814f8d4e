"""The radio's MusicGen windows on the tiny fixture: window after window with one prompt is exactly the long
track `generate` makes (same codes, same audio), each window re-reads the last codes of the one before, and what
is kept between windows stays bounded."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.musicgen.backend import MusicGenBackend
from lofi_daemon.backends.musicgen.pipeline import DECODE_LEFT_FRAMES, SamplingParams
from lofi_daemon.cancel import CancelToken
from lofi_daemon.errors import Cancelled, LofiError

from tests.musicgen_fixture import tiny_settings
from tests.tolerances import audio_tol

WINDOW, STRIDE = 1.0, 0.6  # 50 and 30 frames: 20 frames of context


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    b = MusicGenBackend(tiny_settings(tmp_path_factory.mktemp("mg")), window_sec=WINDOW, stride_sec=STRIDE)
    b.load()
    return b


def test_windows_continue_the_codes_and_equal_one_long_generation(backend):
    params = backend.validate({})
    state = backend.start_continuation(params, 11)
    got: list[np.ndarray] = []
    infos = []
    contexts = []
    for _ in range(5):
        contexts.append(state.context.copy())
        infos.append(backend.continue_window(state, "lofi", CancelToken(), got.append))
    assert [(i["index"], i["context_frames"], i["new_frames"]) for i in infos] == [
        (0, 0, 50),
        (1, 20, 30),
        (2, 20, 30),
        (3, 20, 30),
        (4, 20, 30),
    ]
    total = WINDOW + 4 * STRIDE
    long = backend.pipeline.generate("lofi", total, 11, SamplingParams(**params))
    frames = long.frames
    # each window's context was the previous windows' last 20 codes
    ends = [50, 80, 110, 140]
    for ctx, end in zip(contexts[1:], ends, strict=True):
        np.testing.assert_array_equal(ctx, frames[end - 20 : end])
    np.testing.assert_array_equal(state.context, frames[-20:])
    # the stream is the long track's audio so far (the last frames wait for their lookahead: the next window)
    stream = np.concatenate(got)[:, 0]
    hop = 32000 // 50  # decoded in 100-frame chunks, each waiting for 5 frames of lookahead
    assert len(long.audio) - (100 + 5) * hop <= len(stream) < len(long.audio)
    err = np.abs(stream - long.audio[: len(stream)]).max()
    assert err < audio_tol(len(frames), long.audio), err
    # bounded between windows: the context, and the decoder's history plus what waits for lookahead
    assert state.decoder_frames is not None
    assert len(state.decoder_frames) <= DECODE_LEFT_FRAMES + 100 + 5 + 30


def test_a_new_prompt_continues_from_the_same_codes(backend):
    params = backend.validate({})
    a = backend.start_continuation(params, 5)
    b = backend.start_continuation(params, 5)
    for s in (a, b):
        backend.continue_window(s, "lofi", CancelToken(), lambda _x: None)
    np.testing.assert_array_equal(a.context, b.context)
    backend.continue_window(a, "lofi", CancelToken(), lambda _x: None)
    backend.continue_window(b, "rainy night jazz piano", CancelToken(), lambda _x: None)
    assert not np.array_equal(a.context, b.context)  # the prompt changed what came next


def test_a_negative_prompt_steers_the_radio_too(backend):
    plain = backend.start_continuation(backend.validate({}), 5)
    negative = backend.start_continuation(backend.validate({"negative_prompt": "drums"}), 5)
    for s in (plain, negative):
        backend.continue_window(s, "lofi", CancelToken(), lambda _x: None)
    assert not np.array_equal(plain.context, negative.context)


def test_cancel_and_oversized_windows(backend):
    state = backend.start_continuation(backend.validate({}), 1)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        backend.continue_window(state, "lofi", token, lambda _x: None)
    pipe = backend.pipeline
    with pytest.raises(LofiError, match="a window holds 50 frames"):
        pipe.continue_window(
            "lofi", np.zeros((30, 4), np.int64), 30, np.random.default_rng(0), SamplingParams()
        )
