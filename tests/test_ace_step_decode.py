"""Overlapped (windowed) decoding of long latents against a one-pass decode, on the tiny fixture with small
windows so several seams fall inside a 120-frame (11 s) latent.

Tolerances: the vocoder is convolutional, so with a margin wider than its receptive field windowed output equals
one pass up to float32 rounding (kernels block differently for another input length; tests/tolerances.py). The
DCAE's linear attention is global within a window, so windowed mels differ from one pass everywhere by ~1 % (2 %
bound); the test checks that seams are not special: the deviation next to a seam is no larger than inside the
windows, and the frame-to-frame step across each seam stays within 5 % of the mel range
of the one-pass step."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.backends.ace_step.decode import Windowing, windowed

from tests.ace_step_helpers import rel_err, tiny_pipeline
from tests.tolerances import ACE_VOCODER, U32, f32_tol

ONE_PASS = Windowing(10**6, 0, 10**6, 0)
FRAMES = 120


@pytest.fixture(scope="module")
def latent():
    return np.random.default_rng(11).standard_normal((1, 8, 16, FRAMES)).astype(np.float32)


@pytest.fixture(scope="module")
def one_pass(latent):
    p = tiny_pipeline(ONE_PASS)
    mel = p.mel(latent)
    return mel, p.waveform(mel)


def test_dcae_windows_have_no_seams(latent, one_pass):
    core, margin = 24, 12
    mel = tiny_pipeline(Windowing(core, margin, 10**6, 0)).mel(latent)
    ref = one_pass[0]
    assert mel.shape == ref.shape == (2, 128, FRAMES * 8)
    assert rel_err(mel, ref) < 0.02
    dev = np.abs(mel - ref).max(axis=(0, 1))  # worst deviation per mel frame
    seams = [core * 8 * k for k in range(1, FRAMES // core)]
    near = np.zeros(dev.shape, bool)
    for s in seams:
        near[s - 4 : s + 4] = True
    assert dev[near].max() <= 1.25 * dev[~near].max()
    step = np.abs(mel[..., seams] - mel[..., [s - 1 for s in seams]])
    step_ref = np.abs(ref[..., seams] - ref[..., [s - 1 for s in seams]])
    assert np.abs(step - step_ref).max() < 0.05 * np.ptp(ref)


def test_vocoder_windows_equal_one_pass(one_pass):
    mel, wave = one_pass
    p = tiny_pipeline(Windowing(10**6, 0, 160, 48))
    out = p.waveform(mel)
    assert out.shape == wave.shape == (2, FRAMES * 8 * 512)
    assert rel_err(out, wave) < f32_tol(ACE_VOCODER), rel_err(out, wave)
    # too small a margin is visibly wrong: the test can fail
    assert rel_err(tiny_pipeline(Windowing(10**6, 0, 160, 4)).waveform(mel), wave) > 1e-4


def test_windowed_audio_length_and_rate(latent):
    out = tiny_pipeline(Windowing(24, 12, 160, 48)).latents_to_audio(latent)
    assert out.shape == (int(np.ceil(FRAMES * 4096 * 160 / 147)), 2) and out.dtype == np.float32


def test_fixed_length_windows_pad_and_trim():
    """Graphs with a static input length (the reference DCAE takes exactly 128 frames): every call gets `fixed`
    frames, the track end is zero-padded, and the kept cores still equal a one-pass convolution."""
    kernel = np.array([0.25, 0.5, 0.25], np.float32)
    calls = []

    def conv(x):
        calls.append(x.shape[-1])
        return np.convolve(np.pad(x[0], 1), kernel, mode="valid")[None]

    x = np.random.default_rng(0).standard_normal((1, 50)).astype(np.float32)
    full = conv(x)
    calls.clear()
    out = windowed(conv, x, core=12, margin=2, ratio=1, fixed=16)
    assert set(calls) == {16}
    # per sample three exact products (the taps are powers of two) and two sums: at most 2 roundings of a sum
    # whose terms add up to at most max|x| (the taps sum to 1)
    np.testing.assert_allclose(out[..., :-1], full[..., :-1], rtol=0, atol=2 * U32 * np.abs(x).max())
    assert out.shape == full.shape
