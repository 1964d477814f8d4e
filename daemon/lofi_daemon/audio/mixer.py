"""The mixer: pure numpy, frame-accurate, no device. The output stream's callback calls `render(out)`.

Everything the callback touches is prepared elsewhere: sources are decoded and resampled to the device rate by
the player's control thread before they reach the mixer, so `render` only slices, multiplies and adds. Commands
(play, skip, seek, ...) take the same short lock as `render`; events (a track started, ended, looped) are
appended to a deque that the control thread drains.

Envelopes:
- crossfade between tracks: equal-power (sin/cos) so two uncorrelated tracks keep a steady loudness;
- seek, stop and pause use a short de-click ramp (`DECLICK_SEC`) instead of a hard cut;
- volume follows its target along a linear per-sample ramp that covers 0 -> 1 in `VOLUME_RAMP_SEC`.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

DECLICK_SEC = 0.010
VOLUME_RAMP_SEC = 0.020
DEFAULT_CROSSFADE_SEC = 2.0

# end policies when the current track reaches its end and no next track is queued
END_LOOP = "loop"  # restart the current track (crossfading into itself): the music never stops
END_STOP = "stop"  # play out and stop


def crossfade_frames(rate: int, crossfade_sec: float, *lengths: int) -> int:
    """Crossfade length between tracks of the given lengths (frames): `crossfade_sec`, but a quarter of a track
    shorter than twice that, and none for a track under 2 s."""
    n = int(round(crossfade_sec * rate))
    for length in lengths:
        if length < 2 * rate:
            return 0
        if length < 2 * n:
            n = min(n, length // 4)
    return max(n, 0)


class Source:
    """Audio of one track at the device rate, float32 [frames, channels]. A streaming source grows with `push`
    until `finish`; the mixer never reads past the frames it has.

    A live source (`forget_played=True`, the radio's endless stream) keeps memory bounded: whenever it grows it
    drops the frames the mixer has already played (`played`), so frame positions stay absolute while the
    buffer holds only [base, length)."""

    def __init__(
        self,
        track_id: str,
        samples: np.ndarray | None = None,
        *,
        channels: int = 2,
        seamless: bool = False,
        forget_played: bool = False,
    ) -> None:
        self.track_id = track_id
        # a seamless loop (generate's `loop`): its end already flows into its start, so repeating it splices
        # end to start with no crossfade (one would blur the seam the loop was cut for)
        self.seamless = seamless
        self.forget_played = forget_played
        self.played = 0  # the furthest frame any voice has read (the mixer advances it)
        if samples is None:
            buf = np.zeros((0, channels), dtype=np.float32)
            self.length = 0
            self.complete = False
        else:
            buf = np.ascontiguousarray(samples, dtype=np.float32)
            self.length = buf.shape[0]
            self.complete = True
        # (buffer, frame index of its first row): one attribute, so a reader never sees a mismatched pair
        self._data: tuple[np.ndarray, int] = (buf, 0)
        self.channels = buf.shape[1]

    @property
    def base(self) -> int:
        """The first frame still held (0 unless a live source forgot what was played)."""
        return self._data[1]

    @property
    def samples(self) -> np.ndarray:
        buf, base = self._data
        return buf[: self.length - base]

    def push(self, chunk: np.ndarray) -> None:
        """Append frames (already at the device rate and channel count). Called from one producer thread."""
        n = chunk.shape[0]
        buf, base = self._data
        if self.length + n - base > buf.shape[0]:
            # a live source keeps a little before the play head: a voice fading out may still read there
            keep = min(self.played, self.length) - 4096 if self.forget_played else 0
            new_base = max(base, keep)
            held = self.length - new_base
            grown = np.zeros((max(2 * held, held + n, 4096), self.channels), np.float32)
            grown[:held] = buf[new_base - base : self.length - base]
            buf, base = grown, new_base
            self._data = (grown, new_base)  # readers hold the old pair until they re-read it: still valid
        buf[self.length - base : self.length - base + n] = chunk
        self.length += n  # publish after the data is in place

    def finish(self) -> None:
        self.complete = True


@dataclass
class _Voice:
    source: Source
    pos: int = 0
    fade_in: int = 0  # length of the fade-in ramp (0 = none)
    fade_in_done: int = 0
    fade_out: int = 0  # length of the fade-out ramp (0 = not fading out)
    fade_out_done: int = 0
    equal_power: bool = True
    ending_reason: str = "finished"
    cut: int = 0  # a de-click ramp to silence on top of everything else (stop): its length
    cut_done: int = 0


def _known(*sources: Source) -> list[int]:
    """Lengths that bound a crossfade: a streaming source's final length is unknown, so it does not count."""
    return [s.length for s in sources if s.complete]


def _ramp(done: int, total: int, n: int, equal_power: bool, rising: bool) -> np.ndarray:
    t = (np.arange(done, done + n, dtype=np.float32) + 0.5) / float(total)
    np.clip(t, 0.0, 1.0, out=t)
    if equal_power:
        return np.sin(t * (math.pi / 2)) if rising else np.cos(t * (math.pi / 2))
    return t if rising else 1.0 - t


class Mixer:
    def __init__(self, rate: int = 48000, channels: int = 2, *, volume: float = 0.3) -> None:
        self.rate = int(rate)
        self.channels = int(channels)
        self.crossfade_sec = DEFAULT_CROSSFADE_SEC
        self.lock = threading.Lock()
        self.events: deque[tuple] = deque()
        self._current: _Voice | None = None
        self._fading: list[_Voice] = []  # voices on their way out (crossfade, seek, stop)
        self._upcoming: list[Source] = []  # tracks to crossfade into, in order
        self._transition_at: int | None = None  # frame of the current voice where the end transition begins
        self._plan_voice: _Voice | None = None  # the voice _transition_at was computed for
        self._end_policy = END_STOP
        self._paused = False
        self._run_gain = 1.0  # 0 while paused (ramped)
        self._volume = float(volume)
        self._volume_target = float(volume)
        self.frames_rendered = 0
        self._declick = max(1, int(DECLICK_SEC * self.rate))
        self._vol_step = 1.0 / max(1, int(VOLUME_RAMP_SEC * self.rate))

    # ------------------------------------------------------------------------------------------ queries

    @property
    def state(self) -> str:
        if self._current is None:
            return "stopped"
        return "paused" if self._paused else "playing"

    @property
    def track_id(self) -> str | None:
        return self._current.source.track_id if self._current else None

    @property
    def position_frames(self) -> int:
        return self._current.pos if self._current else 0

    @property
    def current_source(self) -> Source | None:
        return self._current.source if self._current else None

    @property
    def next_source(self) -> Source | None:
        return self._upcoming[0] if self._upcoming else None

    @property
    def upcoming(self) -> list[Source]:
        return list(self._upcoming)

    @property
    def volume(self) -> float:
        return self._volume_target

    @property
    def audible(self) -> bool:
        """False once nothing more can come out (stopped and all fades done): the stream may be stopped."""
        return bool(self._fading) or (
            self._current is not None and not (self._paused and self._run_gain == 0.0)
        )

    # ----------------------------------------------------------------------------------------- commands

    def play(self, source: Source, *, crossfade: bool = True, at: int = 0) -> None:
        """Start `source` now (at frame `at`: a live source resumes where it was left). If something is playing,
        crossfade into it (like skip); else start at once."""
        at = max(int(at), source.base)
        with self.lock:
            old = self._current
            if old is not None and self._paused and self._run_gain == 0.0:
                self.events.append(("ended", old.source.track_id, "skipped"))  # silent already: just drop it
                self._fading = []  # frozen and silent too: un-pausing must not bring them back for a moment
                old = None
            if old is not None and not self._paused and crossfade:
                self._cut_fading()  # one crossfade at a time: earlier outgoing voices leave within 10 ms
                n = crossfade_frames(self.rate, self.crossfade_sec, *_known(old.source, source))
                n = max(n, self._declick)
                self._fade_out(old, min(n, max(old.source.length - old.pos, 1)), True, "skipped")
                self._current = _Voice(source, pos=at, fade_in=n)
            else:
                self._cut_fading()
                if old is not None:
                    self._fade_out(old, self._declick, False, "skipped")
                self._current = _Voice(source, pos=at, fade_in=self._declick, equal_power=False)
            self._paused = False  # the pause gain ramps back up from wherever it was: no jump
            self._plan_transition()
            self.events.append(("started", source.track_id))

    def queue_next(self, *sources: Source) -> None:
        """The tracks to crossfade into, in order, as the current one ends (none: follow `end_policy`).
        Queuing two ahead lets the mixer move on even if the control thread is late to refill."""
        with self.lock:
            self._upcoming = [s for s in sources if s is not None]
            self._plan_transition()

    def skip(self) -> bool:
        """Crossfade into the queued next track now. False if none is queued."""
        with self.lock:
            if not self._upcoming:
                return False
            nxt = self._upcoming.pop(0)
        self.play(nxt, crossfade=True)
        return True

    def stop(self) -> None:
        with self.lock:
            self._cut_fading()  # a crossfade in progress ends too: stop means silence now
            if self._current is not None:
                self._fade_out(self._current, self._declick, False, "stopped")
                self._current = None
            self._upcoming = []
            self._paused = False
            self._transition_at = None

    def pause(self) -> bool:
        with self.lock:
            if self._current is None or self._paused:
                return False
            self._paused = True
            return True

    def resume(self) -> bool:
        with self.lock:
            if self._current is None or not self._paused:
                return False
            self._paused = False
            return True

    def seek(self, frame: int) -> None:
        with self.lock:
            cur = self._current
            if cur is None:
                return
            limit = cur.source.length - 1 if cur.source.complete else cur.source.length
            frame = int(min(max(frame, cur.source.base), max(limit, 0)))
            self._fade_out(cur, self._declick, False, "seek")
            self._current = _Voice(cur.source, pos=frame, fade_in=self._declick, equal_power=False)
            self._plan_transition()

    @property
    def end_policy(self) -> str:
        return self._end_policy

    @end_policy.setter
    def end_policy(self, policy: str) -> None:
        with self.lock:
            self._end_policy = policy
            self._plan_transition()

    def set_volume(self, level: float) -> None:
        with self.lock:
            self._volume_target = float(min(max(level, 0.0), 1.0))
            if not self.audible:
                self._volume = (
                    self._volume_target
                )  # nothing sounding: no ramp needed (the next play starts there)

    def set_crossfade(self, seconds: float) -> None:
        with self.lock:
            self.crossfade_sec = max(0.0, float(seconds))
            self._plan_transition()

    # -------------------------------------------------------------------------------------------- internals

    def _fade_out(self, voice: _Voice, n: int, equal_power: bool, reason: str) -> None:
        voice.fade_out = max(1, n)
        voice.fade_out_done = 0
        voice.equal_power = equal_power
        voice.ending_reason = reason
        self._fading.append(voice)
        if reason not in ("seek",):
            self.events.append(("ended", voice.source.track_id, reason))

    def _plan_transition(self) -> None:
        """Where the current voice must start its end transition (crossfade into next, or loop)."""
        cur = self._current
        if cur is None or not cur.source.complete:
            self._plan_voice = None  # planned again once the (streaming) source is complete
            self._transition_at = None
            return
        self._plan_voice = cur
        length = cur.source.length
        if cur.source.seamless and self._repeats_next():
            self._transition_at = length  # spliced at its very end, without even a de-click overlap
            return
        if self._upcoming:
            n = crossfade_frames(self.rate, self.crossfade_sec, *_known(cur.source, self._upcoming[0]))
        elif self.end_policy == END_LOOP and not cur.source.forget_played:
            n = crossfade_frames(self.rate, self.crossfade_sec, length)
        else:
            n = 0  # the last track: a de-click fade to silence at its very end
        n = max(n, min(self._declick, length))  # never a hard splice: at least a 10 ms de-click overlap
        self._transition_at = max(length - n, 0) if length > 0 else None

    def _repeats_next(self) -> bool:
        """The current track is what plays after it (loop mode, or no next track under END_LOOP)."""
        cur = self._current
        assert cur is not None
        if self._upcoming:
            return self._upcoming[0] is cur.source
        return self.end_policy == END_LOOP

    def _transition(self) -> None:
        """The current voice reached its transition point."""
        cur = self._current
        assert cur is not None  # the transition point is only set while a voice plays
        nxt = self._upcoming[0] if self._upcoming else None
        length = cur.source.length
        # a live source has forgotten its beginning: it never loops
        if nxt is None and (self.end_policy != END_LOOP or cur.source.forget_played):
            # nothing follows: fade out whatever is left (at most the de-click length) and stop
            left = length - cur.pos
            if left > 0:
                cur.fade_out, cur.fade_out_done, cur.equal_power = min(left, self._declick), 0, False
                cur.ending_reason = "finished"
                self._fading.append(cur)
            self.events.append(("ended", cur.source.track_id, "finished"))
            self._current = None
            self._transition_at = None
            return
        if nxt is None or nxt is cur.source:
            if nxt is not None:
                self._upcoming.pop(0)  # looping by choice (loop mode), not for want of a next track
            nxt = cur.source
            self.events.append(("looped", cur.source.track_id))
        else:
            self._upcoming.pop(0)
            self.events.append(("ended", cur.source.track_id, "finished"))
            self.events.append(("started", nxt.track_id))
        n = length - cur.pos
        if nxt is cur.source and nxt.seamless and n <= 0:
            self._current = _Voice(nxt)  # a seamless loop wraps: sample after sample, no fades
            self._plan_transition()
            return
        self._cut_fading()
        if n > 0:
            cur.fade_out, cur.fade_out_done, cur.equal_power = n, 0, True
            cur.ending_reason = "finished"
            self._fading.append(cur)
        # normally n is the planned crossfade; after a seek past the transition point only a little of the
        # outgoing track is left: the incoming one still fades in over at least the de-click length
        self._current = _Voice(nxt, fade_in=max(n, self._declick), equal_power=n >= self._declick)
        self._plan_transition()

    def _mix_voice(self, v: _Voice, out: np.ndarray, n: int) -> int:
        """Add up to n frames of voice v into out[:n]; return the frames it actually had."""
        src = v.source
        # length before buffer: a streaming source publishes its length after the data, possibly in a grown
        # buffer that holds everything up to that length, so this pair is always consistent
        length = src.length
        buf, base = src._data
        avail = min(n, max(length - v.pos, 0))
        if v.fade_out:
            avail = min(avail, v.fade_out - v.fade_out_done)
        if v.cut:
            avail = min(avail, v.cut - v.cut_done)
        if avail <= 0:
            return 0
        chunk = buf[v.pos - base : v.pos - base + avail]
        gain = None
        if v.fade_in and v.fade_in_done < v.fade_in:
            k = min(avail, v.fade_in - v.fade_in_done)
            g = np.ones(avail, dtype=np.float32)
            g[:k] = _ramp(v.fade_in_done, v.fade_in, k, v.equal_power, True)
            v.fade_in_done += k
            gain = g
        if v.fade_out:
            g = _ramp(v.fade_out_done, v.fade_out, avail, v.equal_power, False)
            v.fade_out_done += avail
            gain = g if gain is None else gain * g
        if v.cut:
            g = _ramp(v.cut_done, v.cut, avail, False, False)
            v.cut_done += avail
            gain = g if gain is None else g * gain
        if gain is None:
            out[:avail] += chunk
        else:
            out[:avail] += chunk * gain[:, None]
        v.pos += avail
        if v.pos > src.played:
            src.played = v.pos
        return avail

    def render(self, out: np.ndarray) -> None:
        """Fill `out` (float32 [frames, channels]) with the next block. Called from the audio callback."""
        n = out.shape[0]
        out.fill(0.0)
        with self.lock:
            if self._paused and self._run_gain == 0.0:
                self.frames_rendered += n  # paused and silent: everything (a crossfade too) stays where it is
                return
            active = n
            if self._paused:  # ramping down: advance only as far as the ramp reaches, then freeze
                active = min(n, math.ceil(self._run_gain * self._declick - 1e-9))
            filled = 0
            while filled < active:
                cur = self._current
                seg = active - filled
                if cur is not None and cur is not self._plan_voice and cur.source.complete:
                    self._plan_transition()  # a streaming source just finished
                if cur is not None and self._transition_at is not None:
                    if cur.pos >= self._transition_at:
                        self._transition()
                        cur = self._current
                        if (
                            self._transition_at is not None
                            and cur is not None
                            and cur.pos >= self._transition_at
                        ):
                            self._transition_at = None
                        continue
                    seg = min(seg, self._transition_at - cur.pos)
                # fading voices first: they may finish inside this segment
                self._render_fading(out, filled, seg)
                if cur is not None:
                    got = self._mix_voice(cur, out[filled : filled + seg], seg)
                    if got < seg and cur.source.complete and self._transition_at is not None:
                        filled += got  # reached the transition point early: handle it on the next turn
                        continue
                    if got < seg and cur.source.complete and cur.pos >= cur.source.length:
                        self.events.append(("ended", cur.source.track_id, "finished"))
                        self._current = None
                filled += seg
            self._apply_gain(out, n)
            self.frames_rendered += n

    def _render_fading(self, out: np.ndarray, start: int, n: int) -> None:
        if not self._fading:
            return
        for v in self._fading:
            self._mix_voice(v, out[start : start + n], n)
        self._fading = [
            v
            for v in self._fading
            if v.fade_out_done < v.fade_out
            and v.pos < v.source.length
            and not (v.cut and v.cut_done >= v.cut)
        ]

    def _cut_fading(self) -> None:
        for v in self._fading:
            if not v.cut:
                v.cut, v.cut_done = self._declick, 0

    def _apply_gain(self, out: np.ndarray, n: int) -> None:
        """Volume and pause ramps, per sample."""
        run_target = 0.0 if self._paused else 1.0
        if self._volume == self._volume_target and self._run_gain == run_target:
            if self._volume * self._run_gain != 1.0:
                out *= self._volume * self._run_gain
            return
        steps = np.arange(1, n + 1, dtype=np.float32)
        vol = _approach(self._volume, self._volume_target, self._vol_step, steps)
        run_step = 1.0 / self._declick
        run = _approach(self._run_gain, run_target, run_step, steps)
        out *= (vol * run)[:, None]
        self._volume = float(vol[-1])
        self._run_gain = float(run[-1])


def _approach(value: float, target: float, step: float, steps: np.ndarray) -> np.ndarray:
    """value moving linearly toward target by `step` per sample, then holding."""
    if value == target:
        return np.full(steps.shape[0], value, dtype=np.float32)
    if target > value:
        return np.minimum(value + step * steps, target).astype(np.float32)
    return np.maximum(value - step * steps, target).astype(np.float32)
