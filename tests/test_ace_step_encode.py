"""The encode path on the tiny fixture without torch: audio of any length, rate and channel count becomes latents
the decoder takes; bad audio gets a clear error. Equality with upstream's maths is in
tests/test_ace_step_encode_reference.py."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.ace_step import encode as enc

from tests.ace_step_helpers import FIXTURE, rel_err, tiny_pipeline


@pytest.fixture(scope="module")
def session():
    from lofi_daemon.backends.ace_step.sessions import session_factory

    return session_factory(threads=1)(str(FIXTURE / enc.ENCODER_FILE), None)


def tone(n: int, channels: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None] / 44100
    return (
        0.3 * np.sin(2 * np.pi * 330.0 * (1 + np.arange(channels)) * t)
        + 0.02 * rng.standard_normal((n, channels))
    ).astype(np.float32)


@pytest.mark.parametrize(
    ("n", "rate", "frames"),
    [
        (4096, 44100, 1),  # exactly one latent frame
        (4097, 44100, 2),  # one sample more pads to two
        (100, 44100, 1),  # shorter than the STFT window
        (48000, 48000, 11),  # 1 s at 48 kHz = 44100 samples → ceil(44100 / 4096)
        (22050, 22050, 11),  # 1 s at 22.05 kHz, upsampled
        (32000, 32000, 11),
    ],
)
def test_any_length_and_rate(session, n, rate, frames):
    z = enc.encode_audio(tone(n, 2), rate, session)
    assert z.shape == (1, 8, 16, frames) and z.dtype == np.float32
    assert np.isfinite(z).all() and z.std() > 0


def test_mono_is_duplicated_and_extra_channels_dropped(session):
    mono = tone(9000, 1)[:, 0]
    stereo = np.stack([mono, mono], axis=1)
    np.testing.assert_array_equal(
        enc.encode_audio(mono, 44100, session), enc.encode_audio(stereo, 44100, session)
    )
    np.testing.assert_array_equal(
        enc.encode_audio(mono[:, None], 44100, session), enc.encode_audio(stereo, 44100, session)
    )
    five = tone(9000, 5)
    np.testing.assert_array_equal(
        enc.encode_audio(five, 44100, session), enc.encode_audio(five[:, :2], 44100, session)
    )
    # left and right are encoded as two different channels, not averaged
    swapped = enc.encode_audio(five[:, [1, 0]], 44100, session)
    assert rel_err(swapped, enc.encode_audio(five[:, :2], 44100, session)) > 1e-3


@pytest.mark.parametrize(
    ("audio", "rate", "message"),
    [
        (np.zeros((0, 2), np.float32), 44100, "samples"),
        (np.zeros((10, 0), np.float32), 44100, "samples"),
        (np.zeros((2, 3, 4), np.float32), 44100, "samples"),
        (np.zeros((10, 2), np.int16), 44100, "floating point"),
        (np.full((10, 2), np.nan, np.float32), 44100, "NaN"),
        (np.zeros((10, 2), np.float32), 0, "sample_rate"),
        (np.zeros((10, 2), np.float32), 44100.5, "sample_rate"),
    ],
)
def test_bad_audio_is_refused_clearly(session, audio, rate, message):
    with pytest.raises(ValueError, match=message):
        enc.encode_audio(audio, rate, session)


def test_round_trip_through_the_decoder_is_time_aligned(session):
    """encode → decode on the tiny random weights: they do not reconstruct audio (measured below, near 100 %
    error), so this proves only the plumbing: the encoder's latents are a valid decoder input, and F latent
    frames come back as F · 4096 samples at 44.1 kHz, i.e. the input length padded to whole latent frames."""
    audio = tone(3 * 4096 + 5, 2)
    z = enc.encode_audio(audio, 44100, session)
    pipe = tiny_pipeline()
    wave = pipe.waveform(pipe.mel(z))
    assert wave.shape == (2, 4 * 4096)
    err = rel_err(wave[:, : audio.shape[0]], audio.T)
    assert np.isfinite(err) and err > 0.5  # random weights: nothing resembling the input comes back


def test_long_tracks_encode_in_windows_without_seams(session):
    """Windows of 8 latent frames with 4 of context over 40 frames (the real ones: 256 with 128, so one pass up
    to 47.5 s). The encoder's linear attention is global within a window, so windowed latents differ from one
    pass a little everywhere (as the decoder's windows do, tests/test_ace_step_decode.py); frames next to a seam
    are no worse than the others."""
    mel = enc.log_mel(enc.to_model_audio(tone(40 * 4096, 2), 44100))
    one = enc.encode_mel(mel, session)
    core, margin = 8, 4
    win = enc.encode_mel(mel, session, core, margin)
    assert win.shape == one.shape == (1, 8, 16, 40)
    err = rel_err(win, one)
    assert err < 0.03, err  # measured 1.5 % on the tiny weights
    dev = np.abs(win - one).max(axis=(0, 1, 2))
    seams = np.zeros(40, bool)
    for s in range(core, 40, core):
        seams[s - 1 : s + 1] = True
    assert dev[seams].max() <= 1.5 * dev[~seams].max()
    # one window as long as the track is exactly the one-pass encode
    np.testing.assert_array_equal(enc.encode_mel(mel, session, 40, 4), one)
