"""The framing reader, the strict JSON decoder and the reply encoder in-process: every malformed input becomes
one error and the very next well-formed message is read intact."""

from __future__ import annotations

import io
import json

import pytest
from lofi_daemon.errors import ErrorCode, LofiError
from lofi_daemon.rpc.dispatch import MAX_BATCH, MAX_JSON_DEPTH, Dispatcher, decode_json
from lofi_daemon.rpc.framing import MAX_MESSAGE_BYTES, FramingError, MessageReader, MessageTooLarge
from lofi_daemon.rpc.server import Server

from tests.daemon_client import FrameParser, encode

PING = {"jsonrpc": "2.0", "id": 42, "method": "ping"}


class Trickle(io.RawIOBase):
    """A pipe that hands out at most `step` bytes per read, like a slow writer on the other end."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._pos, self._step = data, 0, step

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), self._step, len(self._data) - self._pos)
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


def reader_over(data: bytes, step: int = 1 << 16) -> MessageReader:
    buffered = io.BufferedReader(Trickle(data, step))

    class Source:
        def readline(self, limit: int) -> bytes:
            return buffered.readline(limit)

        def read(self, n: int) -> bytes:
            return buffered.read1(n)

    return MessageReader(Source())  # type: ignore[arg-type]


def frames_after_errors(reader: MessageReader) -> tuple[list[bytes], list[str]]:
    bodies, errors = [], []
    while True:
        try:
            frame = reader.read()
        except (FramingError, MessageTooLarge) as exc:
            errors.append(str(exc))
            continue
        except EOFError:
            return bodies, errors
        if frame is None:
            return bodies, errors
        bodies.append(frame.body)


GOOD = encode(PING)
BODY = json.dumps(PING).encode()


@pytest.mark.parametrize(
    ("bad", "min_errors"),
    [
        (b"Content-Length: 1000000000000000000000000000000\r\n\r\n{}", 1),  # was drained forever
        (b"Content-Length: %d\r\n\r\n" % (MAX_MESSAGE_BYTES + 1) + b" " * 100, 1),
        (b"Content-Length: 10\r\n\r\n" + BODY, 1),  # too short: the tail is glued to the next header
        (b"Content-Length: 500\r\n\r\n" + BODY, 1),  # too long: would swallow the next message
        (b"Content-Lenght: %d\r\n\r\n" % len(BODY) + BODY, 1),  # misspelled header
        (b"Content-Length: abc\r\n\r\n" + BODY, 1),
        (b"Content-Length: -5\r\n\r\n" + BODY, 1),
        (b"no colon here\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY, 1),
        (b"garbage without a line end" + b"x" * 70_000, 1),
        (b"Content-Length: 3\r\n" + b"X-Pad: " + b"y" * 9000 + b"\r\n\r\n{}", 1),  # header block too long
    ],
)
@pytest.mark.parametrize("step", [1 << 16, 7])
def test_reader_resynchronises_after_every_framing_error(bad, min_errors, step):
    bodies, errors = frames_after_errors(reader_over(bad + GOOD + GOOD, step))
    assert len(errors) >= min_errors
    # Whatever the bad frame's own bytes became, both following messages arrive intact.
    assert bodies[-2:] == [BODY, BODY], (bodies, errors)
    assert all(json.loads(b) == PING for b in bodies[-2:])


def test_reader_keeps_other_headers_whose_name_ends_in_content_length():
    data = b"X-Content-Length: 5\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY + GOOD
    assert frames_after_errors(reader_over(data)) == ([BODY, BODY], [])


def test_reader_keeps_valid_frames_that_mention_content_length():
    tricky = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "x", "params": {"p": "Content-Length: 5\r\n"}})
    body = tricky.encode()
    bodies, errors = frames_after_errors(reader_over(encode(json.loads(body)) + GOOD, 5))
    assert errors == [] and bodies == [body, BODY]


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}',  # int over 4300 digits
        b"[" * 1000 + b"]" * 1000,  # RecursionError in json
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b'{"jsonrpc":"2.0","id":1,"method":"volume","params":{"level":NaN}}',
        b'{"jsonrpc":"2.0","id":1,"method":"volume","params":{"level":-Infinity}}',
        b'{"jsonrpc":"2.0","id":1,"method":"volume","params":{"level":1e999}}',
        b"[" + b",".join([b"0"] * 2_000_000) + b"]",  # 4 MB batch that produced 272 MB of replies
        b"\xff\xfe",
    ],
)
def test_decode_refuses_what_would_crash_or_cost_too_much(body):
    with pytest.raises(LofiError) as exc:
        decode_json(body)
    assert exc.value.code in (ErrorCode.PARSE_ERROR, ErrorCode.INVALID_REQUEST)


def test_decode_keeps_brackets_inside_strings_out_of_the_depth_count():
    deep_text = "[" * (MAX_JSON_DEPTH * 10)
    assert decode_json(json.dumps({"p": deep_text, "q": 'a\\"[{'}).encode()) == {
        "p": deep_text,
        "q": 'a\\"[{',
    }


def dispatcher() -> Dispatcher:
    d = Dispatcher()
    d.method("ping")(lambda _: {"pong": True})
    d.method("nan")(lambda _: {"value": float("nan")})
    d.method("surrogate")(lambda _: {"text": "a\ud800b"})
    d.method("boom")(lambda _: 1 / 0)
    return d


def replies(out: io.BytesIO) -> list:
    return FrameParser().feed(out.getvalue())


def test_lone_surrogate_id_is_refused_with_a_null_id():
    reply = dispatcher().dispatch_bytes(b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}')
    assert reply["id"] is None and reply["error"]["code"] == ErrorCode.INVALID_REQUEST


def test_batch_with_an_unencodable_member_still_answers_every_other_member():
    d = dispatcher()
    out = io.BytesIO()
    server = Server(d, io.BytesIO(), out)
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "id": 2, "method": "nan"},
        {"jsonrpc": "2.0", "id": "\ud800", "method": "ping"},
        {"jsonrpc": "2.0", "id": 4, "method": "surrogate"},
        {"jsonrpc": "2.0", "id": 5, "method": "boom"},
        {"jsonrpc": "2.0", "id": 6, "method": "ping"},
    ]
    server.send(d.dispatch_bytes(json.dumps(batch).encode()))
    (reply,) = replies(out)
    by_id = {r["id"]: r for r in reply}
    assert by_id[1]["result"] == {"pong": True} and by_id[6]["result"] == {"pong": True}
    assert by_id[2]["error"]["code"] == ErrorCode.INTERNAL_ERROR  # NaN result: reported, not lost
    assert by_id[None]["error"]["code"] == ErrorCode.INVALID_REQUEST
    assert by_id[4]["result"] == {"text": "a\ufffdb"}  # lone surrogate replaced, message still valid UTF-8
    assert by_id[5]["error"]["code"] == ErrorCode.INTERNAL_ERROR


def test_oversized_batch_is_one_error():
    batch = [{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(MAX_BATCH + 1)]
    reply = dispatcher().dispatch_bytes(json.dumps(batch).encode())
    assert isinstance(reply, dict) and reply["error"]["code"] == ErrorCode.INVALID_REQUEST
    ok = dispatcher().dispatch_bytes(json.dumps(batch[:MAX_BATCH]).encode())
    assert len(ok) == MAX_BATCH


def test_send_never_raises_for_unencodable_notifications():
    out = io.BytesIO()
    server = Server(dispatcher(), io.BytesIO(), out)
    server.notify("log", {"message": {1, 2}})  # a set is not JSON: TypeError used to escape
    server.notify("log", {"message": "x" * 3 + "\udcff"})
    server.send({"jsonrpc": "2.0", "id": 10**5000, "result": 1})  # an id that cannot even be printed
    msgs = replies(out)
    assert len(msgs) == 2  # the unencodable notification is dropped (and logged), not answered
    assert msgs[-2] == {"jsonrpc": "2.0", "method": "log", "params": {"message": "xxx\ufffd"}}
    assert msgs[-1]["id"] is None and msgs[-1]["error"]["code"] == ErrorCode.INTERNAL_ERROR


def test_dispatch_loop_survives_a_failing_hook_and_dispatcher():
    d = dispatcher()
    calls = {"n": 0}
    real = d.dispatch_bytes

    def flaky(body: bytes):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RecursionError("a bug below dispatch")
        return real(body)

    d.dispatch_bytes = flaky  # type: ignore[method-assign]
    out = io.BytesIO()
    stdin = io.BytesIO(encode({**PING, "id": 1}) + encode({**PING, "id": 2}) + encode({**PING, "id": 3}))
    server = Server(d, stdin, out)
    seen = {"n": 0}

    def hook() -> None:  # an activity hook with a bug that fires on the second message only
        seen["n"] += 1
        if seen["n"] == 2:
            raise ZeroDivisionError("hook bug")

    server.on_message.append(hook)
    server._read_loop()  # to EOF, in this thread
    server._dispatch_loop()  # returns only at the EOF marker
    msgs = replies(out)
    assert [m["error"]["code"] for m in msgs[:2]] == [ErrorCode.INTERNAL_ERROR] * 2
    assert msgs[2] == {"jsonrpc": "2.0", "id": 3, "result": {"pong": True}}


def test_a_deferred_reply_comes_later_and_only_where_it_may():
    """A handler may answer later (Dispatcher.defer) only for a lone request with an id; in a batch, for a
    notification or without a transport it gets None and answers in place."""
    d = Dispatcher()
    later = []

    @d.method("slow")
    def slow(_):
        reply = d.defer()
        if reply is None:
            return {"now": True}
        later.append(reply)
        return reply

    out = io.BytesIO()
    server = Server(d, io.BytesIO(), out)
    assert d.dispatch_bytes(b'{"jsonrpc":"2.0","id":1,"method":"slow"}') is None  # nothing to send yet
    batch = d.dispatch_bytes(b'[{"jsonrpc":"2.0","id":2,"method":"slow"}]')
    assert batch == [{"jsonrpc": "2.0", "id": 2, "result": {"now": True}}]
    assert d.dispatch_bytes(b'{"jsonrpc":"2.0","method":"slow"}') is None and len(later) == 1
    null_id = d.dispatch_bytes(b'{"jsonrpc":"2.0","id":null,"method":"slow"}')
    assert null_id == {"jsonrpc": "2.0", "id": None, "result": {"now": True}}
    assert d.defer() is None  # outside a request
    later[0].error(LofiError(ErrorCode.QUEUE_FULL, "full"))
    (msg,) = replies(out)
    assert msg["id"] == 1 and msg["error"]["code"] == ErrorCode.QUEUE_FULL
    server.dispatcher.reply_sink = None
    assert d.dispatch_bytes(b'{"jsonrpc":"2.0","id":3,"method":"slow"}')["result"] == {"now": True}
