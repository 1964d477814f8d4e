"""LSP base-protocol framing: `Content-Length: N\\r\\n\\r\\n` followed by N bytes of UTF-8 JSON.

This is what Neovim's `vim.lsp.rpc.start()` speaks, so the plugin needs no framing code of its own.
The reader is strict about what it accepts and forgiving about how it recovers. After any framing error it
resynchronises on the next `Content-Length: N` header line, so one wrong length or misspelled header costs
that one message, never the stream. The rule that makes this safe: a `Content-Length: <digits>` followed by a
raw line break can never occur inside a valid JSON body (JSON strings cannot hold a raw line break, and the
name is not a JSON token outside a string), so finding one inside a body proves that body was cut wrongly.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024
_CHUNK = 1 << 16
# A complete Content-Length header line, wherever it starts (garbage may be glued in front of it).
_HEADER_LINE = re.compile(rb"content-length[ \t]*:[ \t]*\d+[ \t]*\r?\n", re.IGNORECASE)
# A well-formed header line (RFC 9110 token name): `X-Content-Length: 5` is a header, `}Content-Length: 5` is not.
_TOKEN_HEADER = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+[ \t]*:")
_CARRY = 64  # bytes kept between chunks so a header line split across two reads is still found


class FramingError(Exception):
    """The header block or body was unusable; the reader has already moved past it."""


class MessageTooLarge(Exception):
    def __init__(self, length: str) -> None:
        super().__init__(f"message of {length[:40]} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit")


class ByteSource(Protocol):
    """What the reader needs of its input: a binary file, or rpc/server.py's non-blocking buffer over one."""

    def readline(self, limit: int = -1, /) -> bytes: ...

    def read(self, n: int, /) -> bytes: ...


@dataclass
class Frame:
    body: bytes


class MessageReader:
    def __init__(self, stream: ByteSource) -> None:
        self._stream = stream
        self._pending = b""  # bytes read too far and given back (the start of the next message)
        self._resync = False  # after an error: skip to the next Content-Length header line

    # -- byte source with push-back --------------------------------------------------------------
    def _readline(self, limit: int) -> bytes:
        if self._pending:
            end = self._pending.find(b"\n", 0, limit)
            cut = limit if end < 0 else end + 1
            line, self._pending = self._pending[:cut], self._pending[cut:]
            if end >= 0 or len(line) >= limit:
                return line
            return line + self._stream.readline(limit - len(line))
        return self._stream.readline(limit)

    def _read(self, n: int) -> bytes:
        if self._pending:
            data, self._pending = self._pending[:n], self._pending[n:]
            return data
        return self._stream.read(n)

    def _unread(self, data: bytes) -> None:
        self._pending = data + self._pending

    def resync(self) -> None:
        """Drop the message being read: the next read() starts at the next Content-Length header."""
        self._resync = True

    # -- frames ------------------------------------------------------------------------------------
    def read(self) -> Frame | None:
        """Next frame, or None at EOF. Raises FramingError / MessageTooLarge after skipping the bad frame."""
        if self._resync:
            if not self._skip_to_header():
                return None
        try:
            return self._read_frame()
        except (FramingError, MessageTooLarge):
            self._resync = True
            raise

    def _read_frame(self) -> Frame | None:
        headers = self._read_headers()
        if headers is None:
            return None
        raw_length = headers.get("content-length")
        if raw_length is None:
            raise FramingError("missing Content-Length header")
        if not (raw_length.isascii() and raw_length.isdigit()):
            raise FramingError(f"invalid Content-Length {raw_length[:40]!r}")
        if len(raw_length) > 12 or int(raw_length) > MAX_MESSAGE_BYTES:  # (no giant int conversions)
            raise MessageTooLarge(raw_length)  # not drained by its length: the resync skips what follows
        return Frame(self._read_body(int(raw_length)))

    def _read_headers(self) -> dict[str, str] | None:
        """Read header lines up to the blank line. None at a clean EOF before any header byte."""
        headers: dict[str, str] = {}
        seen = 0
        bad: str | None = None
        while True:
            line = self._readline(MAX_HEADER_BYTES + 1)
            if not line:
                if seen == 0:
                    return None
                raise EOFError("stream ended inside a header block")
            if line in (b"\r\n", b"\n"):
                if seen == 0:
                    continue  # stray blank line between messages: tolerate it
                break
            seen += len(line)
            if seen > MAX_HEADER_BYTES:
                raise FramingError("header block too long")
            header = _HEADER_LINE.search(line)
            if header and header.start() > 0 and not _TOKEN_HEADER.match(line):
                # The tail of a body whose Content-Length was too short, glued to the next header.
                self._unread(line[header.start() :])
                raise FramingError(f"{header.start()} bytes of garbage before a header")
            text = line.decode("ascii", errors="replace").strip()
            name, sep, value = text.partition(":")
            if not sep or not name.strip():
                bad = bad or f"malformed header line {text[:80]!r}"  # reported once the block has ended
                continue
            headers[name.strip().lower()] = value.strip()
        if bad:
            raise FramingError(bad)
        return headers

    def _read_body(self, n: int) -> bytes:
        """Read n bytes, stopping early if the next message's header shows up inside them (the length lied)."""
        chunks: list[bytes] = []
        got = 0
        tail = b""
        while got < n:
            chunk = self._read(min(n - got, _CHUNK))
            if not chunk:
                raise EOFError("stream ended inside a message body")
            header = _HEADER_LINE.search(tail + chunk)
            if header:
                cut = header.start() - len(tail)  # may be negative: the header began in the previous chunk
                body = b"".join(chunks) + chunk
                start = got + cut
                self._unread(body[start:])
                raise FramingError(f"Content-Length {n} is longer than the message ({start} bytes)")
            chunks.append(chunk)
            got += len(chunk)
            tail = (tail + chunk)[-_CARRY:]
        return b"".join(chunks)

    def _skip_to_header(self) -> bool:
        """Discard bytes up to the next Content-Length header line. False at EOF."""
        carry = b""
        skipped = 0
        while True:
            chunk = self._readline(_CHUNK)
            if not chunk:
                return False
            data = carry + chunk
            header = _HEADER_LINE.search(data)
            if header:
                self._unread(data[header.start() :])
                skipped += header.start() - len(carry)
                if skipped:
                    log.warning("skipped %d bytes to find the next message", skipped)
                self._resync = False
                return True
            skipped += len(chunk)
            carry = data[-_CARRY:]


def encode_message(message: Any) -> bytes:
    """One JSON-RPC message as UTF-8 bytes. Raises ValueError/TypeError for what JSON cannot carry (NaN, a
    huge int, a non-JSON type). Lone surrogates (e.g. from a file name that is not UTF-8) become U+FFFD: an
    escaped lone surrogate is valid JSON text but Neovim's decoder rejects the whole message over it."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


class MessageWriter:
    """Thread-safe: responses (dispatch thread) and notifications (worker, player) share one stream."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, message: Any) -> None:
        self.write_body(encode_message(message))

    def write_body(self, body: bytes) -> None:
        header = f"Content-Length: {len(body)}\r\n\r\n".encode("ascii")
        with self._lock:
            self._stream.write(header + body)
            self._stream.flush()
