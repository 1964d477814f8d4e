"""A hostile or broken remote generator against the local side (RemoteLink's routing and reader, RemoteBackend's
receive loop), in-process and without a remote: whatever the remote sends, the job ends with verified audio or a
clear LofiError / Cancelled / LinkLost, never another exception, never a hang, and nothing the remote sent
reaches a notification or a track's metadata unless it is a short JSON scalar."""

from __future__ import annotations

import io
import json
import math
import queue
import sys
import threading
import time
import tracemalloc
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lofi_daemon.backends.base import GeneratedAudio, GenerationRequest
from lofi_daemon.cancel import CancelToken
from lofi_daemon.errors import Cancelled, LofiError
from lofi_daemon.remote import backend as backend_module
from lofi_daemon.remote import link as link_module
from lofi_daemon.remote.backend import RemoteBackend
from lofi_daemon.remote.link import LinkLost, RemoteLink
from lofi_daemon.remote.protocol import audio_digest, encode_audio
from lofi_daemon.rpc.framing import encode_message

from tests.daemon_client import CEILING
from tests.doubles.fake_generator import command as fake_cmd

RATE = 16000
JOB = "job1"


class Local:
    """The local backend a RemoteBackend wraps: validates and describes (a 1-channel, 16 kHz backend)."""

    name, display_name, sample_rate, channels = "tone", "Tone", RATE, 1
    min_duration_sec, max_duration_sec, default_duration_sec, streams_audio = 0.5, 10.0, 1.0, True

    def validate(self, raw):
        return dict(raw)


def make_backend(cmd: list[str] | None = None, timeout: float = CEILING) -> RemoteBackend:
    link = RemoteLink(cmd or ["true"], connect_timeout_sec=timeout)  # never started unless a test does
    return RemoteBackend(Local(), link, lambda *_: None)  # type: ignore[arg-type]


