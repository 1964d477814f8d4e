"""The shaping params every backend takes (backends/shaping.py): `loop` and `bpm`, with a click-track backend of
known tempo; and through a real daemon."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from lofi_daemon.audio import seam, tempo
from lofi_daemon.backends import shaping
from lofi_daemon.cache.store import TrackStore
from lofi_daemon.cancel import CancelToken
from lofi_daemon.config import Settings
from lofi_daemon.jobs.api import build_job
from lofi_daemon.jobs.queue import JobQueue
from lofi_daemon.jobs.worker import Worker
from lofi_daemon.rpc.schemas.generation import GenerateParams

from tests.doubles.beat_backend import BeatBackend


def job(backend, **params):
    p = GenerateParams.model_validate({"prompt": "lofi drums", "backend": "beat", "seed": 1, **params})
    return build_job({"beat": backend}, Settings(), p, "normal")


def test_loop_and_bpm_are_part_of_the_id_only_when_set():
    b = BeatBackend()
    plain, off, on = job(b), job(b, loop=False), job(b, loop=True)
    assert plain.track_id == off.track_id and "loop" not in off.request.params
    assert on.track_id != plain.track_id and on.request.params["loop"] is True
    slow, fast = job(b, bpm=80), job(b, bpm=81.5)
    assert slow.request.params["bpm"] == 80.0 and "bpm" not in plain.request.params
    assert len({plain.track_id, slow.track_id, fast.track_id, on.track_id}) == 4


def run(b, **params):
    j = job(b, **params)
    return shaping.generate(b, j.request, lambda *a, **k: None, CancelToken())


def test_bpm_within_reach_is_stretched_to_the_target():
    b = BeatBackend()
    audio = run(b, bpm=90, tempo=93.0, duration_sec=10.0)
    (asked,) = b.requests
    assert asked.prompt == "lofi drums, 90 bpm" and "bpm" not in asked.params
    assert asked.duration_sec >= 10.0 / (1 - shaping.STRETCH_LIMIT)  # room to stretch faster
    info = audio.info["tempo"]
    assert info["stretched"] is True and info["target_bpm"] == 90.0
    assert info["estimated_bpm"] == pytest.approx(93.0, rel=0.005)
    assert audio.samples.shape[0] == 10 * b.sample_rate
    # WSOLA's frame shifts (≤ 16 ms) over the four beats the estimate spans: up to 0.6 % (test_tempo.py)
    assert tempo.estimate(audio.samples, b.sample_rate, 90).bpm == pytest.approx(90.0, rel=0.011)


def test_bpm_far_off_is_left_alone():
    b = BeatBackend()
    audio = run(b, bpm=90, tempo=120.0, duration_sec=10.0)
    info = audio.info["tempo"]
    assert info["stretched"] is False and info["estimated_bpm"] == pytest.approx(120.0, rel=0.005)
    clicks = BeatBackend().generate(b.requests[0], lambda *a, **k: None, None).samples
    np.testing.assert_array_equal(audio.samples, clicks[: 10 * b.sample_rate])  # only cut to length


def test_a_tempo_locked_loop_is_whole_bars_of_the_target():
    b = BeatBackend()
    audio = run(b, bpm=90, tempo=92.0, duration_sec=8.0, loop=True)
    assert audio.info["tempo"]["stretched"] is True
    loop = audio.info["loop"]
    bar = shaping.bar_samples(90.0, b.sample_rate)  # 2.667 s: 8 s is 3 bars, or one more or less
    assert loop["bars"] in (2, 3, 4) and loop["bpm"] == 90.0
    assert abs(audio.samples.shape[0] - loop["bars"] * bar) <= seam.BAR_SLACK * bar
    # WSOLA moves the noise bursts' onsets a little differently in every bar, so no seam is perfect any more
    assert loop["seam"]["score"] > 0.5


def test_the_nearest_whole_bars_win_unless_another_is_clearly_better():
    b = BeatBackend()
    audio = run(b, tempo=90.0, duration_sec=8.0, loop=True)  # unstretched: every bar alike
    loop = audio.info["loop"]
    assert loop["bars"] == 3 and loop["bpm"] == pytest.approx(90.0, rel=0.005)
    assert loop["seam"]["score"] > 0.95 and "tempo" not in audio.info


def test_a_loop_is_cut_from_a_longer_generation_at_the_best_seam():
    b = BeatBackend()
    j = job(b, loop=True, duration_sec=8.0, tempo=96.0)
    streamed = []
    audio = shaping.generate(b, j.request, lambda *a, **k: None, CancelToken(), on_audio=streamed.append)
    (asked,) = b.requests
    # the backend never sees `loop`, generates past the wanted length, and streams nothing (the audio changes)
    assert "loop" not in asked.params and asked.duration_sec > 8.0 + 1.0
    assert streamed == []
    info = audio.info["loop"]
    assert abs(audio.duration_sec - 8.0) <= 0.5 and info["length_sec"] == pytest.approx(audio.duration_sec)
    # the click track repeats every beat (0.625 s): the best seam is on the beat grid, and nearly perfect
    beat = 60 / 96 * b.sample_rate
    length = audio.samples.shape[0]
    assert min(length % beat, beat - length % beat) <= 1
    assert info["seam"]["score"] > 0.95
    assert audio.info["true_tempo"] == 96.0  # the backend's own info is kept


def test_a_daemon_generates_a_loop(daemon):
    d = daemon()
    r = d.call("generate", {"prompt": "rain", "duration_sec": 2, "seed": 7, "loop": True})
    done = d.wait_notification("generation_complete", track_id=r["track_id"])
    assert done["track"]["params"]["loop"] is True
    assert done["loop"]["seam"]["score"] > 0.9  # a steady sine: a clean loop exists
    again = d.call("generate", {"prompt": "rain", "duration_sec": 2, "seed": 7, "loop": True})
    assert again["status"] == "cached"
    cached = d.wait_notification("generation_complete", track_id=r["track_id"], cached=True)
    assert cached["loop"] == done["loop"]  # kept with the track
    plain = d.call("generate", {"prompt": "rain", "duration_sec": 2, "seed": 7})
    assert plain["track_id"] != r["track_id"]
    # a steady tone has no beat to lock: the tempo is reported, nothing is stretched, the length is kept
    timed = d.call("generate", {"prompt": "rain", "duration_sec": 2, "seed": 7, "bpm": 90})
    done = d.wait_notification("generation_complete", track_id=timed["track_id"])
    assert done["tempo"]["target_bpm"] == 90.0 and done["tempo"]["stretched"] is False
    assert done["prompt"] == "rain" and done["duration_sec"] == pytest.approx(2.0)


class RecordingSink:
    """A PlaybackSink double: which tracks were streamed to it."""

    def __init__(self) -> None:
        self.streamed: list[str] = []

    @contextlib.contextmanager
    def streaming(self, track_id, sample_rate, channels, duration_sec):
        self.streamed.append(track_id)
        yield lambda chunk: None


def test_the_worker_streams_plain_tracks_but_not_shaped_ones(tmp_path):
    b, sink, notes = BeatBackend(), RecordingSink(), []
    store = TrackStore(tmp_path / "tracks")
    worker = Worker(JobQueue(), {"beat": b}, store, lambda m, p: notes.append((m, p)), player=sink)
    plain, looped = job(b, duration_sec=4.0), job(b, duration_sec=4.0, loop=True)
    for j in (plain, looped):
        worker.run_job(j)
    assert sink.streamed == [plain.track_id]
    done = {p["track_id"]: p for m, p in notes if m == "generation_complete"}
    assert set(done) == {plain.track_id, looped.track_id}
    assert "loop" not in done[plain.track_id] and done[looped.track_id]["loop"]["seam"]["score"] > 0.9
    assert store.get(looped.track_id).params["loop"] is True
