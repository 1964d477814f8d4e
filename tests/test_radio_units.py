"""The radio's building blocks on their own: a live source that forgets what was played, a resampler that
forgets consumed input, task jobs in the queue and the worker, and the shipped plans."""

from __future__ import annotations

import numpy as np
import pytest
from lofi_daemon.audio.mixer import Mixer, Source
from lofi_daemon.audio.resample import StreamResampler, resample
from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.errors import ErrorCode, LofiError
from lofi_daemon.jobs.queue import Job, JobQueue
from lofi_daemon.jobs.worker import Worker
from lofi_daemon.radio.energy import energy_words, window_prompt
from lofi_daemon.radio.plans import PLANS, PlanWalker
from lofi_daemon.rpc.schemas.radio import Plan, Section

from tests.doubles.radio_backend import RadioToneBackend
from tests.playback_helpers import Recorder

RATE = 8000


def ramp(a: int, b: int) -> np.ndarray:
    x = np.arange(a, b, dtype=np.float32)[:, None] / 1e6
    return np.repeat(x, 2, axis=1)


def test_a_live_source_forgets_what_was_played_and_plays_every_sample_once():
    m = Mixer(RATE, 2, volume=1.0)
    src = Source("live", channels=2, forget_played=True)
    src.push(ramp(0, 4000))
    m.play(src, crossfade=False)
    out, pushed, peak = [], 4000, 0
    for _ in range(400):  # 400 blocks of 256 = 102 400 frames through a buffer that never holds them all
        block = np.zeros((256, 2), np.float32)
        m.render(block)
        out.append(block)
        if src.length - src.played < 2000:
            src.push(ramp(pushed, pushed + 1000))
            pushed += 1000
        peak = max(peak, src._data[0].shape[0])
    played = np.concatenate(out)[:, 0]
    d = m._declick  # the first frames fade in
    np.testing.assert_array_equal(played[d:], np.arange(d, len(played), dtype=np.float32) / 1e6)
    assert src.base > 90_000 and peak <= 2 * (4000 + 1000 + 4096)
    # a seek or a resume before what is held lands on the first frame still there
    m.seek(0)
    assert m.position_frames == src.base
    m.play(src, crossfade=False, at=10)
    assert m.position_frames == src.base


def test_a_live_source_never_loops():
    m = Mixer(RATE, 2, volume=1.0)
    m.end_policy = "loop"
    src = Source("live", channels=2, forget_played=True)
    src.push(ramp(1, 3 * RATE))
    src.finish()
    m.play(src, crossfade=False)
    for _ in range(4 * RATE // 256):
        m.render(np.zeros((256, 2), np.float32))
    assert m.state == "stopped"
    assert ("looped", "live") not in list(m.events)


@pytest.mark.parametrize("src,dst", [(32000, 48000), (32000, 16000), (48000, 48000)])
def test_a_forgetful_resampler_matches_whole_signal_resampling_and_stays_small(src, dst):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((src * 6, 1)).astype(np.float32)
    rs = StreamResampler(src, dst, keep_input=False)
    parts, held = [], 0
    for i in range(0, len(x), src // 4):
        parts.append(rs.push(x[i : i + src // 4]))
        got = rs.received()
        held = max(held, 0 if got is None else got.shape[0])
    parts.append(rs.finish())
    np.testing.assert_array_equal(np.concatenate(parts), resample(x, src, dst))
    assert held <= src // 4 + 2 * rs.context + rs.down  # a chunk and the filter's context, not 6 s


class Task:
    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.ran, self.failures = error, 0, []

    def run(self, backend, cancel):
        self.ran += 1
        cancel.check()
        if self.error is not None:
            raise self.error

    def failed(self, error):
        self.failures.append(error)


def task_job(name: str, task: Task) -> Job:
    return Job(name, GenerationRequest("radio_tone", "p", 4.0, 1, {}), priority="high", task=task)


def test_task_jobs_run_in_the_worker_and_every_ending_reaches_the_task(tmp_path):
    backend = RadioToneBackend()
    rec = Recorder()
    q = JobQueue()
    worker = Worker(q, {"radio_tone": backend}, store=None, notify=rec)  # type: ignore[arg-type]
    ok, broken, bad = (
        Task(),
        Task(RuntimeError("boom")),
        Task(LofiError(ErrorCode.MODEL_INFERENCE_FAILED, "x")),
    )
    for name, t in (("ok", ok), ("broken", broken), ("bad", bad)):
        worker.run_job(task_job(name, t))
    assert ok.ran == 1 and ok.failures == [] and backend.loaded  # made resident first
    assert (
        broken.failures[0].code == ErrorCode.MODEL_INFERENCE_FAILED and "boom" in broken.failures[0].message
    )
    assert bad.failures[0].message == "x"
    cancelled = Task()
    job = task_job("c", cancelled)
    job.cancel.cancel()
    worker.run_job(job)
    assert cancelled.ran == 0 and cancelled.failures == [None]
    assert rec.items == []  # no generation_* notification for a task


def test_queue_clear_leaves_the_radio_windows_alone():
    q = JobQueue()
    q.submit(task_job("w", Task()))
    q.submit(Job("t", GenerationRequest("radio_tone", "p", 4.0, 1, {})))
    removed = q.clear()
    assert [j.track_id for j in removed] == ["t"] and [j.track_id for j in q.waiting()] == ["w"]


def test_shipped_plans_and_walking_them():
    assert set(PLANS) == {"focus", "pomodoro", "late_night"}
    pomodoro = PlanWalker(PLANS["pomodoro"])
    work = sum(
        w for w, s in zip(pomodoro.lengths, PLANS["pomodoro"].sections, strict=True) if s.role != "rest"
    )
    assert work == 25 * 60 and pomodoro.total == 30 * 60
    assert pomodoro.at(25 * 60 + 1)[1].role == "rest" and pomodoro.at(30 * 60 + 1)[1].role == "intro"  # loops
    focus = PlanWalker(PLANS["focus"])
    assert focus.lengths[0] == pytest.approx(8 * 4 * 60 / 80)  # 8 bars at 80 bpm = 24 s
    once = Plan(loop=False, sections=[Section(role="outro", seconds=10)])
    assert PlanWalker(once).at(9.9) is not None and PlanWalker(once).at(10.0) is None
    later = PlanWalker(PLANS["focus"], start=100.0)  # a plan chosen mid-stream starts at its first section
    assert later.at(100.0)[0] == 0 and later.at(100.0 + 24.0)[0] == 1


def test_energy_words_and_prompts():
    assert energy_words(0.0) == "very calm, sparse, ambient, 60 bpm"
    assert energy_words(1.0) == "energetic, driving beat, 100 bpm"
    assert window_prompt("lofi", None, None) == ("lofi", None)  # no plan, no editor energy: the prompt alone
    prompt, energy = window_prompt("lofi", None, 0.0)  # the editor alone sways the middle
    assert energy == pytest.approx(0.2) and prompt == "lofi, relaxed, laid-back, soft drums, 70 bpm"
