"""A `Backend` whose jobs run on a remote generator. Validation, the track identity and everything around the job
(queue, cache, player, prefetch) stay local: the request is checked by the same local backend class, its id
uses the model version the remote reports, and the audio that comes back is verified before it is cached.

The remote receives the validated request only — never a local path: a parameter naming a local file is refused
here with a clear error.
"""

from __future__ import annotations

import logging
import math
import queue
import time
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..backends.base import AudioChunkFn, GeneratedAudio, GenerationRequest, ProgressFn
from ..cancel import CancelToken
from ..errors import Cancelled, ErrorCode, LofiError
from ..models.download import ProgressThrottle
from ..ports import Backend, DownloadProgress, Notify
from .link import LOST, LinkLost, RemoteLink
from .protocol import (
    MAX_CHANNELS,
    audio_digest,
    decode_audio,
    error_code,
    names_a_file,
    plain_int,
    scalar_fields,
    text,
)

log = logging.getLogger(__name__)

EVENT_POLL_SEC = 0.2  # how often a waiting job looks at its cancel token
SLACK_SEC = 2.0  # audio a remote may send beyond the requested duration (window rounding)
IDLE_PING_SEC = 15.0  # a job that hears nothing this long pings the remote (a hung remote fails the job)
# progress fields the local notification sets itself (a remote must not rename or re-time the local job)
PROGRESS_RESERVED = ("track_id", "percent", "eta_sec", "elapsed_sec", "done", "total")