def note(method: str, **params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": {"job_id": JOB, **params}}


def good_audio(frames: int = 800) -> tuple[np.ndarray, list[dict[str, Any]]]:
    samples = (np.sin(np.arange(frames) / 7.0) * 0.5).astype(np.float32)[:, None]
    chunk = note(
        "generator.audio", seq=0, kind="final", frames=frames, channels=1, data=encode_audio(samples)
    )
    done = note(
        "generator.done", frames=frames, channels=1, sample_rate=RATE, sha256=audio_digest(samples), info={}
    )
    return samples, [chunk, done]


class Run:
    """One receive loop fed `messages` (as JSON text, the way they arrive), in a thread with a ceiling."""

    def __init__(
        self, backend: RemoteBackend, messages: list[Any], cancel: CancelToken | None = None
    ) -> None:
        self.backend, self.progress, self.notes = backend, [], []
        backend.notify = lambda method, params: self.notes.append((method, params))
        events = backend.link.open_job(JOB)
        for m in messages:
            backend.link._route(json.loads(json.dumps(m)))
        self.result: Any = None
        request = GenerationRequest("tone", "rain", 1.0, 1, {})
        token = cancel or CancelToken()

        def run() -> None:
            try:
                self.result = backend._receive(
                    JOB,
                    events,
                    request,
                    lambda d, t, **f: self.progress.append((d, t, f)),
                    token,
                    lambda c: None,
                )
            except BaseException as e:  # what the test judges
                self.result = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        self.thread.join(CEILING)
        assert not self.thread.is_alive(), "the receive loop hangs"


def assert_sane(run: Run) -> None:
    r = run.result
    assert isinstance(r, (GeneratedAudio, LofiError, Cancelled, LinkLost)), repr(r)
    if isinstance(r, LofiError):
        encode_message(r.to_error())  # a clear error that reaches the client
        assert len(r.message) < 2000
    if isinstance(r, GeneratedAudio):
        assert r.samples.dtype == np.float32 and r.samples.shape[1] == 1 and len(r.samples)
        assert np.isfinite(r.samples).all() and len(r.samples) <= 3 * RATE  # 1 s asked + slack
        json.dumps(r.info, allow_nan=False)  # goes into the track's metadata and generation_complete
        assert r.info["remote"] == run.backend.link.host
    for done, total, fields in run.progress:
        assert type(done) is int and type(total) is int and 0 <= done <= total
        assert not {"track_id", "percent", "eta_sec"} & set(fields)
        encode_message(fields)
    for _, params in run.notes:
        encode_message(params)
        assert params["backend"] == "tone"


# -- each defect found, by name (each failed before its fix) ------------------------------------------------------
def test_progress_fields_cannot_rename_the_local_job_nor_break_it():
    backend = make_backend()
    samples, finish = good_audio()
    spoof = note("generator.progress", done=1, total=2, fields={"track_id": "evil", "percent": 100, "x": 1})
    run = Run(backend, [spoof, *finish])
    assert isinstance(run.result, GeneratedAudio)
    assert run.progress == [(1, 2, {"x": 1})]
    for bad in ("abc", None, math.inf, [1], 2**80):
        run = Run(make_backend(), [note("generator.progress", done=bad, total=4)])
        assert isinstance(run.result, LofiError) and "progress report" in run.result.message, run.result


def test_track_info_from_the_remote_is_plain_and_bounded():
    backend = make_backend()
    samples, (chunk, done) = good_audio()
    deep: Any = 1
    for _ in range(50):
        deep = {"a": deep}
    done["params"]["info"] = {
        "nan": math.nan,
        "deep": deep,
        "big": "x" * 100_000,
        "k": "v",
        "remote": "spoof",
    }
    run = Run(backend, [chunk, done])
    assert isinstance(run.result, GeneratedAudio)
    info = run.result.info
    assert "nan" not in info and "deep" not in info and len(info["big"]) <= 500 and info["k"] == "v"
    assert info["remote"] == backend.link.host
    encode_message(info)


def test_download_progress_carries_only_plain_fields():
    backend = make_backend()
    _, finish = good_audio()
    run = Run(backend, [note("generator.download", backend="evil", file="w.onnx", done=[1] * 1000), *finish])
    assert run.notes == [("download_progress", {"file": "w.onnx", "backend": "tone", "remote": "true"})]


def test_a_silent_remote_is_pinged_and_the_job_ends():
    backend = make_backend()
    backend.idle_ping_sec = 0.3  # the link is not open: the ping fails at once, as an unanswered one would
    run = Run(backend, [])
    assert isinstance(run.result, LinkLost), run.result


def test_an_empty_track_is_not_kept():
    samples = np.zeros((0, 1), np.float32)
    done = note("generator.done", frames=0, channels=1, sample_rate=RATE, sha256=audio_digest(samples))
    run = Run(make_backend(), [done])
    assert isinstance(run.result, LofiError) and "no audio" in run.result.message


def test_bools_are_not_numbers_in_audio_chunks():
    samples, (chunk, done) = good_audio(1)
    chunk["params"]["frames"] = True  # json: true; Python: True == 1
    run = Run(make_backend(), [chunk, done])
    assert isinstance(run.result, LofiError), run.result


def fake_proc(stdout: bytes = b"", stderr: bytes = b"") -> Any:
    class Proc:
        def __init__(self) -> None:
            self.stdout, self.stderr = io.BytesIO(stdout), io.BytesIO(stderr)

        def wait(self, timeout=None):
            return 0

    return Proc()


def frame(message: Any | bytes) -> bytes:
    body = message if isinstance(message, bytes) else json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_the_reader_survives_deep_nesting_and_a_close_mid_frame():
    link = RemoteLink(["true"])
    events = link.open_job(JOB)
    depth = sys.getrecursionlimit() * 20
    stream = frame(b"[" * depth + b"]" * depth) + frame(note("generator.progress", done=1, total=2))
    stream += b'Content-Length: 500\r\n\r\n{"jsonrpc"'  # the remote dies mid-frame
    proc = fake_proc(stream)
    link._proc = proc
    link._read(proc)  # returns: EOF ends it
    assert events.get_nowait()[0] == "generator.progress"
    assert events.get_nowait()[0] == link_module.LOST


def test_a_second_answer_to_one_request_does_not_block_the_reader():
    link = RemoteLink(["true"])
    box: queue.Queue = queue.Queue(maxsize=1)
    link._pending[1] = box
    t = threading.Thread(
        target=lambda: [link._route({"jsonrpc": "2.0", "id": 1, "result": {"n": n}}) for n in (1, 2)],
        daemon=True,
    )
    t.start()
    t.join(CEILING)
    assert not t.is_alive(), "the reader thread blocks on a duplicate answer"
    assert box.get_nowait()["result"] == {"n": 1}
    link._route({"jsonrpc": "2.0", "id": True, "result": {}})  # true is not the id 1
    assert box.empty()


def test_a_huge_stderr_line_is_read_in_bounded_memory():
    line = b"x" * (32 << 20)
    proc = fake_proc(stderr=line + b"\nlast words\n")
    link = RemoteLink(["true"])
    tracemalloc.start()
    try:
        link._read_stderr(proc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak} bytes held for one stderr line"
    assert list(link._stderr) == ["x" * link_module.STDERR_LINE, "last words"]


def test_close_while_the_command_starts_kills_it_at_once(monkeypatch):
    """close() between the command's start and the handshake: the process is ended, not handshaken with for
    up to connect_timeout_sec."""
    link = RemoteLink(["cat"], connect_timeout_sec=CEILING)  # cat never answers the handshake
    started: list[Any] = []
    real = link_module.subprocess.Popen

    def popen(*args, **kwargs):
        proc = real(*args, **kwargs)
        started.append(proc)
        link.close()  # the race: close() lands while _connect is starting the command
        return proc

    monkeypatch.setattr(link_module.subprocess, "Popen", popen)
    link.state = "connecting"
    t = threading.Thread(target=link._connect, daemon=True)
    t.start()
    t.join(CEILING / 4)
    alive = t.is_alive()
    if alive:
        started[0].kill()
        t.join()
    assert not alive, "the handshake went on after close()"
    assert started[0].wait(CEILING) is not None and link.state == "closed"


def generate_in_thread(backend: RemoteBackend, cancel: CancelToken) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(
                backend.generate(GenerationRequest("tone", "rain", 1.0, 1, {}), lambda *a, **k: None, cancel)
            )
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_cancel_while_connecting_is_honoured_at_once():
    backend = make_backend(["cat"], timeout=3600)  # a remote that never finishes its handshake
    cancel = CancelToken()
    t, out = generate_in_thread(backend, cancel)
    try:
        deadline = time.monotonic() + CEILING
        while backend.link.state != "connecting" and time.monotonic() < deadline:
            time.sleep(0.01)
        cancel.cancel()
        t.join(CEILING)
        assert not t.is_alive(), "cancel waited for the connect timeout"
        assert isinstance(out[0], Cancelled), out
    finally:
        backend.link.close()


def test_a_remote_that_confirms_cancel_but_never_stops_does_not_hold_the_job():
    backend = make_backend(fake_cmd("mute"), timeout=2.0)
    backend.idle_ping_sec = 3600  # only the cancel can end this job
    cancel = CancelToken()
    t, out = generate_in_thread(backend, cancel)
    try:
        backend.link.wait_ready(CEILING)
        time.sleep(0.3)
        cancel.cancel()
        t.join(CEILING)
        assert not t.is_alive(), "the job waits for a cancel confirmation that never comes"
        assert isinstance(out[0], Cancelled), out
    finally:
        backend.link.close()


def test_a_stuck_remote_fails_the_job_and_is_dropped():
    backend = make_backend(fake_cmd("hang"), timeout=2.0)
    backend.retry = False
    backend.idle_ping_sec = 0.5
    t, out = generate_in_thread(backend, CancelToken())
    try:
        t.join(CEILING)
        assert not t.is_alive(), "a stuck remote holds the job"
        assert isinstance(out[0], LofiError) and "did not answer ping" in out[0].message, out
        deadline = time.monotonic() + CEILING
        while backend.link.state == "ready" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend.link.state == "lost"  # the next job connects afresh
    finally:
        backend.link.close()


# -- the fuzz -----------------------------------------------------------------------------------------------------
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 16000, 2**31, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["\ud800", "stream", "final", "not base64!", "AAAA", "AAAAAA==", "x" * 2000]),
    st.lists(st.integers(), max_size=3),
    st.recursive(st.integers(), lambda c: st.dictionaries(st.text(max_size=5), c, max_size=2), max_leaves=8),
)
METHODS = st.sampled_from(
    [
        "generator.progress",
        "generator.download",
        "generator.audio",
        "generator.done",
        "generator.error",
        "generator.cancelled",
        "generator.unknown",
        "log",
    ]
)
KEYS = st.sampled_from(
    [
        "done", "total", "fields", "seq", "kind", "frames", "channels", "data", "sample_rate", "sha256",
        "streamed", "info", "code", "message", "file", "track_id",
    ]
)  # fmt: skip


