"""Stable JSON-RPC error codes (listed in docs/protocol.md). Add codes at the end; never renumber."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ErrorCode(IntEnum):
    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    MODEL_NOT_FOUND = -32000
    MODEL_LOAD_FAILED = -32001
    MODEL_DOWNLOAD_FAILED = -32002
    MODEL_INFERENCE_FAILED = -32003
    QUEUE_FULL = -32004
    INVALID_DURATION = -32005
    INVALID_PROMPT = -32006
    INVALID_BACKEND = -32007
    BACKEND_NOT_INSTALLED = -32008
    INVALID_INFERENCE_STEPS = -32009
    INVALID_GUIDANCE_SCALE = -32010
    INVALID_SCHEDULER = -32011
    TRACK_NOT_FOUND = -32012
    AUDIO_DEVICE_ERROR = -32013
    CACHE_ERROR = -32014
    DISK_FULL = -32015
    CANCELLED = -32016


class LofiError(Exception):
    """An error that reaches the client as a JSON-RPC error object.

    `data` always carries `error_code` (the enum name); extra fields (e.g. `details`, `hint`) are merged in.
    """

    def __init__(self, code: ErrorCode, message: str, **data: Any) -> None:
        super().__init__(message)
        self.code = ErrorCode(code)
        self.message = message
        self.data = data

    def to_error(self) -> dict[str, Any]:
        return {
            "code": int(self.code),
            "message": self.message,
            "data": {"error_code": self.code.name, **self.data},
        }


class Cancelled(Exception):
    """Raised inside a backend when its cancel token fires; the worker turns it into `generation_cancelled`."""
