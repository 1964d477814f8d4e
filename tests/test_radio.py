"""The radio in fast-forward: a player on a test device with a simulated clock, the real queue and worker, and a
synthetic continuing backend whose windows take simulated time (tests/doubles/radio_backend.py)."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.audio.player import Player
from lofi_daemon.audio.resample import to_device
from lofi_daemon.backends.musicgen.backend import MusicGenBackend
from lofi_daemon.backends.musicgen.pipeline import SamplingParams
from lofi_daemon.cache.store import TrackStore
from lofi_daemon.config import Settings
from lofi_daemon.errors import LofiError
from lofi_daemon.jobs.queue import JobQueue
from lofi_daemon.jobs.worker import Worker
from lofi_daemon.radio.session import AHEAD_WINDOWS, Radio
from lofi_daemon.rpc.schemas.radio import RadioStartParams, RadioSteerParams

from tests.doubles.radio_backend import FRAME_RATE, RadioToneBackend
from tests.musicgen_fixture import tiny_settings
from tests.playback_helpers import ManualOutput, Recorder, dominant_freq, put_track, sine
from tests.tolerances import audio_tol

DEV_RATE = 16000
BLOCK = 1024  # 64 ms per device block and control step (the real control thread polls every 50 ms)
WINDOW, STRIDE = 6.0, 4.0


class Sim:
    def __init__(self, tmp_path, *, speed: float = 3.0, crossfade: float = 1.0, backend=None) -> None:
        self.store = TrackStore(tmp_path / "tracks")
        self.rec = Recorder()
        holder: dict = {}
        self.player = Player(
            self.store,
            self.rec,
            start_thread=False,
            volume=1.0,
            crossfade_sec=crossfade,
            output_factory=lambda r, d: holder.setdefault(
                "o", ManualOutput(r, d, rate=DEV_RATE, block=BLOCK)
            ),
            progress_listeners=[lambda *a: self.radio.on_progress(*a)],
        )
        self.out = holder["o"]
        self.now = 0.0
        self.player.clock = lambda: self.now
        self.backend = backend or RadioToneBackend(
            window_sec=WINDOW, stride_sec=STRIDE, speed=speed, tick=self.advance
        )
        backends = {self.backend.name: self.backend}
        self.queue = JobQueue()
        self.worker = Worker(self.queue, backends, self.store, self.rec, player=self.player)
        self.radio = Radio(
            queue=self.queue,
            backends=backends,  # type: ignore[arg-type]
            settings=Settings(cache_dir=tmp_path),
            store=self.store,
            player=self.player,
            notify=self.rec,
        )
        self.audio: list[np.ndarray] = []
        self.peak_buffer = 0  # the largest buffer the live source ever held (frames)

    def advance(self, seconds: float) -> None:
        """Simulated wall time passes: the device renders, the control thread polls."""
        rate = self.out.rate  # the device's, which a device change may change
        for _ in range(int(round(seconds * rate / BLOCK))):
            self.now += BLOCK / rate
            self.player.poll()
            self.audio.append(self.out.pump(BLOCK / rate))
            live = self.player._live
            if live is not None:
                self.peak_buffer = max(self.peak_buffer, live.source._data[0].shape[0])

    def run(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass, running queued jobs as the worker would."""
        end = self.now + seconds
        while self.now < end:
            job = self.queue.take(timeout=0)
            if job is None:
                self.advance(0.1)
                continue
            try:
                self.worker.run_job(job)
            finally:
                self.queue.done(job)

    def start(self, prompt: str = "lofi", **kw) -> dict:
        return self.radio.start(RadioStartParams(prompt=prompt, backend=self.backend.name, **kw))

    def recorded(self) -> np.ndarray:
        return np.concatenate(self.audio)[:, 0]


