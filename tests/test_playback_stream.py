"""Play while generating: exact chunked resampling, the start rule (never run dry), hand-over from a playing
track, and aborted generations."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.audio.player import Player
from lofi_daemon.audio.resample import StreamResampler, resample, to_device
from lofi_daemon.cache.store import TrackStore

from tests.playback_helpers import ManualOutput, Recorder, dominant_freq, put_track, sine

DEV_RATE = 16000
GEN_RATE = 32000
BLOCK = 512


@pytest.mark.parametrize("src,dst", [(32000, 48000), (44100, 48000), (48000, 44100), (32000, 16000)])
def test_stream_resampler_matches_whole_signal_resampling(src, dst):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((int(src * 1.7), 2)).astype(np.float32)
    rs = StreamResampler(src, dst)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 5000))
        parts.append(rs.push(x[i : i + n]))
        i += n
    parts.append(rs.finish())
    np.testing.assert_array_equal(np.concatenate(parts), resample(x, src, dst))


@pytest.mark.parametrize("src,dst", [(32000, 48000), (48000, 48000)])
def test_stream_resampler_finishes_empty_when_nothing_was_pushed(src, dst):
    # a streaming generation that ends before its first chunk (or a device change then) must not crash
    rs = StreamResampler(src, dst)
    assert rs.finish().shape[0] == 0
    assert rs.received() is None


class Sim:
    """A player on a test device with a simulated wall clock, and a generator producing a track in 1 s chunks at
    `speed` × real time."""

    def __init__(self, tmp_path, *, speed: float, duration: float, freq: float = 440.0) -> None:
        self.store = TrackStore(tmp_path / "tracks")
        self.rec = Recorder()
        holder = {}
        self.player = Player(
            self.store,
            self.rec,
            start_thread=False,
            volume=1.0,
            crossfade_sec=1.0,
            output_factory=lambda r, d: holder.setdefault(
                "o", ManualOutput(r, d, rate=DEV_RATE, block=BLOCK)
            ),
        )
        self.out = holder["o"]
        self.now = 0.0
        self.player.clock = lambda: self.now
        self.player.more_coming = lambda: True
        self.speed, self.duration = speed, duration
        self.audio = sine(freq, duration, GEN_RATE, amp=0.5)
        self.produced = 0
        self.stream = None
        self.next_chunk_at = 0.0
        self.done = False

    def start_generation(self, track_id: str = "5" * 16) -> None:
        self.stream = self.player.stream(track_id, GEN_RATE, 1, duration_sec=self.duration)
        self.next_chunk_at = self.now + 1.0 / self.speed

    def step(self) -> np.ndarray:
        self.now += BLOCK / DEV_RATE
        if self.stream is not None and not self.done and self.now >= self.next_chunk_at:
            chunk = self.audio[self.produced : self.produced + GEN_RATE]
            self.stream.push(chunk)
            self.produced += len(chunk)
            self.next_chunk_at += 1.0 / self.speed
            if self.produced >= len(self.audio):
                self.stream.finish()
                self.done = True
        self.player.poll()
        return self.out.pump(BLOCK / DEV_RATE)

    def run(self, seconds: float) -> np.ndarray:
        return np.concatenate([self.step() for _ in range(int(seconds * DEV_RATE / BLOCK))])


def first_loud(x: np.ndarray) -> int:
    return int(np.flatnonzero(np.abs(x[:, 0]) > 1e-4)[0])


def test_fast_generator_starts_after_the_first_chunks_and_plays_exactly_the_track(tmp_path):
    sim = Sim(tmp_path, speed=4.0, duration=6.0)
    sim.start_generation()
    audio = sim.run(9.0)
    start = first_loud(audio)
    # first sound once 1 s of audio is buffered: after the first 1 s chunk arrives (0.25 s at 4× real time)
    assert start / DEV_RATE == pytest.approx(0.25, abs=0.05)
    expected = to_device(sim.audio, GEN_RATE, DEV_RATE, 2)
    played = audio[start - 1 : start - 1 + len(expected)]
    d = DEV_RATE // 100  # de-click fade-in
    seam = 5 * DEV_RATE  # then it repeats (more music is coming), crossfading into itself for the last second
    np.testing.assert_allclose(played[d:seam], expected[d:seam], atol=1e-5)
    assert [p["track_id"] for p in sim.rec.of("playback_started")] == ["5" * 16]
    # the worker's generation_complete (after store.put) does not restart it
    sim.player.on_generation_complete({"track_id": "5" * 16})
    assert len(sim.rec.of("playback_started")) == 1


def test_slow_generator_waits_until_it_can_play_through_without_a_gap(tmp_path):
    sim = Sim(tmp_path, speed=0.5, duration=10.0)
    sim.start_generation()
    audio = sim.run(24.0)
    start = first_loud(audio) / DEV_RATE
    # at half real time the generator needs 20 s; playing may start once buffered ≥ 1.25 × remaining, i.e.
    # after ~5.6 s of audio exist (~11–12 s): far earlier than the end, and never dry afterwards
    assert 10.0 <= start <= 13.0
    end = start + 10.0
    body = audio[int((start + 0.02) * DEV_RATE) : int((end - 0.02) * DEV_RATE), 0]
    rms = np.sqrt(np.mean(body[: (len(body) // 160) * 160].reshape(-1, 160) ** 2, axis=1))
    assert rms.min() > 0.3  # no underrun: every 10 ms of the track is there
    assert sim.out.active or sim.player.state()["state"] in ("playing", "stopped")


def test_stream_hands_over_from_the_playing_track_when_ready(tmp_path):
    sim = Sim(tmp_path, speed=1.0, duration=6.0, freq=660.0)
    cur = put_track(sim.store, "current", sine(220, 4.0, GEN_RATE, amp=0.5), GEN_RATE)
    sim.player.play(cur.track_id)
    sim.run(1.0)
    sim.start_generation()
    audio = sim.run(14.0)
    mono = audio[:, 0]
    rms = np.sqrt(np.mean(mono[: (len(mono) // 160) * 160].reshape(-1, 160) ** 2, axis=1))
    started = [p["track_id"] for p in sim.rec.of("playback_started")]
    assert started == [cur.track_id, "5" * 16]
    # never silent: the stream is ready (0.5 s buffered) before the current track's seam at 3 s, so it is
    # crossfaded into there; once it ends it repeats while more music is on its way
    assert rms.min() > 0.25
    assert abs(dominant_freq(mono[int(1.0 * DEV_RATE) : int(1.9 * DEV_RATE)], DEV_RATE) - 220) < 3
    assert abs(dominant_freq(mono[int(4.5 * DEV_RATE) : int(6.5 * DEV_RATE)], DEV_RATE) - 660) < 3
    assert sim.rec.of("playback_started")[1]["duration_sec"] == 6.0


def test_aborted_generation_plays_out_what_it_has_and_leaves_the_playlist(tmp_path):
    sim = Sim(tmp_path, speed=4.0, duration=20.0)
    sim.player.more_coming = lambda: False
    sim.start_generation()
    sim.run(1.0)  # 3 s of audio produced, the first 0.75 s of it played
    assert sim.player.state()["track_id"] == "5" * 16
    remaining = (sim.stream.source.length - sim.player.mixer.position_frames) / DEV_RATE
    assert remaining > 1.5
    sim.stream.abort()
    sim.done = True
    audio = sim.run(6.0)
    loud = np.flatnonzero(np.abs(audio[:, 0]) > 1e-4)
    assert loud[-1] / DEV_RATE == pytest.approx(
        remaining, abs=0.01
    )  # what was there played out, then silence
    assert sim.player.state()["state"] == "stopped"
    assert sim.rec.of("playback_ended")[-1] == {"track_id": "5" * 16, "reason": "finished"}
    # a stream aborted before it ever played is dropped from the playlist
    sim2 = Sim(tmp_path / "b", speed=0.1, duration=20.0)
    sim2.start_generation("6" * 16)
    assert "6" * 16 in sim2.player.playlist_get()["tracks"]
    sim2.stream.abort()
    assert "6" * 16 not in sim2.player.playlist_get()["tracks"]
    assert sim2.player.state()["state"] == "stopped"


def test_source_grows_safely_while_the_mixer_reads_it():
    """A producer thread pushes small chunks (forcing many buffer growths) while the render thread reads."""
    import threading

    from lofi_daemon.audio.mixer import Mixer, Source

    rate = 8000
    full = np.random.default_rng(2).uniform(-0.5, 0.5, (rate * 20, 2)).astype(np.float32)
    src = Source("s")
    m = Mixer(rate, 2, volume=1.0)
    m.play(src)

    def produce():
        for i in range(0, len(full), 37):
            src.push(full[i : i + 37])
        src.finish()

    t = threading.Thread(target=produce)
    t.start()
    out, got = np.zeros((64, 2), np.float32), []
    while m.audible:  # until the end, including the final de-click fade
        m.render(out)
        got.append(out.copy())
    t.join()
    played = np.concatenate(got)
    played = played[np.any(played != 0, axis=1)]  # drop the underrun gaps (the producer was behind)
    d = rate // 100
    np.testing.assert_array_equal(played[d : len(full) - d], full[d : len(played) - d])
    assert len(played) == len(full)


def test_streaming_context_finishes_or_aborts(tmp_path):
    sim = Sim(tmp_path, speed=4.0, duration=2.0)
    with sim.player.streaming("7" * 16, GEN_RATE, 1, 2.0) as on_audio:
        on_audio(sim.audio[:GEN_RATE])
        on_audio(sim.audio[GEN_RATE:])
    assert "7" * 16 not in sim.player._streams  # finished: a complete source now, started at the next poll
    sim.player.poll()
    assert sim.player.state()["track_id"] == "7" * 16 and sim.player.state()["duration_sec"] == 2.0
    sim.player.stop()
    with pytest.raises(RuntimeError):
        with sim.player.streaming("8" * 16, GEN_RATE, 1, 2.0) as on_audio:
            on_audio(sim.audio[:100])
            raise RuntimeError("generation failed")
    assert "8" * 16 not in sim.player.playlist_get()["tracks"]
    sim.player.auto_play = False
    with sim.player.streaming("9" * 16, GEN_RATE, 1, 2.0) as on_audio:
        assert on_audio is None


def test_a_track_being_generated_can_be_played_and_queued_by_id(tmp_path):
    sim = Sim(tmp_path, speed=4.0, duration=4.0)
    cur = put_track(sim.store, "current", sine(220, 4.0, GEN_RATE, amp=0.5), GEN_RATE)
    sim.player.play(cur.track_id)
    sim.start_generation()
    sim.run(0.6)
    sim.player.playlist_add("5" * 16, position=0)  # not in the cache yet: still accepted
    assert sim.player.playlist_get()["tracks"][0] == "5" * 16
    st = sim.player.play("5" * 16)
    assert st["track_id"] == "5" * 16 and st["duration_sec"] == 4.0


def test_circular_resampling_keeps_a_loop_seamless():
    """One period of a loop resampled circularly equals the middle period of the loop tiled and resampled: the
    filter saw the loop's own end before its start, not silence."""
    from lofi_daemon.audio.resample import resample, to_device

    rng = np.random.default_rng(0)
    period = rng.standard_normal((44100, 1)).astype(np.float32) * 0.3
    one = to_device(period, 44100, 48000, 1, circular=True)
    tiled = resample(np.concatenate([period] * 3), 44100, 48000)
    assert one.shape == (48000, 1)
    np.testing.assert_allclose(one, tiled[48000:96000], atol=1e-5)
    edge = to_device(period, 44100, 48000, 1)
    assert (
        np.abs(edge[:20] - tiled[48000:48020]).max() > 1e-3
    )  # without it the edges are filtered from silence
