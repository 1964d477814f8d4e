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
from .framing import FramingError, MessageReader, MessageTooLarge, MessageWriter

log = logging.getLogger(__name__)


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
        self._f = io.BufferedReader(raw, buffer_size=1 << 16)  # type: ignore[arg-type]

    def readline(self, limit: int = -1) -> bytes:
        return self._f.readline(limit)

    def read(self, n: int) -> bytes:
        return self._f.read1(n) if n > 0 else b""


class Server:
    def __init__(self, dispatcher: Dispatcher, stdin: BinaryIO, stdout: BinaryIO) -> None:
        self.dispatcher = dispatcher
        self._reader = MessageReader(_Buffered(stdin))
        self.writer = MessageWriter(stdout)
        self._inbox: queue.Queue[Any] = queue.Queue()
        self.closed = threading.Event()  # set at stdin EOF or on a broken stdout
        self.on_message: list[Any] = []  # callables run for every incoming message (activity tracking)

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def send(self, message: Any) -> None:
        try:
            self.writer.write(message)
        except ValueError:  # NaN/inf or an unserialisable value in a result: a bug, report it as one
            log.exception("unserialisable message dropped")
            if isinstance(message, dict) and "id" in message:
                self.writer.write(
                    error_response(message["id"], ErrorCode.INTERNAL_ERROR, "result could not be encoded")
                )
        except (BrokenPipeError, OSError):
            log.warning("client stream closed; shutting down")
            self.closed.set()

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
            except (EOFError, OSError, ValueError) as exc:
                log.info("stdin closed (%s)", exc)
                frame = None
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
