"""The remote end: `lofi-daemon serve --generator`. Headless — no audio device, no player, no track cache — it
runs jobs a local daemon forwards and streams the audio back (protocol.py). It writes nothing but its model files
(downloads the user consented to, on this machine) and its log."""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import __version__
from ..backends import canonical_name, create_backends
from ..backends.base import GenerationRequest
from ..backends.install import ensure_installed
from ..cancel import CancelToken
from ..config import Settings
from ..errors import Cancelled, ErrorCode, LofiError
from ..models.download import ProgressThrottle
from ..ports import Backend
from ..rpc.dispatch import Dispatcher
from .protocol import (
    GENERATOR_PROTOCOL,
    GeneratorHello,
    RemoteJob,
    RemoteJobId,
    audio_digest,
    chunks,
    encode_audio,
    names_a_file,
)

log = logging.getLogger(__name__)

MAX_JOBS = 8  # running + queued: one local daemon sends one job at a time, so more means a runaway sender
Send = Callable[[str, dict[str, Any]], None]


class GeneratorService:
    def __init__(self, settings: Settings, send: Send, dispatcher: Dispatcher) -> None:
        self.settings = settings
        self._send = send
        self.backends: dict[str, Backend] = create_backends(settings, self._backend_notify)
        self._jobs: queue.Queue[RemoteJob | None] = queue.Queue()
        self._cancels: dict[str, CancelToken] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="generator-worker", daemon=True)
        self._register(dispatcher)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            for token in self._cancels.values():
                token.cancel()
        self._jobs.put(None)
        self._thread.join(30.0)
        for backend in self.backends.values():
            if backend.loaded:
                backend.unload()

    def _backend_notify(self, method: str, params: dict[str, Any]) -> None:
        if method == "log":  # the rest (download progress) is forwarded per job
            self._send("log", params)

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for b in self.backends.values():
            info: dict[str, Any] = {
                "name": b.name,
                "sample_rate": b.sample_rate,
                "channels": b.channels,
                "streams_audio": b.streams_audio,
            }
            try:
                status = b.status()
                info.update(
                    installed=b.is_installed(),
                    model_version=b.model_version(),
                    provider=status.get("provider"),
                    variant=status.get("variant"),
                )
            except Exception as exc:  # a broken model folder must not break the handshake
                info.update(installed=False, error=str(exc))
            out.append(info)
        return out

    # -- protocol ------------------------------------------------------------------------------------------
    def _register(self, d: Dispatcher) -> None:
        @d.method("initialize", GeneratorHello)
        def initialize(p: GeneratorHello) -> dict[str, Any]:
            if p.protocol_version != GENERATOR_PROTOCOL:
                newer = "this remote" if GENERATOR_PROTOCOL > p.protocol_version else "the local side"
                raise LofiError(
                    ErrorCode.INVALID_REQUEST,
                    f"generator protocol mismatch: the local lofi speaks {p.protocol_version}, this remote "
                    f"lofi-daemon {__version__} speaks {GENERATOR_PROTOCOL}; update lofi on the side that is "
                    f"older ({newer} is newer)",
                    protocol_version=GENERATOR_PROTOCOL,
                    version=__version__,
                )
            return {
                "role": "generator",
                "protocol_version": GENERATOR_PROTOCOL,
                "version": __version__,
                "host": socket.gethostname(),
                "backends": self.describe(),
            }

        @d.method("ping")
        def ping(_: None) -> dict[str, Any]:
            return {"pong": True}

        @d.method("generator.generate", RemoteJob)
        def generate(p: RemoteJob) -> dict[str, Any]:
            backend = self.backends.get(canonical_name(p.backend))
            if backend is None:
                raise LofiError(
                    ErrorCode.INVALID_BACKEND,
                    f"this remote has no {p.backend!r} backend; it has {', '.join(sorted(self.backends))}",
                )
            if not backend.min_duration_sec <= p.duration_sec <= backend.max_duration_sec:
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"{backend.name} makes {backend.min_duration_sec:g}–{backend.max_duration_sec:g} s of audio, "
                    f"not {p.duration_sec:g} s",
                    field="duration_sec",
                )
            for key, value in p.params.items():
                if any(
                    isinstance(v, str) and names_a_file(v)
                    for v in (value if isinstance(value, list) else [value])
                ):
                    raise LofiError(
                        ErrorCode.INVALID_PARAMS,
                        f"{key} names a file; a remote generator takes no paths from the local side",
                        field=key,
                    )
            params = backend.validate(p.params)
            if params != p.params:  # the local side sends canonical params; a difference means other code
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"the remote reads these {p.backend} params differently; update lofi on both machines",
                    remote_params=params,
                )
            with self._lock:
                if p.job_id in self._cancels:
                    raise LofiError(ErrorCode.INVALID_PARAMS, f"job {p.job_id} is already here")
                if len(self._cancels) >= MAX_JOBS:
                    raise LofiError(
                        ErrorCode.INVALID_REQUEST,
                        f"this remote already holds {MAX_JOBS} jobs; send more when one has finished",
                    )
                self._cancels[p.job_id] = CancelToken()
            self._jobs.put(p)
            return {"accepted": True, "model_version": backend.model_version()}

        @d.method("generator.cancel", RemoteJobId)
        def cancel(p: RemoteJobId) -> dict[str, Any]:
            with self._lock:
                token = self._cancels.get(p.job_id)
            if token is not None:
                token.cancel()
            return {"cancelled": token is not None}

    # -- the one worker ------------------------------------------------------------------------------------
    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            with self._lock:
                token = self._cancels[job.job_id]
            try:
                self._run_job(job, token)
            except Cancelled:
                self._send("generator.cancelled", {"job_id": job.job_id})
            except LofiError as e:
                log.warning("remote job %s failed: %s", job.job_id, e.message)
                self._send("generator.error", {"job_id": job.job_id, **e.to_error(), "message": e.message})
            except Exception as e:
                log.exception("remote job %s failed", job.job_id)
                err = LofiError(ErrorCode.MODEL_INFERENCE_FAILED, f"generation failed on the remote: {e}")
                self._send("generator.error", {"job_id": job.job_id, **err.to_error()})
            finally:
                with self._lock:
                    self._cancels.pop(job.job_id, None)

    def _run_job(self, job: RemoteJob, cancel: CancelToken) -> None:
        backend = self.backends[canonical_name(job.backend)]
        job_id = job.job_id

        def on_download(fields: dict[str, Any]) -> None:
            self._send("generator.download", {"job_id": job_id, "backend": backend.name, **fields})

        ensure_installed(backend, job.allow_download, ProgressThrottle(on_download), cancel)
        cancel.check()
        request = GenerationRequest(
            backend=backend.name,
            prompt=job.prompt,
            duration_sec=job.duration_sec,
            seed=job.seed,
            params=job.params,
        )
        check_request = getattr(backend, "check_request", None)  # as the local worker: before the model loads
        if check_request is not None:
            check_request(request)
            cancel.check()
        for other in self.backends.values():
            if other is not backend and other.loaded:
                other.unload()
        if not backend.loaded:
            backend.load()
        cancel.check()

        def on_progress(done: int, total: int, **fields: Any) -> None:
            cancel.check()
            self._send(
                "generator.progress", {"job_id": job_id, "done": done, "total": total, "fields": fields}
            )

        streamed: list[np.ndarray] = []
        seq = 0

        def send_audio(samples: np.ndarray, kind: str) -> None:
            nonlocal seq
            for part in chunks(np.asarray(samples, dtype=np.float32)):
                self._send(
                    "generator.audio",
                    {
                        "job_id": job_id,
                        "seq": seq,
                        "kind": kind,
                        "frames": int(part.shape[0]),
                        "channels": int(part.shape[1]),
                        "data": encode_audio(part),
                    },
                )
                seq += 1

        def on_audio(chunk: np.ndarray) -> None:
            streamed.append(np.asarray(chunk, dtype=np.float32))
            send_audio(chunk, "stream")

        audio = backend.generate(
            request, on_progress, cancel, on_audio=on_audio if backend.streams_audio else None
        )
        cancel.check()
        samples = np.asarray(audio.samples, dtype=np.float32)
        # the streamed chunks are the track when they add up to it; otherwise the final audio follows
        same = bool(streamed) and np.array_equal(np.concatenate(streamed), samples)
        if not same:
            send_audio(samples, "final")
        self._send(
            "generator.done",
            {
                "job_id": job_id,
                "frames": int(samples.shape[0]),
                "channels": int(samples.shape[1]),
                "sample_rate": int(audio.sample_rate),
                "sha256": audio_digest(samples),
                "streamed": same,
                "info": audio.info,
                "model_version": backend.model_version(),
            },
        )