def rms_blocks(x: np.ndarray, block: int = DEV_RATE // 100) -> np.ndarray:
    n = len(x) // block * block
    return np.sqrt(np.mean(x[:n].reshape(-1, block) ** 2, axis=1))


@pytest.mark.slow
def test_ten_minutes_in_fast_forward_have_no_gap_no_repeat_and_flat_memory(tmp_path):
    sim = Sim(tmp_path, speed=3.0)
    sim.start()
    sim.run(600.0)
    x = sim.recorded()
    start = int(np.flatnonzero(np.abs(x) > 1e-3)[0])
    # no gap: every 10 ms from the first sound on is a full-level sine (0.5 amplitude → RMS 0.354)
    assert rms_blocks(x[start + DEV_RATE // 100 :]).min() > 0.3
    windows = sim.rec.of("radio_window")
    assert [w["index"] for w in windows] == list(range(len(windows)))
    # ten minutes of music at 4 s a window (the first is 6 s), generated ahead but not far ahead
    played = (len(x) - start) / DEV_RATE
    assert played > 590
    generated = WINDOW + STRIDE * (len(windows) - 1)
    assert played <= generated <= played + (AHEAD_WINDOWS + 1) * STRIDE
    # every window continues from the previous one's last codes, and no code is ever generated twice
    made = sim.backend.windows
    keep = int((WINDOW - STRIDE) * FRAME_RATE)
    for prev, cur in zip(made, made[1:], strict=False):
        np.testing.assert_array_equal(cur["context"], np.concatenate([prev["context"], prev["new"]])[-keep:])
    codes = np.concatenate([w["new"] for w in made])
    assert len(np.unique(codes)) == len(codes)
    # flat memory: the live buffer never held more than the audio ahead of playback plus a window
    bound = int((AHEAD_WINDOWS + 1) * STRIDE * DEV_RATE * 2 + 2 * 4096)
    assert sim.peak_buffer <= bound
    held = sim.player._live._resampler.received()  # type: ignore[union-attr]
    assert held is not None and held.shape[0] < 32000  # the resampler keeps only its filter's context
    assert sim.radio.status()["state"] == "playing"
    # it never had to bridge, never repeated, and the radio is not a cache track
    assert not [m for m in sim.rec.of("log") if "slower" in m["message"]]
    assert sim.store.list_tracks() == []


def test_a_prompt_change_lands_at_the_next_window_and_is_heard(tmp_path):
    sim = Sim(tmp_path, speed=3.0)
    sim.start("calm lofi")
    sim.run(20.0)
    before = len(sim.rec.of("radio_window"))
    running = sim.queue.running  # none between simulated steps
    assert running is None
    sim.radio.steer(RadioSteerParams(prompt="high lofi"))
    sim.run(30.0)
    prompts = [w["prompt"] for w in sim.rec.of("radio_window")]
    assert prompts[:before] == ["calm lofi"] * before
    # the window queued before the steer already takes the new prompt: it is decided when the window starts
    assert prompts[before:] == ["high lofi"] * (len(prompts) - before)
    x = sim.recorded()
    assert dominant_freq(x[-DEV_RATE:], DEV_RATE) == pytest.approx(440, abs=5)
    assert rms_blocks(x[int(3 * DEV_RATE) :]).min() > 0.3  # the change is no gap either


def test_stop_cancels_within_one_window_and_fades_out(tmp_path):
    sim = Sim(tmp_path, speed=3.0)
    sim.start()
    sim.run(15.0)
    cancelled = {}

    def stop_midway(seconds: float) -> None:  # stop from inside a window, as radio_stop would mid-generation
        if not cancelled:
            cancelled["at"] = len(sim.backend.windows)
            sim.radio.stop()
        Sim.advance(sim, seconds)

    sim.backend.tick = stop_midway
    sim.run(10.0)
    assert len(sim.backend.windows) == cancelled["at"]  # the window being made was cancelled, no later one
    assert sim.rec.of("radio_stopped")[-1]["reason"] == "stopped"
    assert sim.radio.status() == {"on": False}
    tail = sim.recorded()[-5 * DEV_RATE :]
    assert np.abs(tail).max() == 0.0  # silent within the de-click fade, long before the 10 s are over
    assert sim.queue.running is None and not sim.queue.waiting()


def test_pause_stops_generating_once_enough_is_ahead_and_resume_goes_on(tmp_path):
    sim = Sim(tmp_path, speed=3.0)
    sim.start()
    sim.run(12.0)
    sim.player.pause()
    sim.run(120.0)
    paused_windows = len(sim.rec.of("radio_window"))
    sim.run(120.0)
    assert len(sim.rec.of("radio_window")) == paused_windows  # paused: nothing more is generated
    assert sim.player._live.ahead_sec <= (AHEAD_WINDOWS + 1) * STRIDE  # type: ignore[union-attr]
    sim.player.resume()
    sim.run(20.0)
    assert len(sim.rec.of("radio_window")) > paused_windows
    assert sim.player.state()["state"] == "playing"


@pytest.mark.slow
def test_a_slow_generator_is_bridged_with_a_cached_track_instead_of_silence(tmp_path):
    sim = Sim(tmp_path, speed=0.6)
    cached = put_track(sim.store, "cached", sine(330, 8.0, 32000, amp=0.5), 32000)
    assert sim.start()["state"] == "buffering"
    states = set()
    for _ in range(90):
        sim.run(1.0)
        states.add(sim.radio.status()["state"])
    assert {"playing", "bridging"} <= states
    x = sim.recorded()
    start = int(np.flatnonzero(np.abs(x) > 1e-3)[0])
    # pre-buffered first (the start rule), then never silent: crossfades between the radio and the bridge
    assert start / DEV_RATE > 2.0
    assert rms_blocks(x[start + DEV_RATE // 100 :]).min() > 0.2
    started = [p["track_id"] for p in sim.rec.of("playback_started")]
    assert cached.track_id in started and started[0] == "radio-1"
    assert started.count("radio-1") >= 2  # it came back to the radio after bridging
    warnings = [m for m in sim.rec.of("log") if "slower than real time" in m["message"]]
    assert len(warnings) == 1  # said once


def test_playing_a_track_crossfades_from_the_radio_and_stops_it(tmp_path):
    sim = Sim(tmp_path, speed=3.0)
    track = put_track(sim.store, "cached", sine(330, 8.0, 32000, amp=0.5), 32000)
    sim.start()
    sim.run(10.0)
    sim.audio = []
    sim.player.play(track.track_id)
    sim.run(3.0)
    x = sim.recorded()
    assert rms_blocks(x[: 2 * DEV_RATE]).min() > 0.3  # a crossfade, no de-click dip to silence
    assert sim.rec.of("radio_stopped")[-1]["reason"] == "the user stopped playback"
    assert dominant_freq(x[-DEV_RATE:], DEV_RATE) == pytest.approx(330, abs=5)


def test_the_user_stopping_playback_stops_the_radio(tmp_path):
    sim = Sim(tmp_path, speed=3.0)
    sim.start()
    sim.run(10.0)
    sim.player.stop()
    assert sim.rec.of("radio_stopped")[-1]["reason"] == "the user stopped playback"
    windows = len(sim.backend.windows)
    sim.run(10.0)
    assert len(sim.backend.windows) == windows
    assert sim.radio.status() == {"on": False}


def test_plan_and_energy_make_the_expected_prompt_sequence(tmp_path):
    plan = {
        "name": "t",
        "loop": True,
        "sections": [
            {"role": "intro", "seconds": 6, "energy": 0.2, "modifiers": "soft piano"},
            {"role": "groove", "seconds": 8, "energy": 0.6, "modifiers": "drums"},
        ],
    }
    sim = Sim(tmp_path, speed=3.0)
    sim.start("lofi", plan=plan, adaptive=True)
    sim.run(14.0)
    steered_at = len(sim.rec.of("radio_window"))
    sim.radio.steer(RadioSteerParams(energy=1.0))
    sim.run(16.0)
    seq = [(w["section"], w["energy"], w["prompt"]) for w in sim.rec.of("radio_window")]
    # stream time 0 → intro; 6, 10 → groove; 14 → intro again (the plan loops) …
    assert seq[0] == ("intro", 0.2, "lofi, soft piano, relaxed, laid-back, soft drums, 70 bpm")
    assert seq[1][:2] == ("groove", 0.6) and seq[2][:2] == ("groove", 0.6)
    assert seq[1][2] == "lofi, drums, steady groove, mid-tempo, 85 bpm"
    assert [s for s, _, _ in seq[:steered_at]] == ["intro", "groove", "groove", "intro", "intro"][:steered_at]
    # the editor's energy 1.0 sways each section up by 0.3 from the next window on
    later = seq[steered_at:]
    assert len(later) >= 2 and {s for s, _, _ in later} == {"intro", "groove"}
    assert all(e == pytest.approx({"intro": 0.5, "groove": 0.9}[s]) for s, e, _ in later)


def test_a_plan_without_loop_ends_the_radio_after_its_last_section(tmp_path):
    plan = {"loop": False, "sections": [{"role": "outro", "seconds": 10, "energy": 0.3}]}
    sim = Sim(tmp_path, speed=3.0)
    sim.start("lofi", plan=plan)
    sim.run(30.0)
    assert [w["index"] for w in sim.rec.of("radio_window")] == [0, 1]  # 6 s + 4 s = the plan's 10 s
    assert sim.rec.of("radio_stopped")[-1]["reason"] == "the plan ended"
    assert sim.player.state()["state"] == "stopped"  # played out to the end, then silence


def test_saved_windows_become_tracks_that_join_into_the_stream(tmp_path):
    sim = Sim(tmp_path, speed=3.0)
    sim.start(save=True)
    sim.run(14.0)
    ids = [w["track_id"] for w in sim.rec.of("radio_window")]
    assert ids and all(ids) and len(set(ids)) == len(ids)
    parts = [sim.store.read_audio(t)[0][:, 0] for t in ids]
    assert [len(p) / 32000 for p in parts][:2] == [WINDOW, STRIDE]
    whole = np.concatenate(parts)
    # one continuous sine: no jump where two saved windows meet
    assert np.abs(np.diff(whole)).max() < 2 * np.pi * 220 / 32000 * 0.5 * 1.01 + 1e-3


def test_bad_requests_get_clear_errors(tmp_path):
    sim = Sim(tmp_path, speed=3.0)
    with pytest.raises(LofiError, match="unknown radio plan 'nope'; available: focus, late_night, pomodoro"):
        sim.start(plan="nope")
    with pytest.raises(LofiError, match="the prompt is empty"):
        sim.start("  ")
    with pytest.raises(LofiError, match="the radio is off"):
        sim.radio.steer(RadioSteerParams(prompt="x"))
    remote = type(
        "RemoteMusicGen", (), {"name": "musicgen", "local": object()}
    )()  # as remote/backend.py wraps
    sim.radio.backends["musicgen"] = remote
    with pytest.raises(
        LofiError, match="runs on the remote generator, and the radio does not run remotely yet"
    ):
        sim.radio.start(RadioStartParams(prompt="x"))
    with pytest.raises(ValueError, match="either seconds or bars"):
        RadioStartParams(prompt="x", plan={"sections": [{"role": "intro", "energy": 0.1}]})
    assert sim.radio.status() == {"on": False}


def test_the_tiny_musicgen_radio_plays_exactly_the_long_track(tmp_path):
    """Real continuation end to end: with one prompt, what the radio plays is, sample for sample (after
    resampling to the device), the long track `generate` makes with the same seed: no seam anywhere."""
    backend = MusicGenBackend(tiny_settings(tmp_path), window_sec=1.0, stride_sec=0.6)
    sim = Sim(tmp_path, crossfade=0.2, backend=backend)
    sim.start("lofi", seed=7)
    sim.run(6.0)  # simulated time passes only between windows here: the generator looks infinitely fast
    windows = sim.rec.of("radio_window")
    assert len(windows) >= 5
    assert [w["context_frames"] for w in windows] == [0] + [20] * (len(windows) - 1)
    x = sim.recorded()
    start = int(np.flatnonzero(np.abs(x) > 1e-6)[0])
    long = backend.pipeline.generate("lofi", 1.0 + 0.6 * (len(windows) - 1), 7, SamplingParams())
    expected = to_device(long.audio, 32000, DEV_RATE, 2)[:, 0]
    d = DEV_RATE // 100  # the de-click fade-in
    n = min(len(x) - start, len(expected)) - DEV_RATE  # the last second is still waiting for lookahead
    assert n > 3 * DEV_RATE
    err = np.abs(x[start + d : start + n] - expected[d:n]).max()
    # the chunked EnCodec decode's float32 rounding; the exact resampler and the mixer add nothing at unit volume
    assert err < audio_tol(len(long.frames), long.audio), err


def test_the_radio_goes_on_when_the_device_rate_changes(tmp_path):
    sim = Sim(tmp_path, speed=3.0)
    sim.start()
    sim.run(10.0)
    sim.player.set_device(1)  # the test device's "half" output: 8 kHz
    rate = sim.out.rate
    assert rate == DEV_RATE // 2
    sim.audio = []
    sim.run(20.0)
    x = np.concatenate(sim.audio)[:, 0]
    # the buffered audio was resampled and new audio arrives at the new rate: still a full-level 220 Hz tone
    assert rms_blocks(x[rate // 10 :], rate // 100).min() > 0.3
    assert dominant_freq(x[-rate:], rate) == pytest.approx(220, abs=5)
    assert sim.player.state()["track_id"] == "radio-1"
