"""The cache shared by several processes: writers killed with SIGKILL mid-write, writers racing each other."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from lofi_daemon.cache.store import TrackStore

REPO = Path(__file__).resolve().parents[1]

WRITER = textwrap.dedent(
    """
    import os, sys, time
    sys.path[:0] = [sys.argv[1] + "/daemon", sys.argv[1]]
    from pathlib import Path
    import numpy as np
    from lofi_daemon.cache.store import TrackStore
    from tests.playback_helpers import put_track, sine

    root, mode, count, tag = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    real_replace = os.replace

    def replace(src, dst):
        if mode == "before_rename":
            print("READY", flush=True); time.sleep(60)
        real_replace(src, dst)
        if mode == "after_rename":
            print("READY", flush=True); time.sleep(60)

    os.replace = replace
    store = TrackStore(root, max_tracks=int(os.environ.get("MAX_TRACKS", "0")) or None)
    for i in range(count):
        if mode == "loop" and i == 1:
            print("READY", flush=True)
        put_track(store, f"{tag} {i}", sine(200 + i, 4.0, 32000, amp=0.3), 32000, seed=i)
    print("DONE", flush=True)
    """
)


def spawn(root: Path, mode: str, count: int = 1, tag: str = "w", env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(REPO), str(root), mode, str(count), tag],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_ready(p: subprocess.Popen) -> None:
    line = p.stdout.readline()
    assert line.strip() == "READY", line


def assert_consistent(root: Path) -> list:
    """Every indexed track has a complete, decodable file; no temp files; nothing unindexed but the index."""
    store = TrackStore(root)
    tracks = store.list_tracks()
    for t in tracks:
        with sf.SoundFile(t.path) as f:
            assert f.frames == int(round(t.duration_sec * t.sample_rate))
            data = f.read(dtype="float32")
        assert np.isfinite(data).all() and np.abs(data).max() > 0.2
    assert not list(root.glob(".tmp-*"))
    files = {p.name for p in root.iterdir() if not p.name.startswith("index.sqlite3")}
    assert files == {Path(t.path).name for t in tracks}
    conn = sqlite3.connect(root / "index.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store.close()
    return tracks


def test_sigkill_while_writing_the_temp_file_leaves_nothing(tmp_path):
    root = tmp_path / "tracks"
    p = spawn(root, "before_rename")
    wait_ready(p)
    assert list(root.glob(".tmp-*"))  # the complete temp file exists, not yet renamed
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert assert_consistent(root) == []


def test_sigkill_between_rename_and_index_row_adopts_the_complete_file(tmp_path):
    root = tmp_path / "tracks"
    p = spawn(root, "after_rename", tag="adopt")
    wait_ready(p)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    tracks = assert_consistent(root)
    assert [t.prompt for t in tracks] == ["adopt 0"]


def test_sigkill_at_random_moments_never_corrupts(tmp_path):
    root = tmp_path / "tracks"
    rng = np.random.default_rng(0)
    for round_ in range(3):
        p = spawn(root, "loop", count=50, tag=f"r{round_}")
        wait_ready(p)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert_consistent(root)
    assert len(TrackStore(root).list_tracks()) >= 3


def test_two_processes_writing_at_once(tmp_path):
    root = tmp_path / "tracks"
    TrackStore(root).close()
    procs = [spawn(root, "plain", count=25, tag=tag) for tag in ("left", "right")]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and "DONE" in out
    tracks = assert_consistent(root)
    assert sorted(t.prompt for t in tracks) == sorted(
        [f"left {i}" for i in range(25)] + [f"right {i}" for i in range(25)]
    )


def test_two_processes_evicting_while_writing(tmp_path):
    root = tmp_path / "tracks"
    procs = [spawn(root, "plain", count=8, tag=tag, env={"MAX_TRACKS": "5"}) for tag in ("a", "b")]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0 and "DONE" in out
    tracks = assert_consistent(root)
    assert len(tracks) == 5