class RemoteBackend:
    def __init__(self, local: Backend, link: RemoteLink, notify: Notify, retry: bool = True) -> None:
        self.local = local  # validates and describes; never generates while it is wrapped
        self.link = link
        self.notify = notify
        self.retry = retry
        self.idle_ping_sec = IDLE_PING_SEC
        self.name = local.name
        self.display_name = f"{local.display_name} (remote)"
        self.sample_rate = local.sample_rate
        self.channels = local.channels
        self.min_duration_sec = local.min_duration_sec
        self.max_duration_sec = local.max_duration_sec
        self.default_duration_sec = local.default_duration_sec
        self.streams_audio = (
            True  # the remote streams when its backend does; otherwise the track comes at once
        )

    # -- what the intake needs ------------------------------------------------------------------------------
    def validate(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        params = self.local.validate(raw)
        if params.get("source_track"):
            raise LofiError(
                ErrorCode.INVALID_PARAMS,
                f"{params.get('task', 'editing')} acts on a track in this machine's cache, which the remote "
                f"generator {self.link.host} cannot read; leave {self.name} out of generator.backends to edit tracks",
                param="source_track",
            )
        for key, value in params.items():
            if isinstance(value, str) and value.startswith("track:"):  # riffusion's init from a cached track
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"{key} names a track in this machine's cache, which the remote generator {self.link.host} "
                    f"cannot read; leave {self.name} out of generator.backends to start from a track",
                    field=key,
                )
            if isinstance(value, str) and names_a_file(value):
                raise LofiError(
                    ErrorCode.INVALID_PARAMS,
                    f"{key} names a local file, which the remote generator {self.link.host} cannot read; "
                    f"local files are never sent to it",
                    field=key,
                )
        return params

    def _remote_info(self, cancel: CancelToken | None = None) -> dict[str, Any]:
        info = self.link.wait_ready(cancel=cancel)
        for b in info.get("backends") or []:
            if isinstance(b, dict) and b.get("name") == self.name:
                return b
        raise LofiError(
            ErrorCode.INVALID_BACKEND,
            f"the remote generator {self.link.host} has no {self.name} backend",
            hint=f"remove {self.name} from generator.backends, or install it on {self.link.host}",
        )

    def identity_waits(self) -> bool:
        """True while model_version() would wait for the link's handshake (the intake then answers `generate`
        off the RPC dispatch thread: jobs/api.py Intake)."""
        return self.link.state != "ready"

    def wait_identity(self, cancel: CancelToken) -> None:
        """Wait for the handshake model_version() needs; Cancelled once `cancel` is set (jobs/api.py Intake)."""
        self._remote_info(cancel)

    def model_version(self) -> str:
        """The remote's: it decides the weights, variant and provider, so it decides the track identity."""
        return str(self._remote_info().get("model_version") or "?")

    def is_installed(self) -> bool:
        # installing happens on the remote: the request carries the user's consent (allow_download) there
        return True

    def status(self) -> dict[str, Any]:
        link = self.link.status()
        remote: dict[str, Any] = next((b for b in link["backends"] if b.get("name") == self.name), {})
        return {
            "installed": remote.get("installed"),
            "model_version": remote.get("model_version"),
            "provider": remote.get("provider"),
            "remote": link,
        }

    def download(self, progress: DownloadProgress | None, cancel: CancelToken) -> None:
        raise LofiError(
            ErrorCode.INVALID_PARAMS,
            f"{self.name} runs on the remote generator {self.link.host}: generate with allow_download to let the "
            "remote download its model",
        )

    # -- lifecycle: the link is the "model" -----------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return False  # nothing resident here: the local models stay as they are

    def load(self) -> None:
        self.link.start()

    def unload(self) -> None:
        pass

    # -- a job ----------------------------------------------------------------------------------------------
    def generate(
        self,
        request: GenerationRequest,
        progress: ProgressFn,
        cancel: CancelToken,
        on_audio: AudioChunkFn | None = None,
    ) -> GeneratedAudio:
        streamed_any = False

        def forward(chunk: np.ndarray) -> None:
            nonlocal streamed_any
            streamed_any = True
            if on_audio is not None:
                on_audio(chunk)

        try:
            return self._run(request, progress, cancel, forward)
        except LinkLost as e:
            # Once audio reached the player a second run would play twice; before that, connect and run again.
            if not self.retry or streamed_any:
                raise self._lost(e) from e
            log.warning("%s; connecting again for one more try", e)
            self.link.reset()
            try:
                return self._run(request, progress, cancel, forward)
            except LinkLost as again:
                raise self._lost(again) from again

    def _lost(self, e: LinkLost) -> LofiError:
        return LofiError(
            ErrorCode.MODEL_INFERENCE_FAILED,
            f"lost the remote generator {self.link.host} during the job: {e}",
            hint="the job can be generated again; `:Lofi status` shows the link",
        )

    def _run(
        self, request: GenerationRequest, progress: ProgressFn, cancel: CancelToken, on_audio: AudioChunkFn
    ) -> GeneratedAudio:
        if self.link.state != "ready":
            progress(0, 1, stage="connecting", host=self.link.host)
        self._remote_info(cancel)  # waits for the connection (bounded, and cancellable)
        cancel.check()
        job_id = uuid.uuid4().hex
        events = self.link.open_job(job_id)
        try:
            reply = self.link.request(
                "generator.generate",
                {
                    "job_id": job_id,
                    "backend": request.backend,
                    "prompt": request.prompt,
                    "duration_sec": request.duration_sec,
                    "seed": request.seed,
                    "params": dict(request.params),
                    "allow_download": True,  # the local intake already asked for consent (require_installed)
                },
            )
            log.info("remote job %s accepted by %s (%s)", job_id, self.link.host, reply.get("model_version"))
            return self._receive(job_id, events, request, progress, cancel, on_audio)
        finally:
            self.link.close_job(job_id)

    def _receive(
        self,
        job_id: str,
        events: queue.Queue[tuple[str, dict[str, Any]]],
        request: GenerationRequest,
        progress: ProgressFn,
        cancel: CancelToken,
        on_audio: AudioChunkFn,
    ) -> GeneratedAudio:
        limit = int(math.ceil((request.duration_sec + SLACK_SEC) * self.sample_rate))
        parts: dict[str, list[np.ndarray]] = {"stream": [], "final": []}
        frames = {"stream": 0, "final": 0}
        next_seq = 0
        # the remote's download progress, paced like a local download's whatever pace the remote sends it at
        download = ProgressThrottle(
            lambda fields: self.notify(
                "download_progress", {**fields, "backend": self.name, "remote": self.link.host}
            )
        )
        cancel_deadline: float | None = None  # once cancel is sent: how long the remote gets to confirm it
        heard = time.monotonic()  # the remote's last sign of life about this job
        while True:
            if cancel.cancelled and cancel_deadline is None:
                try:
                    reply = self.link.request("generator.cancel", {"job_id": job_id})
                except (LinkLost, LofiError):
                    raise Cancelled() from None
                if reply.get("cancelled") is not True:  # the remote no longer knows the job
                    raise Cancelled()
                cancel_deadline = time.monotonic() + self.link.connect_timeout_sec
            if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                log.warning("%s did not confirm the cancel of job %s", self.link.host, job_id)
                raise Cancelled()
            try:
                method, p = events.get(timeout=EVENT_POLL_SEC)
            except queue.Empty:
                if time.monotonic() - heard > self.idle_ping_sec:
                    # silent (a long model load, or a hung remote): a ping answered means it is alive
                    self.link.request("ping")  # LinkLost when it does not answer in time
                    heard = time.monotonic()
                continue
            if method == LOST:
                raise LinkLost(text(p.get("reason", "link lost")))
            if method == "generator.progress":
                heard = time.monotonic()
                done, total = plain_int(p.get("done")), plain_int(p.get("total"), 1)
                if done is None or total is None:
                    raise self._bad(
                        f"a progress report of {text(p.get('done'), 40)}/{text(p.get('total'), 40)}"
                    )
                try:
                    progress(min(done, total), total, **scalar_fields(p.get("fields"), PROGRESS_RESERVED))
                except Cancelled:
                    continue  # the cancel request goes out at the top of the loop; wait for the remote's answer
            elif method == "generator.download":
                heard = time.monotonic()
                download(scalar_fields(p, ("job_id", "backend", "remote")))
            elif method == "generator.audio":
                heard = time.monotonic()
                kind, seq = p.get("kind"), plain_int(p.get("seq"))
                if (
                    not isinstance(kind, str) or kind not in parts or seq != next_seq
                ):  # (a list is unhashable)
                    raise self._bad(
                        f"an audio chunk out of order ({text(kind, 40)} #{text(p.get('seq'), 40)}, "
                        f"expected #{next_seq})"
                    )
                next_seq += 1
                chunk = self._chunk(p)
                frames[kind] += chunk.shape[0]
                if frames[kind] > limit:
                    raise self._bad(f"more audio than {request.duration_sec:g} s")
                parts[kind].append(chunk)
                if kind == "stream":
                    on_audio(chunk)
            elif method == "generator.done":
                return self._finish(p, parts)
            elif method == "generator.cancelled":
                raise Cancelled()
            elif method == "generator.error":
                raise LofiError(
                    error_code(p.get("code")),
                    f"{self.link.host}: {text(p.get('message', 'the remote job failed'))}",
                    remote=self.link.host,
                )

    def _chunk(self, p: dict[str, Any]) -> np.ndarray:
        frames, channels, data = plain_int(p.get("frames"), 1, 2**31), p.get("channels"), p.get("data")
        if plain_int(channels, 1, MAX_CHANNELS) != self.channels:
            raise self._bad(
                f"an audio chunk with {text(channels, 40)} channels for a {self.channels}-channel backend"
            )
        if frames is None or not isinstance(data, str):
            raise self._bad("an audio chunk of an impossible shape")
        try:
            chunk = decode_audio(data, frames, self.channels)
        except ValueError as e:
            raise self._bad(str(e)) from None
        if not np.isfinite(chunk).all():
            raise self._bad("audio with NaN or infinite samples")
        return chunk

    def _finish(self, p: dict[str, Any], parts: dict[str, list[np.ndarray]]) -> GeneratedAudio:
        kind = "stream" if p.get("streamed") is True else "final"
        pieces = parts[kind]
        samples = np.concatenate(pieces) if pieces else np.zeros((0, self.channels), np.float32)
        if plain_int(p.get("sample_rate")) != self.sample_rate:
            raise self._bad(
                f"audio at {text(p.get('sample_rate'), 40)} Hz where {self.sample_rate} Hz was expected"
            )
        if not samples.shape[0]:
            raise self._bad("no audio")
        if plain_int(p.get("frames")) != samples.shape[0] or p.get("sha256") != audio_digest(samples):
            raise self._bad("audio that does not match its checksum (the link corrupted it)")
        info = scalar_fields(p.get("info"), ("remote",))
        return GeneratedAudio(samples, self.sample_rate, {**info, "remote": self.link.host})

    def _bad(self, what: str) -> LofiError:
        return LofiError(
            ErrorCode.MODEL_INFERENCE_FAILED,
            f"the remote generator {self.link.host} sent {what}; the track was not kept",
        )
