"""LSP base-protocol framing: `Content-Length: N\\r\\n\\r\\n` followed by N bytes of UTF-8 JSON.

This is what Neovim's `vim.lsp.rpc.start()` speaks, so the plugin needs no framing code of its own.
The reader is strict about what it accepts and forgiving about how it recovers: a bad header block is
reported and skipped, an oversized body is drained without being held in memory.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024


class FramingError(Exception):
    """The header block was unusable; the reader has already moved past it."""


class MessageTooLarge(Exception):
    def __init__(self, length: int) -> None:
        super().__init__(f"message of {length} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit")
        self.length = length


@dataclass
class Frame:
    body: bytes


class MessageReader:
    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def _read_headers(self) -> dict[str, str] | None:
        """Read header lines up to the blank line. None at a clean EOF before any header byte."""
        headers: dict[str, str] = {}
        seen = 0
        bad: str | None = None
        while True:
            line = self._stream.readline(MAX_HEADER_BYTES + 1)
            if not line:
                if seen == 0:
                    return None
                raise EOFError("stream ended inside a header block")
            seen += len(line)
            if line in (b"\r\n", b"\n"):
                if seen == len(line):
                    continue  # stray blank line between messages: tolerate it
                break
            if seen > MAX_HEADER_BYTES:
                bad = bad or "header block too long"
                continue
            text = line.decode("ascii", errors="replace").strip()
            name, sep, value = text.partition(":")
            if not sep or not name.strip():
                bad = bad or f"malformed header line {text[:80]!r}"
                continue
            headers[name.strip().lower()] = value.strip()
        if bad:
            raise FramingError(bad)
        return headers

    def read(self) -> Frame | None:
        """Next frame, or None at EOF. Raises FramingError / MessageTooLarge after skipping the bad frame."""
        headers = self._read_headers()
        if headers is None:
            return None
        raw_length = headers.get("content-length")
        if raw_length is None:
            raise FramingError("missing Content-Length header")
        try:
            length = int(raw_length)
        except ValueError:
            raise FramingError(f"invalid Content-Length {raw_length!r}") from None
        if length < 0:
            raise FramingError(f"invalid Content-Length {raw_length!r}")
        if length > MAX_MESSAGE_BYTES:
            self._skip(length)
            raise MessageTooLarge(length)
        body = self._read_exact(length)
        return Frame(body)

    def _read_exact(self, n: int) -> bytes:
        chunks = []
        remaining = n
        while remaining:
            chunk = self._stream.read(remaining)
            if not chunk:
                raise EOFError("stream ended inside a message body")
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    def _skip(self, n: int) -> None:
        remaining = n
        while remaining:
            chunk = self._stream.read(min(remaining, 1 << 16))
            if not chunk:
                raise EOFError("stream ended inside a message body")
            remaining -= len(chunk)


class MessageWriter:
    """Thread-safe: responses (dispatch thread) and notifications (worker, player) share one stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, message: Any) -> None:
        body = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
        header = f"Content-Length: {len(body)}\r\n\r\n".encode("ascii")
        with self._lock:
            self._stream.write(header + body)
            self._stream.flush()
