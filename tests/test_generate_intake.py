"""The generate intake (jobs/api.py Intake) in process: a request dropped at any point of its wait is answered
once, with the drop's error, and never placed in the queue. Events, no sleeps."""

from __future__ import annotations

import queue
import threading
from typing import Any

from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.errors import ErrorCode, LofiError
from lofi_daemon.jobs.api import Accepted, Connecting, Intake
from lofi_daemon.jobs.queue import Job
from lofi_daemon.rpc.dispatch import Reply
from lofi_daemon.rpc.schemas.generation import GenerateParams

from tests.daemon_client import CEILING

DROPPED = LofiError(ErrorCode.CANCELLED, "dropped by the test")


class Harness:
    """An intake whose identify step waits for the test (`release`), recording what it places and answers."""

    def __init__(self) -> None:
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.placed: list[str] = []
        self.identifying = threading.Event()
        self.release = threading.Event()
        self.intake = Intake(self.identify, self.place)

    def identify(self, entry: Connecting) -> Job:
        self.identifying.set()
        assert self.release.wait(CEILING)
        return Job(f"id-{entry.request.seed}", entry.request)

    def place(self, job: Job, p: GenerateParams) -> Accepted:
        self.placed.append(job.track_id)
        return {"track_id": job.track_id}, None

    def submit(self, id_: str, seed: int) -> None:
        request = GenerationRequest(backend="tone", prompt="p", duration_sec=1.0, seed=seed)
        params = GenerateParams.model_validate({"prompt": "p"})
        self.intake.submit(request, params, Reply(self.answers.put, id_))

    def answer(self) -> dict[str, Any]:
        return self.answers.get(timeout=CEILING)


def test_a_request_dropped_after_its_identity_came_is_not_placed():
    h = Harness()
    h.submit("a", 1)
    assert h.identifying.wait(CEILING)
    assert [e.request.seed for e in h.intake.waiting()] == [1]
    assert len(h.intake.drop(DROPPED)) == 1  # while identify is still running: it returns a Job regardless
    assert h.answer() == {"jsonrpc": "2.0", "id": "a", "error": DROPPED.to_error()}
    h.release.set()
    h.submit("b", 2)  # the intake goes on with the next request
    assert h.answer() == {"jsonrpc": "2.0", "id": "b", "result": {"track_id": "id-2"}}
    assert h.placed == ["id-2"]  # "a" was answered once, by the drop, and never placed
    assert h.answers.empty() and h.intake.waiting() == []


def test_requests_behind_the_waiting_one_are_dropped_too():
    h = Harness()
    h.submit("a", 1)
    h.submit("b", 2)
    assert h.identifying.wait(CEILING)
    assert [e.request.seed for e in h.intake.waiting()] == [1, 2]
    h.intake.drop(DROPPED)
    assert {h.answer()["id"], h.answer()["id"]} == {"a", "b"}
    h.release.set()
    h.submit("c", 3)
    assert h.answer()["result"] == {"track_id": "id-3"}
    assert h.placed == ["id-3"]
