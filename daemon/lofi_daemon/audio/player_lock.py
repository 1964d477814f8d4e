"""One player per machine: two Neovims each start a daemon, but only one of them may make sound.

The daemon that is sounding holds an exclusive `flock` on `<cache dir>/player.lock` (the kernel drops it when the
process dies, however it dies). Rule: **the last one to play wins**. A user's `play`/`resume`/`skip` in another
daemon asks the holder to give way by writing its pid to `<cache dir>/player.request`; the holder's control
thread sees it within one poll, stops (as if its user had stopped), closes its device and releases the lock.
Auto-play never takes the sound from another daemon: its track waits in the playlist. Without `fcntl` (Windows)
every daemon plays on its own, as before.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ErrorCode, LofiError
from ..logging_setup import log_once
from ..process import pid_alive

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = "player.lock"
REQUEST_NAME = "player.request"
HANDOVER_TIMEOUT_SEC = 10.0  # a ceiling: the holder answers within one control step (50 ms) when not starved
RETRY_SEC = 0.02


class PlayerLock:
    def __init__(self, directory: Callable[[], Path], timeout_sec: float = HANDOVER_TIMEOUT_SEC) -> None:
        self.directory = directory  # resolved at each acquire: `initialize` may move the cache dir
        self.timeout_sec = timeout_sec
        self.token = f"{os.getpid()} {secrets.token_hex(6)}"  # who asks (unique even within one process)
        self._fd: int | None = None
        self._dir: Path | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _open(self, directory: Path) -> int:
        directory.mkdir(parents=True, exist_ok=True)
        return os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it. True if this player holds it now."""
        if self._fd is not None or fcntl is None:
            return True
        directory = self.directory()
        try:
            fd = self._open(directory)
        except OSError as e:
            log_once(
                log,
                logging.WARNING,
                "cannot open the player lock in %s: %s; playing without it",
                directory,
                e,
            )
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        try:  # the pid is for `holder()` only: the flock is what counts, and play must work on a full disk
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as e:
            log_once(log, logging.WARNING, "cannot write the pid into the player lock: %s", e)
        self._fd, self._dir = fd, directory
        log.info("player lock taken (%s)", directory / LOCK_NAME)
        return True

    def acquire(self) -> None:
        """Take the lock for a user's play, asking the holder to give way. LofiError if it does not in time."""
        if self.try_acquire():
            return
        directory = self.directory()
        holder = self.holder()
        log.info("asking the lofi daemon playing (pid %s) to give way", holder)
        self._write_request(directory)
        deadline = time.monotonic() + self.timeout_sec
        try:
            while time.monotonic() < deadline:
                time.sleep(RETRY_SEC)
                if self.try_acquire():
                    return
        finally:
            self._clear_request(directory)
        raise LofiError(
            ErrorCode.AUDIO_DEVICE_ERROR,
            f"another lofi (pid {holder or '?'}) is playing and did not give way",
            hint="stop it there, or try again",
        )

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(fd)
        log.info("player lock released")

    def holder(self) -> int | None:
        """The pid of another process holding the lock, or None if nobody else does."""
        if self._fd is not None or fcntl is None:
            return None
        path = self.directory() / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:  # held: by whom?
                text = os.read(fd, 32).decode(errors="replace").strip()
                return int(text) if text.isdigit() else 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def handover_requested(self) -> int | None:
        """While holding: the pid of a live player that asked to play, else None."""
        if self._fd is None or self._dir is None:
            return None
        path = self._dir / REQUEST_NAME
        try:
            text = path.read_text()
        except OSError:
            return None
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit() or text.strip() == self.token:
            return None
        pid = int(parts[0])
        if not pid_alive(pid):
            path.unlink(missing_ok=True)  # its asker died waiting
            return None
        return pid

    def _write_request(self, directory: Path) -> None:
        tmp = directory / f".{REQUEST_NAME}.{secrets.token_hex(4)}"
        try:
            tmp.write_text(self.token)
            os.replace(tmp, directory / REQUEST_NAME)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            log.warning("cannot ask the other lofi to give way: %s", e)

    def _clear_request(self, directory: Path) -> None:
        path = directory / REQUEST_NAME
        try:
            if path.read_text().strip() == self.token:
                path.unlink()
        except OSError:
            pass
