"""Turns a backend's per-step progress into `generation_progress` notifications: one per 5 % crossed,
percent capped at 99 until the job is complete, with an ETA from the average step time so far."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

STEP_PERCENT = 5


class ProgressReporter:
    def __init__(self, track_id: str, emit: Callable[[dict[str, Any]], None], clock=time.monotonic) -> None:
        self.track_id = track_id
        self._emit = emit
        self._clock = clock
        self._start = clock()
        self._next = STEP_PERCENT
        self.percent = 0

    def __call__(self, done: int, total: int, **fields: Any) -> None:
        if total <= 0:
            return
        percent = min(99, int(done * 100 // total))
        if percent < self._next:
            return
        self._next = (percent // STEP_PERCENT + 1) * STEP_PERCENT
        self.percent = percent
        elapsed = self._clock() - self._start
        eta = elapsed * (total - done) / done if done > 0 else None
        self._emit(
            {
                "track_id": self.track_id,
                "percent": percent,
                "eta_sec": None if eta is None else round(eta, 1),
                "elapsed_sec": round(elapsed, 1),
                **fields,
            }
        )
