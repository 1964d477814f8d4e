"""The single-worker priority queue: high > normal > prefetch, FIFO within a priority, at most
MAX_WAITING jobs waiting (the running job does not count).

A job is a track to generate, or a `task` that is no track (a radio window: radio/session.py). Both go through
the one worker, so two models never run at once."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ..backends.base import GenerationRequest
from ..cancel import CancelToken
from ..errors import ErrorCode, LofiError

if TYPE_CHECKING:
    from ..ports import Backend

Priority = Literal["high", "normal", "prefetch"]
PRIORITY_RANK: dict[str, int] = {"high": 0, "normal": 1, "prefetch": 2}
MAX_WAITING = 10


class Task(Protocol):
    """Work for the worker that is not a track: it gets the job's backend made resident and runs in the worker
    thread; the worker sends no generation_* notification for it (the task reports itself)."""

    def run(self, backend: Backend, cancel: CancelToken) -> None: ...

    def failed(self, error: LofiError | None) -> None:
        """The task ended without finishing: cancelled (None) or with this error."""
        ...


@dataclass
class Job:
    track_id: str
    request: GenerationRequest
    priority: Priority = "normal"
    fmt: str | None = None
    allow_download: bool = False
    cancel: CancelToken = field(default_factory=CancelToken)
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    percent: int = 0
    seq: int = 0
    task: Task | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "prompt": self.request.prompt,
            "backend": self.request.backend,
            "duration_sec": self.request.duration_sec,
            "seed": self.request.seed,
            "priority": self.priority,
        }


class JobQueue:
    def __init__(self, max_waiting: int = MAX_WAITING) -> None:
        self.max_waiting = max_waiting
        self._heap: list[tuple[int, int, Job]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self.running: Job | None = None

    # -- producer side -----------------------------------------------------------------------------
    def find(self, track_id: str) -> Job | None:
        with self._cond:
            if self.running and self.running.track_id == track_id:
                return self.running
            return next((j for _, _, j in self._heap if j.track_id == track_id), None)

    def submit(self, job: Job) -> int:
        """Queue `job`; returns its position (0 = runs next / is running). Raises QUEUE_FULL."""
        with self._cond:
            if len(self._heap) >= self.max_waiting:
                raise LofiError(
                    ErrorCode.QUEUE_FULL,
                    f"the queue is full ({self.max_waiting} jobs waiting); cancel one or wait",
                    waiting=len(self._heap),
                )
            job.seq = next(self._seq)
            heapq.heappush(self._heap, (PRIORITY_RANK[job.priority], job.seq, job))
            self._cond.notify_all()
            return self._position_locked(job)

    def position(self, job: Job) -> int:
        with self._cond:
            return self._position_locked(job)

    def _position_locked(self, job: Job) -> int:
        if job is self.running:
            return 0
        order = [j for _, _, j in sorted(self._heap)]
        return order.index(job) + (1 if self.running else 0)

    def cancel(self, track_id: str) -> Literal["waiting", "running"] | None:
        with self._cond:
            if self.running and self.running.track_id == track_id:
                self.running.cancel.cancel()
                return "running"
            for i, (_, _, job) in enumerate(self._heap):
                if job.track_id == track_id:
                    self._heap.pop(i)
                    heapq.heapify(self._heap)
                    return "waiting"
        return None

    def clear(self, include_prefetch: bool = True) -> list[Job]:
        """Remove waiting track jobs (tasks belong to their owner: the radio stops with radio_stop)."""
        with self._cond:
            removed = [
                j
                for _, _, j in self._heap
                if j.task is None and (include_prefetch or j.priority != "prefetch")
            ]
            self._heap = [e for e in self._heap if e[2] not in removed]
            heapq.heapify(self._heap)
            return removed

    def waiting(self) -> list[Job]:
        with self._cond:
            return [j for _, _, j in sorted(self._heap)]

    def has_waiting(self, priority: Priority | None = None) -> bool:
        with self._cond:
            return any(priority is None or j.priority == priority for _, _, j in self._heap)

    @property
    def busy(self) -> bool:
        with self._cond:
            return self.running is not None or bool(self._heap)

    # -- worker side -------------------------------------------------------------------------------
    def take(self, timeout: float | None = None) -> Job | None:
        """Block until a job is available (or timeout) and mark it running."""
        with self._cond:
            if not self._heap:
                self._cond.wait(timeout)
            if not self._heap:
                return None
            _, _, job = heapq.heappop(self._heap)
            self.running = job
            job.started_at = time.time()
            return job

    def done(self, job: Job) -> None:
        with self._cond:
            if self.running is job:
                self.running = None
            self._cond.notify_all()

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()
