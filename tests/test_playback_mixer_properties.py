"""Whatever the user does, in whatever order and at whatever moment, the mixer never clicks and never emits
anything but finite audio within range. Property-based (hypothesis): random command sequences between blocks
of random size. Sources are constant (DC) levels, so every change in the output comes from an envelope (fade,
crossfade, pause, volume); a click would be a step far larger than any envelope's slope."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lofi_daemon.audio.mixer import DECLICK_SEC, END_LOOP, END_STOP, Mixer, Source

RATE = 4000
DECLICK = int(DECLICK_SEC * RATE)
LEVELS = [0.8, -0.6, 0.5, -0.9]


def dc(i: int, seconds: float) -> Source:
    return Source(f"t{i}", np.full((int(seconds * RATE), 2), LEVELS[i % len(LEVELS)], np.float32))


command = st.one_of(
    st.tuples(st.just("play"), st.integers(0, 3), st.floats(2.0, 6.0)),
    st.tuples(st.just("queue"), st.integers(0, 3), st.floats(2.0, 6.0)),
    st.tuples(st.just("skip")),
    st.tuples(st.just("stop")),
    st.tuples(st.just("pause")),
    st.tuples(st.just("resume")),
    st.tuples(st.just("seek"), st.floats(0.0, 1.0)),
    st.tuples(st.just("volume"), st.floats(0.0, 1.0)),
    st.tuples(st.just("policy"), st.sampled_from([END_LOOP, END_STOP])),
    st.tuples(st.just("crossfade"), st.floats(0.0, 3.0)),
)
step = st.tuples(command, st.integers(1, 3000))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=25))
def test_no_clicks_whatever_the_command_sequence(steps):
    m = Mixer(RATE, 2, volume=0.7)
    outs = []
    for cmd, frames in steps:
        kind = cmd[0]
        if kind == "play":
            m.play(dc(cmd[1], cmd[2]), crossfade=True)
        elif kind == "queue":
            m.queue_next(dc(cmd[1], cmd[2]))
        elif kind == "skip":
            m.skip()
        elif kind == "stop":
            m.stop()
        elif kind == "pause":
            m.pause()
        elif kind == "resume":
            m.resume()
        elif kind == "seek" and m.current_source is not None:
            m.seek(int(cmd[1] * m.current_source.length))
        elif kind == "volume":
            m.set_volume(cmd[1])
        elif kind == "policy":
            m.end_policy = cmd[1]
        elif kind == "crossfade":
            m.set_crossfade(cmd[1])
        out = np.empty((frames, 2), np.float32)
        m.render(out)
        outs.append(out)
    # let everything play out (loops stop at the end)
    m.end_policy = END_STOP
    m.queue_next()
    for _ in range(40):
        out = np.empty((1000, 2), np.float32)
        m.render(out)
        outs.append(out)
    audio = np.concatenate([np.zeros((1, 2), np.float32), *outs])
    assert np.isfinite(audio).all()
    # one crossfade at a time: an equal-power pair of the same level peaks at √2 × level; while an earlier
    # outgoing voice is cut (10 ms) a third may still add; never more
    assert np.abs(audio).max() <= 0.9 * 2.0
    # the steepest legitimate slope: a 10 ms linear de-click ramp of the loudest level on each of a few voices
    # at once (plus volume ramps); a click would be a jump of the order of a whole level
    steps_ = np.abs(np.diff(audio[:, 0]))
    assert steps_.max() < 0.2, f"click of {steps_.max():.3f} at frame {int(steps_.argmax())}"
    assert audio[-1000:].max() == 0 and audio[-1000:].min() == 0  # and it ends in silence
