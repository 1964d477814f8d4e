"""The seam score and loop search (audio/seam.py) on synthetic periodic signals, where the right answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.audio import seam

from tests.doubles.beat_backend import click_track

RATE = 16000
PERIOD = 7919  # samples: a prime, so no shorter period hides in it


def periodic(periods: int = 10, seed: int = 0) -> np.ndarray:
    """Noise shaped into one burst per period, repeated: a perfectly periodic, broadband signal."""
    one = np.random.default_rng(seed).standard_normal(PERIOD) * np.hanning(PERIOD)
    return np.tile(one, periods)


def test_a_perfect_loop_scores_best():
    x = periodic()
    F = 4000
    perfect = seam.seam_score(x[5 * PERIOD : 5 * PERIOD + F], x[:F])
    assert perfect.score == pytest.approx(1.0) and perfect.phase == pytest.approx(1.0)
    for off in (1, 7, 40, 400, PERIOD // 2):
        other = seam.seam_score(x[5 * PERIOD + off : 5 * PERIOD + off + F], x[:F])
        assert other.score < perfect.score - 1e-3, off
    # unrelated audio of the same kind: the spectra still look alike, the waves do not line up
    noise = seam.seam_score(periodic(seed=1)[:F], x[:F])
    assert noise.phase < 0.1 and noise.score < 0.75


@pytest.mark.parametrize("bar", [None, float(PERIOD)])
def test_the_loop_of_a_periodic_signal_is_a_whole_number_of_periods(bar):
    x = periodic()
    loop = seam.find_loop(x, RATE, 5 * PERIOD + 1234, bar=bar)
    assert loop.length == 5 * PERIOD and loop.bars == (None if bar is None else 5)
    assert loop.seam.score == pytest.approx(1.0)
    out = seam.make_loop(x, loop)
    # identical audio on both sides of the crossfade: the loop is the signal itself, and wraps without a step
    np.testing.assert_allclose(out, x[: loop.length], atol=1e-6)
    np.testing.assert_allclose(np.concatenate([out, out])[: 2 * loop.length], x[: 2 * loop.length], atol=1e-6)


def test_a_click_in_the_crossfade_is_found_and_avoided():
    x = periodic()
    F = 4000
    clean = seam.seam_score(x[5 * PERIOD : 5 * PERIOD + F], x[:F])
    x[5 * PERIOD + 1500 : 5 * PERIOD + 1532] += 3.0  # a 2 ms click where the 5-period loop would crossfade
    clicked = seam.seam_score(x[5 * PERIOD : 5 * PERIOD + F], x[:F])
    assert clicked.score < clean.score - 0.05
    loop = seam.find_loop(x, RATE, 5 * PERIOD, bar=float(PERIOD), crossfade=F)
    assert loop.length in (4 * PERIOD, 6 * PERIOD) and loop.seam.score == pytest.approx(1.0)


def test_the_loop_beats_a_naive_cut_of_a_tone():
    """A tone whose cycle does not divide the wanted length: cut there, its wrap lands mid-cycle (a click);
    the loop found nearby wraps in phase."""
    t = np.arange(3 * RATE) / RATE
    tone = np.sin(2 * np.pi * 110.3 * t) * (1 + 0.3 * np.sin(2 * np.pi * 0.5 * t))
    F = 4000
    naive = seam.seam_score(tone[2 * RATE : 2 * RATE + F], tone[:F])
    loop = seam.find_loop(tone, RATE, 2 * RATE, crossfade=F)
    assert abs(loop.length - 2 * RATE) <= seam.SEARCH_SEC * RATE
    assert naive.phase < 0.5 and loop.seam.phase > 0.99 and loop.seam.score > naive.score + 0.2
    cycles = loop.length * 110.3 / RATE
    assert abs(cycles - round(cycles)) < 0.02


def test_a_click_track_loops_on_its_bars():
    tempo = 96.0
    bar = 4 * 60 / tempo * RATE
    x = click_track(tempo, 12.0, RATE)
    loop = seam.find_loop(x, RATE, int(8 * RATE), bar=bar)
    assert loop.bars in (3, 4) and abs(loop.length - loop.bars * bar) <= 1
    assert loop.seam.score > 0.95
    # the same search without the bar length still lands on the beat grid
    free = seam.find_loop(x, RATE, int(8 * RATE))
    beat = bar / 4
    assert min(free.length % beat, beat - free.length % beat) <= 1


@pytest.mark.parametrize("r", [0.0, 0.5, 1.0])
def test_crossfade_keeps_the_power_for_the_correlation(r):
    fade_in, fade_out = seam.crossfade_gains(1000, r)
    power = fade_in**2 + fade_out**2 + 2 * r * fade_in * fade_out
    np.testing.assert_allclose(power, 1.0, rtol=1e-12)
    assert fade_in[0] < 0.01 and fade_out[-1] < 0.01
