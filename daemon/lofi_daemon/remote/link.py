"""The local end of the connection to a remote generator: a child process (`ssh gpu-box lofi-daemon serve
--generator`, or any command whose stdin/stdout reach one) spoken to with the same framing as the client.

It connects in the background as soon as it is configured, so the first job rarely waits; a job that needs it
waits at most `connect_timeout_sec`. A lost link (the process exits, the pipe breaks) wakes every waiting job
with a clear reason instead of leaving it hanging, and the next job connects again.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import shlex
import subprocess
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ..cancel import CancelToken
from ..errors import ErrorCode, LofiError
from ..rpc.framing import FramingError, MessageReader, MessageTooLarge, MessageWriter
from .protocol import GENERATOR_PROTOCOL, error_code, hello, text

log = logging.getLogger(__name__)

LOST = "link.lost"  # the event a job's queue receives when the link goes away
CANCEL_POLL_SEC = 0.2  # how often a job waiting for the connection looks at its cancel token
STDERR_LINE = 300  # what is kept of one stderr line (the rest of a longer line is read and dropped)


class LinkLost(Exception):
    pass


class RemoteLink:
    def __init__(self, cmd: Sequence[str], connect_timeout_sec: float = 30.0) -> None:
        self.cmd = list(cmd)
        self.connect_timeout_sec = connect_timeout_sec
        self.state = "idle"  # idle → connecting → ready | failed; ready → lost → connecting …; closed
        self.error: str | None = None
        self.info: dict[str, Any] = {}  # the remote's initialize reply
        self.latency_ms: float | None = None
        self.bytes_received = (
            0  # protocol bytes from the remote (the link's cost: see scripts/bench_remote.py)
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._writer: MessageWriter | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._jobs: dict[str, queue.Queue[tuple[str, dict[str, Any]]]] = {}
        self._stderr: deque[str] = deque(maxlen=20)
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)

    @property
    def host(self) -> str:
        """What to call the remote in messages: the ssh host when the command is ssh, else the command."""
        if self.cmd and os.path.basename(self.cmd[0]) == "ssh":
            args = [a for a in self.cmd[1:] if not a.startswith("-")]
            if args:
                return args[0]
        return self.info.get("host") or shlex.join(self.cmd)[:60]

    # -- connecting ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin connecting in the background (no-op while connecting or connected)."""
        with self._lock:
            if self.state in ("connecting", "ready", "closed"):
                return
            self.state = "connecting"
            self.error = None
        threading.Thread(target=self._connect, name="generator-link", daemon=True).start()

    def wait_ready(self, timeout: float | None = None, cancel: CancelToken | None = None) -> dict[str, Any]:
        """The remote's handshake, connecting first if needed; LofiError when it cannot be reached, Cancelled
        within a poll interval of `cancel` being set."""
        self.start()
        deadline = time.monotonic() + (self.connect_timeout_sec if timeout is None else timeout)
        with self._ready:
            while self.state == "connecting":
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if cancel is not None:
                    cancel.check()
                    left = min(left, CANCEL_POLL_SEC)
                self._ready.wait(left)
            if self.state == "ready":
                return self.info
            state, error = self.state, self.error
        if state == "connecting":
            raise LofiError(
                ErrorCode.MODEL_LOAD_FAILED,
                f"the remote generator {self.host} did not answer within {self.connect_timeout_sec:g} s",
                hint="check the generator command in a shell; a slow ssh login may need a longer "
                "generator.connect_timeout_sec",
            )
        raise LofiError(ErrorCode.MODEL_LOAD_FAILED, error or f"the remote generator {self.host} is {state}")

    def _connect(self) -> None:
        try:
            proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the daemon, not ssh directly
            )
        except OSError as e:
            self._fail(f"could not start the generator command {shlex.join(self.cmd)}: {e.strerror or e}")
            return
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        with self._lock:
            closed = self.state == "closed"  # close() ran while the command was starting
            if not closed:
                self._proc = proc
                self._writer = MessageWriter(proc.stdin)  # type: ignore[arg-type]  # a binary pipe
        if closed:
            self._kill(proc)
            return
        threading.Thread(target=self._read_stderr, args=(proc,), name="generator-stderr", daemon=True).start()
        threading.Thread(target=self._read, args=(proc,), name="generator-reader", daemon=True).start()
        try:
            t0 = time.monotonic()
            reply = hello(
                self._call("initialize", {"protocol_version": GENERATOR_PROTOCOL, "client": __version__})
            )
            if reply.get("protocol_version") != GENERATOR_PROTOCOL or reply.get("role") != "generator":
                raise LofiError(
                    ErrorCode.MODEL_LOAD_FAILED,
                    f"{self.host} runs lofi-daemon {reply.get('version', '?')} with generator protocol "
                    f"{reply.get('protocol_version')}; this lofi ({__version__}) speaks {GENERATOR_PROTOCOL}: "
                    "update lofi on the older side",
                )
            connect_ms = (time.monotonic() - t0) * 1000
            t1 = time.monotonic()
            self._call("ping", None)
            latency = (time.monotonic() - t1) * 1000
        except (LofiError, LinkLost) as e:
            message = e.message if isinstance(e, LofiError) else str(e)
            self._fail(message)
            self._kill(proc)
            return
        with self._ready:
            if self.state == "closed":
                self._kill(proc)
                return
            self.info = reply
            self.latency_ms = round(latency, 1)
            self.state = "ready"
            self._ready.notify_all()
        log.info("generator %s ready in %.0f ms (round trip %.1f ms)", self.host, connect_ms, latency)

    def _fail(self, message: str) -> None:
        detail = " | ".join(self._stderr)
        with self._ready:
            if self.state != "closed":
                self.state = "failed"
            self.error = f"{message}{f' (remote said: {detail[-300:]})' if detail else ''}"
            self._ready.notify_all()
        log.warning("generator link failed: %s", self.error)

    # -- messages ------------------------------------------------------------------------------------------
    def _send(self, message: dict[str, Any]) -> None:
        with self._lock:
            writer = self._writer
        if writer is None:
            raise LinkLost(f"the link to {self.host} is not open")
        try:
            writer.write(message)
        except (BrokenPipeError, OSError, ValueError) as e:
            raise LinkLost(f"the link to {self.host} broke: {e}") from e

    def _call(
        self, method: str, params: dict[str, Any] | None, timeout: float | None = None
    ) -> dict[str, Any]:
        id_ = next(self._ids)
        box: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=1)
        with self._lock:
            self._pending[id_] = box
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            message["params"] = params
        try:
            self._send(message)
            reply = box.get(timeout=self.connect_timeout_sec if timeout is None else timeout)
        except queue.Empty:
            # a remote that stops answering is gone: drop it, so the next job connects afresh instead of
            # waiting on it again
            with self._lock:
                proc = self._proc
            if proc is not None:
                proc.kill()
            raise LinkLost(f"{self.host} did not answer {method}") from None
        finally:
            with self._lock:
                self._pending.pop(id_, None)
        if reply.get("lost"):
            raise LinkLost(reply["lost"])
        if "error" in reply:
            err = reply["error"] if isinstance(reply["error"], dict) else {}
            raise LofiError(
                error_code(err.get("code")),
                f"{self.host}: {text(err.get('message', 'error'))}",
                remote=True,
            )
        result = reply.get("result")
        return result if isinstance(result, dict) else {}

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A request on the ready link; LinkLost when the link goes away meanwhile."""
        return self._call(method, params)

    def open_job(self, job_id: str) -> queue.Queue[tuple[str, dict[str, Any]]]:
        """The queue that receives (method, params) of every notification about `job_id`, and (LOST, …)."""
        events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        with self._lock:
            self._jobs[job_id] = events
        return events

    def close_job(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        reader = MessageReader(proc.stdout)
        reason = f"{self.host} closed the connection"
        while True:
            try:
                frame = reader.read()
            except (FramingError, MessageTooLarge) as e:
                log.warning("bad frame from the generator: %s", e)
                continue
            except (EOFError, OSError, ValueError) as e:
                reason = f"the link to {self.host} broke: {e}"
                break
            if frame is None:
                break
            self.bytes_received += len(frame.body)
            try:
                message = json.loads(frame.body)
            except (ValueError, RecursionError):  # (deep nesting overflows the decoder's recursion)
                log.warning("undecodable message from the generator")
                continue
            self._route(message)
        code = proc.wait()
        self._lost(f"{reason} (exit status {code})" if code else reason, proc)

    def _route(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        if "id" in message and "method" not in message:
            id_ = message["id"]
            with self._lock:
                box = self._pending.get(id_) if type(id_) is int else None
            if box is not None:
                try:
                    box.put_nowait(message)
                except queue.Full:  # a second answer to one request: the first stands
                    log.warning("the generator answered request %d twice", id_)
            return
        method, params = message.get("method"), message.get("params")
        if not isinstance(method, str) or not isinstance(params, dict):
            return
        if method == "log":
            log.info("remote: %s", text(params.get("message")))
            return
        job_id = params.get("job_id")
        with self._lock:
            events = self._jobs.get(job_id) if isinstance(job_id, str) else None
        if events is not None:
            events.put((method, params))

    def _lost(self, reason: str, proc: subprocess.Popen[bytes]) -> None:
        detail = " | ".join(self._stderr)
        if detail:
            reason = f"{reason} (remote said: {detail[-300:]})"
        with self._ready:
            if self._proc is not proc:
                return
            self._proc = None
            self._writer = None
            if self.state != "closed":
                self.state = "lost" if self.state == "ready" else "failed"
                self.error = self.error or reason
            pending, jobs = list(self._pending.values()), list(self._jobs.values())
            self._ready.notify_all()
        for box in pending:
            box.put({"lost": reason})
        for events in jobs:
            events.put((LOST, {"reason": reason}))
        log.warning("%s", reason)

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        cut = False  # inside a line longer than STDERR_LINE: drop the rest of it
        while raw := proc.stderr.readline(STDERR_LINE):
            whole = raw.endswith(b"\n")
            if not cut:
                line = text(raw.decode("utf-8", "replace").strip(), STDERR_LINE)
                if line:
                    self._stderr.append(line)
                    log.debug("remote stderr: %s", line)
            cut = not whole

    # -- ending --------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget a failed or lost connection so the next wait_ready() connects again."""
        with self._lock:
            if self.state in ("failed", "lost"):
                self.state = "idle"
                self.error = None
                self._stderr.clear()

    def close(self) -> None:
        with self._ready:
            self.state = "closed"
            proc = self._proc
            self._ready.notify_all()
        if proc is not None:
            self._kill(proc)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # a clean EOF: the remote daemon exits on its own
            proc.wait(3)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()

    def status(self) -> dict[str, Any]:
        backends = self.info.get("backends") or []
        return {
            "host": self.host,
            "command": self.cmd,
            "state": self.state,
            "error": self.error,
            "version": self.info.get("version"),
            "protocol_version": self.info.get("protocol_version"),
            "latency_ms": self.latency_ms,
            "bytes_received": self.bytes_received,
            "backends": [
                {k: b.get(k) for k in ("name", "installed", "model_version", "provider", "variant")}
                for b in backends
                if isinstance(b, dict)
            ],
        }
