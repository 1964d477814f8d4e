"""The one generation worker. It owns the model lifecycle (one backend resident at a time, unloaded after an
idle period) and turns every outcome of a job into exactly one terminal notification. Nothing a job does can
stop this thread."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..backends import shaping
from ..backends.install import ensure_installed
from ..errors import Cancelled, ErrorCode, LofiError
from ..models.verify import repair_hint
from ..ports import Backend, PlaybackSink, Store
from .progress import ProgressReporter
from .queue import Job, JobQueue, Task

if TYPE_CHECKING:
    from ..cache.index import Track

log = logging.getLogger(__name__)

Notify = Callable[[str, dict[str, Any]], None]


class Worker:
    def __init__(
        self,
        queue: JobQueue,
        backends: dict[str, Backend],
        store: Store,
        notify: Notify,
        idle_unload_sec: float = 600.0,
        *,
        player: PlaybackSink | None = None,
    ) -> None:
        self.queue = queue
        self.backends = backends
        self.store = store
        self.notify = notify
        self.idle_unload_sec = idle_unload_sec
        # where audio streams while it is generated (the only audio path into playback; the finished track
        # reaches the player through `generation_complete`, like every other subscriber)
        self.player = player
        self._stop = threading.Event()
        self._last_job_end = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="generation-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        running = self.queue.running
        if running:
            running.cancel.cancel()
        self.queue.wake()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self.queue.take(timeout=1.0)
            if job is None:
                self._unload_if_idle()
                continue
            try:
                self.run_job(job)
            finally:
                self.queue.done(job)
                self._last_job_end = time.monotonic()

    def _unload_if_idle(self) -> None:
        if time.monotonic() - self._last_job_end < self.idle_unload_sec:
            return
        for backend in self.backends.values():
            if backend.loaded:
                log.info("unloading %s after %.0f s idle", backend.name, self.idle_unload_sec)
                backend.unload()

    def run_job(self, job: Job) -> None:
        """Run one job to its terminal notification. Public so the CLI runs the exact same path."""
        req = job.request
        if job.task is not None:
            return self._run_task(job)
        self.notify("generation_started", {**job.summary(), "started_at": job.started_at})
        started = time.monotonic()
        try:
            backend = self.backends[req.backend]
            ensure_installed(backend, job.allow_download, self._download_progress(req.backend), job.cancel)
            job.cancel.check()
            check_request = getattr(backend, "check_request", None)  # optional (ports.Backend)
            if check_request is not None:
                check_request(req)  # what is too slow to check at intake, before the model loads
                job.cancel.check()
            self._make_resident(backend)
            job.cancel.check()

            def on_progress(done: int, total: int, **fields: Any) -> None:
                job.cancel.check()
                reporter(done, total, **fields)
                job.percent = reporter.percent

            reporter = ProgressReporter(job.track_id, lambda p: self.notify("generation_progress", p))
            with self._stream_to_player(job, backend) as on_audio:
                audio = shaping.generate(backend, req, on_progress, job.cancel, on_audio=on_audio)
            job.cancel.check()
            elapsed = time.monotonic() - started
            track = self.store.put(
                job.track_id,
                audio,
                request=req,
                model_version=backend.model_version(),
                generation_time_sec=elapsed,
                fmt=job.fmt,
            )
        except Cancelled:
            log.info("job %s cancelled", job.track_id)
            self.notify("generation_cancelled", {"track_id": job.track_id})
            return
        except LofiError as exc:
            log.warning("job %s failed: %s", job.track_id, exc.message)
            self._error(job, exc)
            return
        except MemoryError:
            log.exception("job %s ran out of memory", job.track_id)
            self._error(job, LofiError(ErrorCode.MODEL_INFERENCE_FAILED, "out of memory while generating"))
            return
        except Exception as exc:
            log.exception("job %s failed", job.track_id)
            self._error(job, LofiError(ErrorCode.MODEL_INFERENCE_FAILED, f"generation failed: {exc}"))
            return
        log.info("job %s done in %.1f s -> %s", job.track_id, elapsed, track.path)
        self.notify("generation_complete", complete_payload(track, elapsed, cached=False))

    def _run_task(self, job: Job) -> None:
        """A job that is no track (a radio window): its backend resident, then the task; every way it can end
        reaches the task once (`failed`), and nothing it raises stops the worker."""
        task = job.task
        assert task is not None
        try:
            backend = self.backends[job.request.backend]
            ensure_installed(backend, False, self._download_progress(job.request.backend), job.cancel)
            job.cancel.check()
            self._make_resident(backend)
            job.cancel.check()
            task.run(backend, job.cancel)
        except Cancelled:
            self._task_failed(task, None)
        except LofiError as exc:
            log.warning("task %s failed: %s", job.track_id, exc.message)
            self._task_failed(task, exc)
        except MemoryError:
            log.exception("task %s ran out of memory", job.track_id)
            self._task_failed(task, LofiError(ErrorCode.MODEL_INFERENCE_FAILED, "out of memory"))
        except Exception as exc:
            log.exception("task %s failed", job.track_id)
            self._task_failed(task, LofiError(ErrorCode.MODEL_INFERENCE_FAILED, f"failed: {exc}"))

    @staticmethod
    def _task_failed(task: Task, error: LofiError | None) -> None:
        try:
            task.failed(error)
        except Exception:
            log.exception("task failure handler failed")

    def _stream_to_player(self, job: Job, backend: Backend) -> contextlib.AbstractContextManager:
        """Play while generating when the backend can stream, the track is not shaped afterwards (loop…) and
        the player wants it (auto-play)."""
        if self.player is None or not backend.streams_audio or shaping.active(job.request):
            return contextlib.nullcontext(None)
        req = job.request
        return self.player.streaming(job.track_id, backend.sample_rate, backend.channels, req.duration_sec)

    def _error(self, job: Job, exc: LofiError) -> None:
        self.notify(
            "generation_error",
            {
                "track_id": job.track_id,
                "code": int(exc.code),
                "error_code": exc.code.name,
                "message": exc.message,
                **exc.data,
            },
        )

    def _make_resident(self, backend: Backend) -> None:
        for other in self.backends.values():
            if other is not backend and other.loaded:
                log.info("unloading %s to make room for %s", other.name, backend.name)
                other.unload()
        if not backend.loaded:
            t0 = time.monotonic()
            try:
                try:
                    backend.load()
                except LofiError:
                    raise
                except Exception as exc:
                    raise LofiError(
                        ErrorCode.MODEL_LOAD_FAILED, f"could not load {backend.name}: {exc}"
                    ) from exc
            except LofiError as exc:
                if exc.code != ErrorCode.MODEL_LOAD_FAILED or "available_bytes" in exc.data:
                    raise  # not a file problem (e.g. too little free memory)
                # a corrupt file is the usual cause: say how to find it and fetch it again
                hint = repair_hint(backend.name)
                raise LofiError(exc.code, f"{exc.message}; {hint}", **{**exc.data, "hint": hint}) from exc
            log.info("loaded %s in %.1f s", backend.name, time.monotonic() - t0)

    def _download_progress(self, backend: str) -> Callable[[dict[str, Any]], None]:
        def report(p: dict[str, Any]) -> None:
            self.notify("download_progress", {"backend": backend, **p})

        return report


def complete_payload(track: Track, generation_time_sec: float, cached: bool) -> dict[str, Any]:
    data = track.to_dict()
    return {
        "track_id": data["track_id"],
        "path": data["path"],
        "duration_sec": data["duration_sec"],
        "sample_rate": data["sample_rate"],
        "prompt": data["prompt"],
        "seed": data["seed"],
        "backend": data["backend"],
        "model_version": data["model_version"],
        "generation_time_sec": round(generation_time_sec, 3),
        "cached": cached,
        "track": data,
        **shaping.report(track.info),  # what loop / bpm did to the audio
    }
