"""Cooperative cancellation: the worker sets the token, the backend checks it between steps."""

from __future__ import annotations

import threading

from .errors import Cancelled


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise `Cancelled` if cancellation was requested. Backends call this once per step."""
        if self._event.is_set():
            raise Cancelled()