@st.composite
def messages(draw) -> list[Any]:
    samples, (chunk, done) = good_audio(draw(st.integers(1, 40)))
    out: list[Any] = []
    for _ in range(draw(st.integers(0, 8))):
        shape = draw(st.integers(0, 5))
        if shape == 0:  # a real message with one field made hostile
            base = draw(
                st.sampled_from([chunk, done, note("generator.progress", done=1, total=2, fields={})])
            )
            m = json.loads(json.dumps(base))
            m["params"][draw(KEYS)] = draw(HOSTILE)
        elif shape == 1:  # any method, hostile params
            m = {
                "jsonrpc": "2.0",
                "method": draw(METHODS),
                "params": {"job_id": JOB, draw(KEYS): draw(HOSTILE)},
            }
        elif shape == 2:  # another job's, or an unknown one's
            m = note(draw(METHODS), done=1, total=2)
            m["params"]["job_id"] = draw(st.one_of(st.text(max_size=8), HOSTILE))
        elif shape == 3:  # a response nobody asked for
            m = {"jsonrpc": "2.0", "id": draw(HOSTILE), "result": draw(HOSTILE)}
        elif shape == 4:  # not even an object
            m = draw(HOSTILE)
        else:  # the honest messages, possibly duplicated or out of order
            m = draw(
                st.sampled_from([chunk, done, note("generator.progress", done=3, total=4, fields={"s": 1})])
            )
        out.append(m)
    if draw(st.booleans()):
        out += [chunk, done]  # a well-behaved ending after the garbage
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(msgs=messages())
@example(msgs=[note("generator.audio", seq=0, kind=[], frames=1, channels=1, data="AAAAAA==")])  # found by it
def test_whatever_a_remote_sends_the_job_ends_cleanly(msgs, monkeypatch):
    monkeypatch.setattr(backend_module, "EVENT_POLL_SEC", 0.005)
    backend = make_backend()
    backend.idle_ping_sec = 0.0  # no more messages: the ping fails on the closed link at once
    run = Run(backend, msgs)
    assert_sane(run)


