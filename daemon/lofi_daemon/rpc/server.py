"""The stdio transport: a reader thread that only reads and frames, a dispatch thread that runs handlers in
arrival order (so queue positions follow the order requests were sent), and one locked writer shared with
notifications from the worker and the player."""

from __future__ import annotations

import io
import logging
import os
import queue
import sys
import threading
from typing import Any, BinaryIO

from ..errors import ErrorCode
from .dispatch import Dispatcher, error_response
from .framing import FramingError, MessageReader, MessageTooLarge, MessageWriter, encode_message

log = logging.getLogger(__name__)

INBOX_FRAMES = 8  # frames read but not yet handled (each at most MAX_MESSAGE_BYTES)


def claim_stdio() -> tuple[BinaryIO, BinaryIO]:
    """Take the real fd 0/1 for the protocol and point fd 0 at /dev/null and fd 1 at stderr, so no print(),
    native library or child process can read our requests or corrupt the response stream."""
    sys.stdout.flush()
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_in, "rb", buffering=0), os.fdopen(proto_out, "wb", buffering=0)


class _Buffered:
    """readline()/read() over an unbuffered fd without blocking for more than what is available."""

    def __init__(self, raw: BinaryIO) -> None:
        self._f = io.BufferedReader(raw, buffer_size=1 << 16)  # type: ignore[type-var]  # raw: an unbuffered fd file

    def readline(self, limit: int = -1) -> bytes:
        return self._f.readline(limit)

    def read(self, n: int) -> bytes:
        return self._f.read1(n) if n > 0 else b""


class Server:
    def __init__(self, dispatcher: Dispatcher, stdin: BinaryIO, stdout: BinaryIO) -> None:
        self.dispatcher = dispatcher
        self._reader = MessageReader(_Buffered(stdin))
        self.writer = MessageWriter(stdout)
        # Bounded, so a client that sends faster than we answer is slowed down by the pipe, not by our RAM.
        self._inbox: queue.Queue[Any] = queue.Queue(maxsize=INBOX_FRAMES)
        self.closed = threading.Event()  # set at stdin EOF or on a broken stdout
        self.on_message: list[Any] = []  # callables run for every incoming message (activity tracking)
        dispatcher.reply_sink = self.send  # replies a handler deferred (Dispatcher.defer) are written here

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def send(self, message: Any) -> None:
        """Write one message (or a batch reply). Never raises: what cannot be encoded is replaced by an
        INTERNAL_ERROR reply for that id alone, so one bad member never costs the rest of a batch."""
        try:
            if isinstance(message, list):
                body = b"[" + b",".join(self._encode(m) for m in message) + b"]"
            elif "id" not in message:  # a notification: nothing to answer if it cannot be encoded
                body = encode_message(message)
            else:
                body = self._encode(message)
            self.writer.write_body(body)
        except (BrokenPipeError, OSError):
            log.warning("client stream closed; shutting down")
            self.closed.set()
        except Exception:
            log.exception("message could not be sent")

    @staticmethod
    def _encode(message: Any) -> bytes:
        """A response as bytes; one that cannot be encoded becomes an INTERNAL_ERROR for the same id."""
        try:
            return encode_message(message)
        except Exception:  # NaN/inf, a huge int or a non-JSON value in a result: a bug, report it as one
            log.exception("unserialisable message dropped")
            id_ = message.get("id") if isinstance(message, dict) else None
            if not isinstance(id_, (str, int)) or isinstance(id_, bool):
                id_ = None
            reply = error_response(id_, ErrorCode.INTERNAL_ERROR, "result could not be encoded")
            try:
                return encode_message(reply)
            except Exception:  # the id itself cannot be encoded (e.g. an int over 4300 digits)
                return encode_message({**reply, "id": None})

    def start(self) -> None:
        threading.Thread(target=self._read_loop, name="rpc-reader", daemon=True).start()
        threading.Thread(target=self._dispatch_loop, name="rpc-dispatch", daemon=True).start()

    def _read_loop(self) -> None:
        while True:
            try:
                frame = self._reader.read()
            except FramingError as exc:
                self.send(error_response(None, ErrorCode.PARSE_ERROR, f"bad frame: {exc}"))
                continue
            except MessageTooLarge as exc:
                self.send(error_response(None, ErrorCode.INVALID_REQUEST, str(exc)))
                continue
            except (EOFError, OSError, ValueError) as exc:  # ValueError: read from a closed file
                log.info("stdin closed (%s)", exc)
                frame = None
            except Exception:  # a bug in the reader: drop what it was reading, keep the stream
                log.exception("reading a message failed")
                self.send(error_response(None, ErrorCode.INTERNAL_ERROR, "internal error reading a message"))
                self._reader.resync()
                continue
            if frame is None:
                log.info("stdin EOF")
                self.closed.set()
                self._inbox.put(None)
                return
            self._inbox.put(frame.body)

    def _dispatch_loop(self) -> None:
        while True:
            body = self._inbox.get()
            if body is None:
                return
            try:
                self._handle(body)
            except Exception:  # nothing may end this loop but EOF: the daemon would stop answering
                log.exception("handling a message failed")
                self.send(error_response(None, ErrorCode.INTERNAL_ERROR, "internal error handling a message"))

    def _handle(self, body: bytes) -> None:
        for hook in self.on_message:
            hook()
        response = self.dispatcher.dispatch_bytes(body)
        if response is not None:
            self.send(response)
        for fn in self.dispatcher.take_after_response():
            try:
                fn()
            except Exception:
                log.exception("after-response action failed")
