"""Queue ordering, positions and progress throttling, in-process."""

from __future__ import annotations

import pytest
from lofi_daemon.backends.base import GenerationRequest, track_id_for
from lofi_daemon.errors import ErrorCode, LofiError
from lofi_daemon.jobs.progress import ProgressReporter
from lofi_daemon.jobs.queue import Job, JobQueue


def job(name: str, priority: str = "normal") -> Job:
    return Job(name, GenerationRequest("tone", name, 1.0, 0), priority=priority)


def test_priority_then_fifo_order():
    q = JobQueue()
    for j in [
        job("n1"),
        job("p1", "prefetch"),
        job("h1", "high"),
        job("n2"),
        job("h2", "high"),
        job("p2", "prefetch"),
    ]:
        q.submit(j)
    order = []
    while (j := q.take(timeout=0)) is not None:
        order.append(j.track_id)
        q.done(j)
    assert order == ["h1", "h2", "n1", "n2", "p1", "p2"]


def test_positions_count_the_running_job():
    q = JobQueue()
    a = job("a")
    assert q.submit(a) == 0
    q.take(timeout=0)
    assert q.position(a) == 0
    b, c = job("b"), job("c", "high")
    assert q.submit(b) == 1
    assert q.submit(c) == 1
    assert q.position(b) == 2


def test_queue_full_counts_only_waiting_jobs():
    q = JobQueue(max_waiting=3)
    q.submit(job("run"))
    q.take(timeout=0)
    for i in range(3):
        q.submit(job(f"w{i}"))
    with pytest.raises(LofiError) as e:
        q.submit(job("extra"))
    assert e.value.code is ErrorCode.QUEUE_FULL


def test_cancel_and_clear():
    q = JobQueue()
    r, w, p = job("r"), job("w"), job("p", "prefetch")
    for j in (r, w, p):
        q.submit(j)
    q.take(timeout=0)
    assert q.cancel("w") == "waiting"
    assert q.cancel("r") == "running" and r.cancel.cancelled
    assert q.cancel("zzz") is None
    assert [j.track_id for j in q.clear(include_prefetch=False)] == []
    assert [j.track_id for j in q.clear()] == ["p"]


def test_progress_every_five_percent_capped_at_99():
    sent = []
    clock = iter(range(1000))
    rep = ProgressReporter("t", sent.append, clock=lambda: next(clock))
    for step in range(1, 201):
        rep(step, 200)
    percents = [p["percent"] for p in sent]
    assert percents == list(range(5, 100, 5))  # 100 % is reported only by generation_complete
    etas = [p["eta_sec"] for p in sent]
    assert etas == sorted(etas, reverse=True) and etas[-1] > 0
    # Coarse steps jump several marks at once but never exceed 99.
    sent.clear()
    rep2 = ProgressReporter("t", sent.append)
    for step in range(1, 4):
        rep2(step, 3)
    assert [p["percent"] for p in sent] == [33, 66, 99]


def test_track_identity_is_stable_and_parameter_sensitive():
    base = GenerationRequest("musicgen", "rain", 30, 1, {"top_k": 250})
    assert track_id_for(base, "v1") == track_id_for(
        GenerationRequest("musicgen", "rain", 30.0, 1, {"top_k": 250}), "v1"
    )
    variants = [
        GenerationRequest("musicgen", "rain!", 30, 1, {"top_k": 250}),
        GenerationRequest("musicgen", "rain", 31, 1, {"top_k": 250}),
        GenerationRequest("musicgen", "rain", 30, 2, {"top_k": 250}),
        GenerationRequest("musicgen", "rain", 30, 1, {"top_k": 50}),
        GenerationRequest("ace_step", "rain", 30, 1, {"top_k": 250}),
    ]
    ids = {track_id_for(v, "v1") for v in variants} | {track_id_for(base, "v2"), track_id_for(base, "v1")}
    assert len(ids) == 7
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
