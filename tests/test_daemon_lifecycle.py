"""How the daemon ends: a signal during a real generation is a clean exit 0 with a consistent cache, and the
idle timeout counts from the end of the last job, not from the last request."""

from __future__ import annotations

import re
import signal
import sqlite3
from datetime import datetime

import pytest

from tests.daemon_client import ROOT

TINY = str(ROOT / "tests" / "fixtures" / "musicgen-tiny")


def assert_cache_consistent(tmp_path) -> None:
    tracks = tmp_path / "cache" / "tracks"
    assert not list(tracks.glob(".tmp-*")), "a half-written track was left behind"
    db = sqlite3.connect(tracks / "index.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        for (file,) in db.execute("SELECT file FROM tracks"):
            assert (tracks / file).is_file(), f"index lists {file} but it is missing"
    finally:
        db.close()


# SIGINT aborted with SIGABRT in 2 of 4 tries; 10 tries make a pass by luck (0.5^10) negligible.
@pytest.mark.slow
@pytest.mark.parametrize(
    "sig", [signal.SIGINT] * 10 + [signal.SIGTERM, signal.SIGHUP], ids=lambda s: signal.Signals(s).name
)
def test_signal_during_a_real_generation_exits_cleanly(daemon, tmp_path, sig):
    # The daemon leaves an inherited SIG_IGN alone (nohup); make sure it does not inherit one from this runner.
    if signal.getsignal(sig) is signal.SIG_IGN:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    d = daemon(LOFI_MUSICGEN_DIR=TINY, LOFI_DEFAULT_BACKEND="musicgen", LOFI_THREADS="2")
    r = d.call("generate", {"prompt": "rainy night jazz piano", "duration_sec": 60, "seed": 3})
    # The decoder is inside ONNX Runtime once the first progress arrives.
    d.wait_notification("generation_progress", track_id=r["track_id"], timeout=120)
    d.proc.send_signal(sig)
    assert d.proc.wait(60) == 0, d.stderr.decode(errors="replace")
    d.eof.wait(10)
    assert b"terminate called" not in d.stderr
    assert_cache_consistent(tmp_path)


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def log_time(log: str, needle: str) -> datetime:
    for line in log.splitlines():
        if needle in line:
            return datetime.strptime(LOG_TIME.match(line).group(1), "%Y-%m-%d %H:%M:%S,%f")
    raise AssertionError(f"{needle!r} not in the daemon log:\n{log}")


def test_idle_timeout_counts_from_the_end_of_the_last_job(daemon, tmp_path):
    idle = 1.0
    # A job of 15 × 0.2 s is longer than the idle timeout, and no request arrives after it was queued.
    d = daemon("--idle-timeout", str(idle), LOFI_TONE_STEP_SEC="0.2", LOFI_TONE_STEPS="15")
    r = d.call("generate", {"prompt": "long job", "duration_sec": 2})
    d.wait_notification("generation_complete", track_id=r["track_id"], timeout=60)
    assert d.proc.wait(60) == 0
    log = (tmp_path / "log" / "daemon.log").read_text()
    done, exited = log_time(log, f"job {r['track_id']} done"), log_time(log, "exiting: idle")
    # Measured on the daemon's own clock; the log's millisecond rounding is the only slack.
    assert (exited - done).total_seconds() >= idle - 0.002, (done, exited)
