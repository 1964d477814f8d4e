"""The encode path (audio → DCAE latents) against upstream's `MusicDCAE.encode` maths, re-derived in PyTorch in
scripts/ace_step_torch/reference.py and run on the tiny fixture's DCAE encoder weights (diffusers' AutoencoderDC),
and the mel filters against a third implementation (transformers' `mel_filter_bank`).

Tolerances: tests/tolerances.py `ace_dcae_encoder` (the FFT, the mel sum and the encoder graph's chains); the
numpy mel is computed in float64, so it differs from torch's float32 STFT by torch's rounding alone."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.ace_step import encode as enc

from tests.ace_step_helpers import FIXTURE, rel_err
from tests.tolerances import ACE_LOG_MEL, ace_dcae_encoder, f32_tol

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.fixture(scope="module")
def dcae():
    from scripts.export_ace_step import load_torch

    torch.set_num_threads(1)
    return load_torch(FIXTURE)["dcae"]


@pytest.fixture(scope="module")
def session():
    from lofi_daemon.backends.ace_step.sessions import session_factory

    return session_factory(threads=1)(str(FIXTURE / enc.ENCODER_FILE), None)


def music_like(n: int, seed: int = 3) -> np.ndarray:
    """[2, n] at 44.1 kHz: two chords an octave apart per channel with a decaying envelope, plus soft noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 44100
    env = np.exp(-3 * (t % 0.5))
    left = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6)) * env
    right = sum(0.2 * np.sin(2 * np.pi * f * t) for f in (440.0, 554.4, 659.3)) * env[::-1]
    return (np.stack([left, right]) + 0.01 * rng.standard_normal((2, n))).astype(np.float32)


def test_mel_filters_are_torchaudios_slaney_filters():
    from transformers.audio_utils import mel_filter_bank

    from scripts.ace_step_torch.reference import mel_filterbank

    ours = enc.mel_filterbank()
    third = mel_filter_bank(1025, 128, 40.0, 16000.0, 44100, norm="slaney", mel_scale="slaney")
    assert ours.shape == third.shape == (1025, 128)
    assert np.abs(ours - third).max() < 1e-12 * np.abs(third).max() * 1025
    # float32 filters as torchaudio builds them: each value is a difference of float32 frequencies (rounded
    # relative to the frequency) over the filter spacing, which is never below 1/35 of the frequency (0.42 mel
    # apart: 28 Hz at 1 kHz, 3 % above), so rounding is amplified at most 35-fold
    assert rel_err(mel_filterbank().numpy(), ours) < 35 * f32_tol(16)
    assert (ours.max(axis=0) > 0).all()  # no empty filter


def test_log_mel_equals_upstreams(dcae):
    from scripts.ace_step_torch.reference import log_mel

    audio = music_like(44100 + 777)
    ref = log_mel(torch.from_numpy(audio)).numpy()
    ours = enc.log_mel(audio)
    assert ours.shape == ref.shape == (2, 128, (44100 + 777) // 512)
    assert rel_err(ours, ref) < f32_tol(ACE_LOG_MEL), rel_err(ours, ref)


@pytest.mark.parametrize("seconds", [1.3, 4.0])
def test_encode_equals_upstream_encode(dcae, session, seconds):
    from scripts.ace_step_torch.reference import audio_to_latents

    n = int(seconds * 44100)
    audio = music_like(n)
    ref = audio_to_latents(dcae, torch.from_numpy(audio)).numpy()
    ours = enc.encode_audio(audio.T, 44100, session)
    frames = -(-n // 4096)
    assert ours.shape == ref.shape == (1, 8, 16, frames)
    assert rel_err(ours, ref) < f32_tol(ace_dcae_encoder(frames)), rel_err(ours, ref)
    # the comparison can fail: a mel off by one frame or a missing normalisation is far outside the bound
    shifted = enc.encode_audio(np.roll(audio, 512, axis=-1).T, 44100, session)
    assert rel_err(shifted, ref) > 100 * f32_tol(ace_dcae_encoder(frames))


def test_48k_input_is_resampled_to_44k_first(dcae, session):
    from scipy.signal import resample_poly

    from scripts.ace_step_torch.reference import audio_to_latents

    audio48 = music_like(96000, seed=5)
    audio44 = resample_poly(audio48.astype(np.float64), 147, 160, axis=-1).astype(np.float32)
    ref = audio_to_latents(dcae, torch.from_numpy(audio44)).numpy()
    ours = enc.encode_audio(audio48.T, 48000, session)
    frames = -(-88200 // 4096)
    assert ours.shape == (1, 8, 16, frames)
    assert rel_err(ours, ref) < f32_tol(ace_dcae_encoder(frames)), rel_err(ours, ref)
