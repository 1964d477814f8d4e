"""The mixer, frame by frame, without a device: envelopes, seams, seek, pause, loop, streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lofi_daemon.audio.mixer import (
    DECLICK_SEC,
    END_LOOP,
    END_STOP,
    VOLUME_RAMP_SEC,
    Mixer,
    Source,
    crossfade_frames,
)

RATE = 8000  # small rate keeps the tests fast; the mixer is rate-agnostic
# Samples (|x| <= 1) pass through at most ~8 float32 roundings in the mixer (ramp position, sin/cos within 2 ulp,
# envelope, volume, sum of two voices): error <= 8 * 2^-24 = 4.8e-7.
SAMPLE_TOL = 1e-6
# ramp_source values are at most 5 s * 8000 / 1e6 = 0.04: the same roundings scaled by 0.04 (2e-8).
RAMP_TOL = 1e-7


def tone(track_id: str, freq: float, seconds: float, amp: float = 0.5, rate: int = RATE) -> Source:
    t = np.arange(int(seconds * rate)) / rate
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return Source(track_id, np.stack([x, x], axis=1))


def ramp_source(track_id: str, seconds: float, rate: int = RATE) -> Source:
    """Sample value = frame index / 1e6 (left) and its negative (right): positions are readable from output."""
    idx = np.arange(int(seconds * rate), dtype=np.float64) / 1e6
    return Source(track_id, np.stack([idx, -idx], axis=1).astype(np.float32))


def run(mixer: Mixer, seconds: float, block: int | list[int] = 256) -> np.ndarray:
    total = int(seconds * mixer.rate)
    out = []
    i = 0
    sizes = block if isinstance(block, list) else [block]
    done = 0
    while done < total:
        n = min(sizes[i % len(sizes)], total - done)
        buf = np.empty((n, mixer.channels), np.float32)
        mixer.render(buf)
        out.append(buf)
        done += n
        i += 1
    return np.concatenate(out)


def events(mixer: Mixer) -> list[tuple]:
    ev = list(mixer.events)
    mixer.events.clear()
    return ev


def test_crossfade_length_rule():
    r = 1000
    assert crossfade_frames(r, 2.0, 60 * r, 60 * r) == 2 * r
    assert crossfade_frames(r, 2.0, 3 * r, 60 * r) == 3 * r // 4  # shorter than 2×crossfade: a quarter
    assert crossfade_frames(r, 2.0, 60 * r, int(1.9 * r)) == 0  # under 2 s: none
    assert crossfade_frames(r, 0.0, 60 * r, 60 * r) == 0


def test_plays_source_exactly_at_unit_volume():
    m = Mixer(RATE, volume=1.0)
    a = tone("a", 440, 1.0)
    m.play(a)
    out = run(m, 1.2)
    d = int(DECLICK_SEC * RATE)
    np.testing.assert_allclose(out[d : a.length - d], a.samples[d:-d], atol=SAMPLE_TOL)
    # the last track ends with a de-click fade to silence over its final 10 ms
    tail = 1.0 - (np.arange(d) + 0.5) / d
    np.testing.assert_allclose(out[a.length - d : a.length], a.samples[-d:] * tail[:, None], atol=SAMPLE_TOL)
    assert np.all(out[a.length :] == 0)
    assert events(m) == [("started", "a"), ("ended", "a", "finished")]
    assert m.state == "stopped"


def test_output_does_not_depend_on_block_size():
    outs = []
    for blocks in ([256], [1], [37, 1000, 5, 4096], [8192]):
        m = Mixer(RATE, volume=0.7)
        m.crossfade_sec = 0.5
        m.play(tone("a", 300, 2.5))
        m.queue_next(tone("b", 500, 2.5))
        outs.append(run(m, 5.5, blocks))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_equal_power_crossfade_envelope_at_the_seam():
    m = Mixer(RATE, volume=1.0)
    a, b = tone("a", 440, 5.0), tone("b", 660, 5.0, amp=0.4)
    m.play(a)
    m.queue_next(b)
    out = run(m, 9.0)
    n = 2 * RATE  # default 2 s crossfade, tracks are long enough
    start = a.length - n
    t = (np.arange(n) + 0.5) / n
    expected = a.samples[start:, 0] * np.cos(t * math.pi / 2) + b.samples[:n, 0] * np.sin(t * math.pi / 2)
    np.testing.assert_allclose(out[start : start + n, 0], expected, atol=SAMPLE_TOL)
    # after the seam: B alone, at full level
    np.testing.assert_allclose(
        out[a.length : a.length + RATE, 0], b.samples[n : n + RATE, 0], atol=SAMPLE_TOL
    )
    # no click: the largest step between samples stays within what the two tones themselves produce
    max_step = np.max(np.abs(np.diff(out[start - 100 : a.length + 100, 0])))
    natural = 0.5 * 2 * math.pi * 440 / RATE + 0.4 * 2 * math.pi * 660 / RATE
    assert max_step <= natural * 1.05
    assert events(m)[:3] == [("started", "a"), ("ended", "a", "finished"), ("started", "b")]


def test_short_tracks_use_a_quarter_and_tiny_tracks_none():
    m = Mixer(RATE, volume=1.0)
    a, b = ramp_source("a", 3.0), ramp_source("b", 3.0)
    m.play(a)
    m.queue_next(b)
    out = run(m, 6.0)
    n = a.length // 4
    # the seam starts exactly n frames before A's end: B's first sample (0) is mixed in there
    start = a.length - n
    t = (np.arange(n) + 0.5) / n
    expected = a.samples[start:, 0] * np.cos(t * math.pi / 2) + b.samples[:n, 0] * np.sin(t * math.pi / 2)
    np.testing.assert_allclose(out[start : start + n, 0], expected, atol=SAMPLE_TOL)

    m = Mixer(RATE, volume=1.0)
    a, b = ramp_source("a", 1.5), ramp_source("b", 1.5)
    m.play(a)
    m.queue_next(b)
    out = run(m, 3.5)
    d = int(DECLICK_SEC * RATE)
    # no musical crossfade under 2 s, only a 10 ms de-click overlap at the seam
    np.testing.assert_allclose(out[d : a.length - d, 0], a.samples[d:-d, 0], atol=RAMP_TOL)
    t = (np.arange(d) + 0.5) / d
    seam = a.samples[-d:, 0] * np.cos(t * math.pi / 2) + b.samples[:d, 0] * np.sin(t * math.pi / 2)
    np.testing.assert_allclose(out[a.length - d : a.length, 0], seam, atol=RAMP_TOL)
    np.testing.assert_allclose(out[a.length : 2 * a.length - 2 * d, 0], b.samples[d:-d, 0], atol=RAMP_TOL)


def test_volume_ramp_is_per_sample_and_fast():
    m = Mixer(RATE, volume=1.0)
    m.play(tone("a", 100, 3.0, amp=1.0))
    run(m, 0.5)
    m.set_volume(0.25)
    out = run(m, 0.5)
    src = m.current_source.samples
    pos0 = int(0.5 * RATE)
    gain = out[:, 0] / np.where(
        np.abs(src[pos0 : pos0 + out.shape[0], 0]) > 1e-3, src[pos0 : pos0 + len(out), 0], np.nan
    )
    ramp_frames = int(VOLUME_RAMP_SEC * RATE)
    settled = gain[ramp_frames + 1 :]
    np.testing.assert_allclose(settled[~np.isnan(settled)], 0.25, atol=SAMPLE_TOL)
    g = gain[: ramp_frames + 1]
    g = g[~np.isnan(g)]
    assert np.all(np.diff(g) <= SAMPLE_TOL)  # monotonic fall (up to rounding), no jump
    assert VOLUME_RAMP_SEC <= 0.05  # audible within 50 ms


def test_pause_freezes_position_and_resume_continues():
    m = Mixer(RATE, volume=1.0)
    a = ramp_source("a", 4.0)
    m.play(a)
    run(m, 1.0)
    assert m.pause()
    out = run(m, 0.5)
    d = int(DECLICK_SEC * RATE)
    assert np.all(out[d + 1 :] == 0)
    assert np.max(np.abs(np.diff(out[: d + 2, 0]))) < 1e-3  # ramped down, not cut
    pos = m.position_frames
    assert pos == RATE + d  # the ramp-down frames were played, nothing more
    run(m, 1.0)
    assert m.position_frames == pos
    assert m.resume()
    out = run(m, 0.1)
    # the first resumed sample continues right where the pause ramp stopped
    assert abs(out[-1, 0] - a.samples[pos + len(out) - 1, 0]) < SAMPLE_TOL
    assert m.state == "playing"


def test_seek_is_frame_accurate():
    m = Mixer(RATE, volume=1.0)
    a = ramp_source("a", 5.0)
    m.play(a)
    run(m, 0.3)
    m.seek(int(3.25 * RATE))
    out = run(m, 0.5)
    d = int(DECLICK_SEC * RATE)
    np.testing.assert_allclose(
        out[d:, 0], a.samples[int(3.25 * RATE) + d : int(3.25 * RATE) + len(out), 0], atol=RAMP_TOL
    )
    assert m.position_frames == int(3.25 * RATE) + len(out)


def test_loop_when_next_is_missing_never_goes_silent():
    m = Mixer(RATE, volume=1.0)
    m.end_policy = END_LOOP
    a = tone("a", 440, 3.0)
    m.play(a)
    out = run(m, 10.0)
    ev = events(m)
    assert ev.count(("looped", "a")) == 4  # 3 s with 0.75 s crossfades: restarts at 2.25, 4.5, 6.75, 9.0
    rms = np.sqrt(np.mean(out[int(0.1 * RATE) :, 0].reshape(-1, RATE // 10) ** 2, axis=1))
    assert rms.min() > 0.3  # never silent, no dip deeper than equal-power allows
    # a next track that shows up later is crossfaded into at the next seam
    m.queue_next(tone("b", 660, 3.0))
    run(m, 3.0)
    assert ("started", "b") in events(m)


def test_end_stop_plays_out_and_stops():
    m = Mixer(RATE, volume=1.0)
    m.end_policy = END_STOP
    m.play(tone("a", 440, 2.0))
    out = run(m, 3.0)
    assert np.all(out[2 * RATE :] == 0)
    assert m.state == "stopped" and not m.audible


def test_skip_crossfades_from_the_current_position_and_stop_is_click_free():
    m = Mixer(RATE, volume=1.0)
    a, b = tone("a", 440, 10.0), tone("b", 660, 10.0)
    m.play(a)
    run(m, 1.0)
    assert not m.skip()  # nothing queued
    m.queue_next(b)
    assert m.skip()
    out = run(m, 3.0)
    n = 2 * RATE
    t = (np.arange(n) + 0.5) / n
    expected = a.samples[RATE : RATE + n, 0] * np.cos(t * math.pi / 2) + b.samples[:n, 0] * np.sin(
        t * math.pi / 2
    )
    np.testing.assert_allclose(out[:n, 0], expected, atol=SAMPLE_TOL)
    assert events(m)[-2:] == [("ended", "a", "skipped"), ("started", "b")]
    m.stop()
    out = run(m, 0.1)
    d = int(DECLICK_SEC * RATE)
    assert np.all(out[d:] == 0)
    assert np.max(np.abs(np.diff(out[:, 0]))) < 0.5 * 2 * math.pi * 660 / RATE * 1.05
    assert events(m) == [("ended", "b", "stopped")]


def test_streaming_source_underruns_to_silence_then_finishes():
    m = Mixer(RATE, volume=1.0)
    full = tone("s", 440, 3.0).samples
    s = Source("s")
    s.push(full[:RATE])
    m.play(s)
    out = run(m, 1.5)
    d = int(DECLICK_SEC * RATE)
    np.testing.assert_allclose(out[d:RATE, 0], full[d:RATE, 0], atol=SAMPLE_TOL)
    assert np.all(out[RATE:] == 0)  # waiting for more audio
    assert m.position_frames == RATE and m.state == "playing"
    s.push(full[RATE:])
    s.finish()
    out = run(m, 2.5)
    np.testing.assert_allclose(out[: 2 * RATE - d, 0], full[RATE:-d, 0], atol=SAMPLE_TOL)
    assert ("ended", "s", "finished") in events(m)


@pytest.mark.parametrize("policy", [END_STOP, END_LOOP])
def test_position_and_state_queries(policy):
    m = Mixer(RATE)
    assert m.state == "stopped" and m.track_id is None and m.volume == pytest.approx(0.3)
    m.end_policy = policy
    m.play(tone("a", 440, 2.5))
    run(m, 1.0)
    assert m.state == "playing" and m.track_id == "a" and m.position_frames == RATE


def test_stop_during_a_crossfade_silences_both_voices_at_once():
    m = Mixer(RATE, volume=1.0)
    a, b = tone("a", 440, 4.0), tone("b", 660, 4.0)
    m.play(a)
    m.queue_next(b)
    run(m, 2.5)  # inside the 2 s crossfade that began at 2.0 s
    m.stop()
    out = run(m, 0.5)
    d = int(DECLICK_SEC * RATE)
    assert np.abs(out[:d]).max() > 0.05  # ramped, not cut
    assert np.all(out[d:] == 0)
    assert not m.audible


def test_pause_during_a_crossfade_resumes_it_where_it_was():
    def fresh():
        m = Mixer(RATE, volume=1.0)
        m.play(tone("a", 440, 4.0))
        m.queue_next(tone("b", 660, 4.0))
        return m

    d = int(DECLICK_SEC * RATE)
    paused = fresh()
    run(paused, 2.5)  # inside the 2 s crossfade that began at 2.0 s
    paused.pause()
    assert np.all(run(paused, 1.2)[d:] == 0)
    paused.resume()
    after = run(paused, 1.0)
    straight = fresh()
    run(straight, 2.5 + d / RATE)  # the pause ramp played d more frames
    expected = run(straight, 1.0)
    # once the resume ramp is done, the output is exactly the uninterrupted crossfade
    np.testing.assert_allclose(after[d:], expected[d:], atol=SAMPLE_TOL)


@pytest.mark.parametrize("how", ["end_policy", "queued_again"])
def test_a_seamless_loop_repeats_sample_for_sample(how):
    """A track made as a loop (generate's `loop`) wraps end to start with no crossfade and no de-click: the output
    is the track tiled. An ordinary track under the same policy crossfades into itself (the test above)."""
    m = Mixer(RATE, volume=1.0)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, size=(int(2.5 * RATE), 2)).astype(np.float32)
    a = Source("a", x, seamless=True)
    m.play(a)
    if how == "end_policy":
        m.end_policy = END_LOOP
    else:
        m.queue_next(a)  # loop mode: the current track queued as its own next
    # the queued copy is used up by its wrap (the player queues it again): look at one wrap there, two here
    out = run(m, 4.0 if how == "queued_again" else 6.0, [37, 1000, 4096])
    tiled = np.concatenate([x, x, x])[: len(out)]
    d = int(DECLICK_SEC * RATE)
    np.testing.assert_allclose(out[d:], tiled[d:], atol=SAMPLE_TOL)
    assert ("looped", "a") in events(m)