def test_an_odd_handshake_is_read_safely():
    backend = make_backend(fake_cmd("odd-hello"), timeout=CEILING)
    try:
        with pytest.raises(LofiError, match="has no tone backend"):
            backend.model_version()
        status = backend.link.status()
        encode_message(status)
        assert status["backends"] == [] and "\x1b" not in status["version"] and len(status["version"]) <= 40
    finally:
        backend.link.close()


def test_remote_text_carries_no_terminal_escapes():
    run = Run(make_backend(), [note("generator.error", code=-32000, message="\x1b[2Jgone\r\nfake: ok")])
    assert isinstance(run.result, LofiError) and "gone" in run.result.message
    assert not any(ord(c) < 0x20 for c in run.result.message), run.result.message


def test_a_cached_track_as_init_is_refused_before_it_reaches_the_remote():
    """riffusion's `init` canonicalises a local track id to `track:<id>`: the remote has no such track."""
    with pytest.raises(LofiError, match="track in this machine's cache"):
        make_backend().validate({"init": "track:0123456789abcdef", "init_sha256": "ab" * 32})


def test_empty_audio_chunks_are_refused():
    """An honest remote never sends one; a flood of them would grow the job's chunk list without end."""
    samples, (chunk, done) = good_audio()
    empty = note("generator.audio", seq=0, kind="stream", frames=0, channels=1, data="")
    run = Run(make_backend(), [empty, chunk, done])
    assert isinstance(run.result, LofiError) and "impossible shape" in run.result.message, run.result
