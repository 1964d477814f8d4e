"""Logs go to a rotating file under the user log dir and, from WARNING up, to stderr. Never to stdout."""

from __future__ import annotations

import logging
import logging.handlers
import sys
import threading
from pathlib import Path

FORMAT = "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s"

_said: set[tuple[str, int, str]] = set()
_said_lock = threading.Lock()


def log_once(logger: logging.Logger, level: int, msg: str, *args: object) -> None:
    """Log a fact once per process: facts that do not change while the daemon runs (which providers this
    onnxruntime has, a fallback) are otherwise repeated for every status request and every session."""
    key = (logger.name, level, msg % args if args else msg)
    with _said_lock:
        if key in _said:
            return
        _said.add(key)
    logger.log(level, msg, *args)


def setup_logging(log_dir: Path, level: str = "info", log_file: Path | None = None) -> Path | None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter("lofi-daemon: %(levelname)s %(message)s"))
    root.addHandler(err)
    path = log_file or log_dir / "daemon.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = logging.handlers.RotatingFileHandler(
            path, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8"
        )
    except OSError as exc:
        root.warning("cannot write the log file %s: %s", path, exc)
        return None
    fh.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(fh)
    return path
