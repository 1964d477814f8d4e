"""Tempo estimation and time-stretching (audio/tempo.py) on click tracks of known tempo."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.audio import tempo

from tests.doubles.beat_backend import click_track

RATE = 16000
# One autocorrelation lag is 11.5 ms; refined over four beats and by a parabola the period is good to a small
# fraction of that: 0.5 % of the tempo is 3 ms of a 90 BPM beat.
TOL = 0.005


@pytest.mark.parametrize("bpm", [60.0, 75.0, 90.0, 110.0, 128.0, 174.0])
def test_click_tracks_of_known_tempo(bpm):
    x = click_track(bpm, 16.0, RATE, seed=int(bpm))
    found = tempo.estimate(x, RATE, prior_bpm=bpm)
    assert found.bpm == pytest.approx(bpm, rel=TOL) and found.confidence > 0.5


def test_the_prior_chooses_between_octaves():
    x = click_track(174.0, 16.0, RATE)
    # half and double tempo are peaks too; the prior around the asked tempo picks the octave
    assert tempo.estimate(x, RATE, prior_bpm=170).bpm == pytest.approx(174.0, rel=TOL)
    assert tempo.estimate(x, RATE, prior_bpm=85).bpm == pytest.approx(87.0, rel=TOL)


def test_noise_has_no_clear_beat():
    noise = np.random.default_rng(0).standard_normal(16 * RATE).astype(np.float32)
    assert tempo.estimate(noise, RATE).confidence < 0.3
    assert tempo.estimate(noise[: RATE // 2], RATE) == tempo.Tempo(0.0, 0.0)  # too short to tell


@pytest.mark.parametrize("rate", [0.93, 1.06])
def test_stretched_click_tracks_have_the_stretched_tempo(rate):
    x = click_track(90.0, 16.0, RATE)
    y = tempo.stretch(x, RATE, rate)
    assert len(y) == round(len(x) / rate) and y.dtype == np.float32
    # WSOLA keeps the average rate exactly but moves each frame by up to a quarter frame (16 ms here): over the
    # four beats the estimate spans, that is up to 16 ms / (4 × 0.65 s) = 0.6 % of the tempo, plus TOL
    jitter = (1024 // 4 / RATE) / (4 * 60 / (90 * rate))
    found = tempo.estimate(y, RATE, prior_bpm=90 * rate)
    assert found.bpm == pytest.approx(90 * rate, rel=TOL + jitter)
    stereo = tempo.stretch(np.stack([x, 0.5 * x], axis=1), RATE, rate)
    np.testing.assert_allclose(stereo[:, 1], 0.5 * stereo[:, 0], atol=1e-6)  # one path for every channel


def test_stretching_keeps_pitch_and_level():
    t = np.arange(2 * RATE) / RATE
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    y = tempo.stretch(tone, RATE, 1.06)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    assert abs(np.argmax(spectrum) * RATE / len(y) - 440.0) < RATE / len(y)  # within one bin
    # the windows add up to one: no fade at the start, no beating in the middle
    assert np.abs(y[:200]).max() > 0.45 and np.abs(y).max() < 0.51
    np.testing.assert_array_equal(tempo.stretch(tone, RATE, 1.0), tone)
