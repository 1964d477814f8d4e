"""Test helper: run the real daemon as a subprocess and speak the framed protocol over real pipes."""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TONE = "tests.doubles.tone_backend:ToneBackend"
# How long a test waits for an event before calling it lost. Only a ceiling: every wait returns as soon as the
# event happens. On a loaded 2-core machine (load average 5–7) a daemon start alone can take over 5 s.
CEILING = 120.0


def wait_until(predicate: Any, timeout: float = CEILING) -> Any:
    """Poll `predicate()` until it is truthy and return its value; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s"
        time.sleep(0.05)
    return value


def daemon_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT / "daemon"), str(ROOT)]),
        LOFI_CACHE_DIR=str(tmp / "cache"),
        LOFI_LOG_DIR=str(tmp / "log"),
        LOFI_BACKEND_PLUGINS=TONE,
        HF_HUB_OFFLINE="1",
        XDG_CONFIG_HOME=str(tmp / "xdg"),
    )
    env.update(extra)
    return env


def encode(message: Any) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


class FrameParser:
    """Strict parser for what the daemon writes: anything that is not a well-formed frame fails the test."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[Any]:
        self.buf += data
        out = []
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                assert len(self.buf) < 200, f"garbage on stdout: {self.buf[:200]!r}"
                return out
            assert head.startswith(b"Content-Length: "), f"garbage on stdout: {head[:200]!r}"
            n = int(head.split(b":", 1)[1])
            if len(rest) < n:
                return out
            out.append(json.loads(rest[:n].decode("utf-8")))
            self.buf = rest[n:]


class DaemonProcess:
    def __init__(self, tmp: Path, args: tuple[str, ...] = (), **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lofi_daemon", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=daemon_env(tmp, **env),
            cwd=tmp,
        )
        self.unmatched_errors: queue.Queue[Any] = queue.Queue()  # error replies with id null
        self.notifications: list[dict[str, Any]] = []
        self.responses: dict[Any, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._cond = threading.Condition()
        self.stderr = b""
        self.garbage: list[str] = []  # anything on stdout that is not a well-formed frame
        self.eof = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        parser = FrameParser()
        while True:
            data = self.proc.stdout.read1(65536)
            if not data:
                self.eof.set()
                with self._cond:
                    self._cond.notify_all()
                return
            try:
                msgs = parser.feed(data)
            except (AssertionError, ValueError) as exc:
                self.garbage.append(str(exc))
                msgs = []
            for msg in [m for item in msgs for m in (item if isinstance(item, list) else [item])]:
                with self._cond:
                    if not isinstance(msg, dict):
                        self.garbage.append(f"non-object message {msg!r}")
                    elif "method" in msg and "id" not in msg:
                        self.notifications.append(msg)
                    elif msg.get("id") is None:
                        self.unmatched_errors.put(msg)
                    else:
                        self.responses[msg["id"]] = msg
                    self._cond.notify_all()

    def _pump_err(self) -> None:
        for line in self.proc.stderr:
            self.stderr += line

    def send_raw(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: Any) -> None:
        self.send_raw(encode(message))

    def request(self, method: str, params: Any = None, timeout: float = CEILING) -> dict[str, Any]:
        id_ = next(self._ids)
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        return self.wait_response(id_, timeout)

    def call(self, method: str, params: Any = None, timeout: float = CEILING) -> Any:
        reply = self.request(method, params, timeout)
        assert "result" in reply, f"{method} failed: {reply}"
        return reply["result"]

    def wait_response(self, id_: Any, timeout: float = CEILING) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while id_ not in self.responses:
                assert not self.garbage, f"stdout carried non-protocol bytes: {self.garbage}"
                left = deadline - time.monotonic()
                assert left > 0, f"no response to id {id_}; stderr: {self.stderr.decode(errors='replace')}"
                assert not self.eof.is_set(), f"daemon exited; stderr: {self.stderr.decode(errors='replace')}"
                self._cond.wait(left)
            return self.responses.pop(id_)

    def wait_notification(self, method: str, timeout: float = CEILING, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for n in self.notifications:
                    if n["method"] == method and all(n["params"].get(k) == v for k, v in match.items()):
                        return n["params"]
                left = deadline - time.monotonic()
                assert left > 0, f"no {method} {match}; got {[n['method'] for n in self.notifications]}"
                self._cond.wait(left)

    def events(self, track_id: str | None = None) -> list[str]:
        with self._cond:
            return [
                n["method"]
                for n in self.notifications
                if track_id is None or n["params"].get("track_id") == track_id
            ]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def refusal(d: DaemonProcess, id_: Any, timeout: float = 20.0) -> dict[str, Any]:
    """The error for request `id_` carrying a non-finite number: the JSON reader may refuse the number itself
    (PARSE_ERROR with id null) or the params schema refuses it (an error with the request's id)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with d._cond:
            if id_ in d.responses:
                reply = d.responses.pop(id_)
                assert "error" in reply, reply
                return reply["error"]
        try:
            return d.unmatched_errors.get(timeout=0.05)["error"]
        except queue.Empty:
            pass
    raise AssertionError(f"no answer to {id_}; stderr: {d.stderr.decode(errors='replace')}")
