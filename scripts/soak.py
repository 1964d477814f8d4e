#!/usr/bin/env python3
"""Soak test: a bounded, mixed, randomised workload against the real daemon for N minutes, then the invariants.

    python scripts/soak.py MINUTES [--backend tone|musicgen] [--seed N] [--json out.json] [--keep DIR]

Workload (weighted random, one operation at a time): generate (new tracks, and repeats that must be cache
hits), wait for the running job, cancel (waiting or running jobs), play / pause / stop on the
ALSA `file` device writing to /dev/null, cache ops (list, stats, favourite, delete), graceful restarts
(`shutdown` once the queue has drained) and `kill -9` in the middle of work, each followed by a new daemon on
the same cache. `tone` is the test-double backend (tests/doubles, about a second per job); `musicgen` runs the
tiny random-weight MusicGen fixture through ONNX Runtime.

Invariants checked (any violation makes the exit status 1):
  - no lost track: every track whose `generation_complete` arrived, and that this script did not delete, is in
    the final `cache_list` and its file is there (cache limits are raised so nothing is evicted);
  - no orphan file: every file in the tracks folder is in the index, no temp file survives a restart, and no
    index row points at a missing file;
  - index integrity: `PRAGMA integrity_check` is `ok` after every restart and at the end;
  - every job has exactly one end notification (`generation_complete|error|cancelled`) in the daemon that
    accepted it; only jobs still in flight at a `kill -9` may have none (counted as `interrupted`);
  - the daemon answers `ping` after every operation (latency reported).
Prints a table and a JSON summary (also written to --json).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

from tests.daemon_client import DaemonProcess  # noqa: E402

TERMINAL = ("generation_complete", "generation_error", "generation_cancelled")
CEILING = 120.0  # seconds any single reply or drain may take on a loaded machine before it counts as a hang
PROMPTS = ["rainy night jazz piano", "lofi hip hop beat", "warm tape hiss chords", "slow vinyl crackle"]
WEIGHTS = {
    "generate": 30,
    "cache_hit": 8,
    "cancel": 10,
    "play": 12,
    "cache_ops": 20,
    "wait": 15,
    "restart": 2,
    "kill9": 2,
}


def audio_env(tmp: Path) -> dict[str, str]:
    """PortAudio's default device = ALSA `file` plugin on the `null` slave, writing to /dev/null (unpaced)."""
    (tmp / "alsa").mkdir(parents=True, exist_ok=True)
    (tmp / "alsa" / "asoundrc").write_text(
        'pcm.!default {\n  type plug\n  slave { pcm "soak" format S16_LE rate 48000 channels 2 }\n}\n'
        'pcm.soak {\n  type file\n  slave.pcm "null"\n  format "raw"\n  file "/dev/null"\n}\n'
    )
    return {"XDG_CONFIG_HOME": str(tmp)}


class Session:
    """One daemon process and the jobs it accepted."""

    def __init__(self, soak: Soak) -> None:
        self.d = DaemonProcess(soak.tmp, (), **soak.env)
        self.expected: collections.Counter[str] = collections.Counter()  # track_id -> end notifications due
        self.d.call(
            "initialize",
            {
                "client_info": {"name": "soak"},
                "options": {
                    "cache": {"max_mb": 100_000, "max_tracks": 100_000},
                    "playback": {"auto_play": False, "volume": 0.2},
                    "prefetch": {"enabled": False},
                },
            },
            timeout=CEILING,
        )

    def ends(self) -> collections.Counter[str]:
        with self.d._cond:
            return collections.Counter(
                n["params"]["track_id"] for n in self.d.notifications if n["method"] in TERMINAL
            )

    def completed(self) -> dict[str, str]:
        with self.d._cond:
            return {
                n["params"]["track_id"]: n["params"]["path"]
                for n in self.d.notifications
                if n["method"] == "generation_complete" and not n["params"].get("cached")
            }


class Soak:
    def __init__(self, tmp: Path, backend: str, rng: random.Random) -> None:
        self.tmp, self.backend, self.rng = tmp, backend, rng
        self.env = {**audio_env(tmp / "audio"), "LOFI_DEFAULT_BACKEND": backend}
        if backend == "tone":
            self.env.update(LOFI_TONE_STEP_SEC="0.05", LOFI_TONE_STEPS="20")
            self.durations = (1.0, 3.0)
        else:
            self.env.update(
                LOFI_MUSICGEN_DIR=str(ROOT / "tests" / "fixtures" / "musicgen-tiny"), LOFI_THREADS="1"
            )
            self.durations = (5.0, 8.0)
        self.ops: collections.Counter[str] = collections.Counter()
        self.violations: list[str] = []
        self.ping_ms: list[float] = []
        self.completed: dict[str, str] = {}  # every track whose generation_complete arrived, any session
        self.deleted: set[str] = set()
        self.requests: dict[str, dict[str, Any]] = {}  # track_id -> the generate params that made it
        self.jobs = self.interrupted = self.cache_hits = self.sessions_run = 0
        self.end_kinds: collections.Counter[str] = collections.Counter()
        self.seed = rng.randrange(2**31)
        self.session = Session(self)

    # -- helpers -----------------------------------------------------------------------------------------
    def violation(self, text: str) -> None:
        print(f"VIOLATION: {text}", file=sys.stderr)
        self.violations.append(text)

    def ping(self) -> None:
        t0 = time.monotonic()
        reply = self.session.d.request("ping", timeout=CEILING)
        self.ping_ms.append((time.monotonic() - t0) * 1000)
        if "result" not in reply:
            self.violation(f"ping failed: {reply}")

    def generate(self, params: dict[str, Any]) -> dict[str, Any] | None:
        reply = self.session.d.request("generate", params, timeout=CEILING)
        if "result" not in reply:
            if reply["error"]["data"]["error_code"] != "QUEUE_FULL":
                self.violation(f"generate {params} failed: {reply['error']}")
            return None
        result = reply["result"]
        if result["status"] in ("queued", "cached"):
            self.session.expected[result["track_id"]] += 1
            self.jobs += 1
        self.requests.setdefault(result["track_id"], params)
        return result

    # -- operations --------------------------------------------------------------------------------------
    def op_generate(self) -> None:
        self.seed += 1
        lo, hi = self.durations
        params = {
            "prompt": self.rng.choice(PROMPTS),
            "seed": self.seed,
            "duration_sec": round(self.rng.uniform(lo, hi), 1),
            "priority": self.rng.choice(["normal", "normal", "high"]),
        }
        self.generate(params)

    def op_cache_hit(self) -> None:
        done = sorted(set(self.completed) - self.deleted)
        if not done:
            return self.op_generate()
        tid = self.rng.choice(done)
        result = self.generate(self.requests[tid])
        if result is not None:
            if result["track_id"] != tid or result["status"] != "cached":
                self.violation(
                    f"repeat of {tid} was {result['status']} {result['track_id']}, not a cache hit"
                )
            self.cache_hits += 1

    def op_cancel(self) -> None:
        d = self.session.d
        q = d.call("queue_status", timeout=CEILING)
        pending = [j["track_id"] for j in q["waiting"]] + ([q["running"]["track_id"]] if q["running"] else [])
        if pending:
            reply = d.request("cancel", {"track_id": self.rng.choice(pending)}, timeout=CEILING)
            if (
                "error" in reply and reply["error"]["data"]["error_code"] != "TRACK_NOT_FOUND"
            ):  # it just ended
                self.violation(f"cancel failed: {reply['error']}")

    def op_play(self) -> None:
        d = self.session.d
        tracks = d.call("cache_list", {"limit": 50}, timeout=CEILING)["tracks"]
        if not tracks:
            return
        reply = d.request("play", {"track_id": self.rng.choice(tracks)["track_id"]}, timeout=CEILING)
        if "error" in reply:
            if reply["error"]["data"]["error_code"] not in ("AUDIO_DEVICE_ERROR", "TRACK_NOT_FOUND"):
                self.violation(f"play failed: {reply['error']}")
            return
        time.sleep(self.rng.uniform(0.05, 0.5))
        d.call(self.rng.choice(["pause", "stop", "stop", "toggle"]), timeout=CEILING)
        d.call("status", timeout=CEILING)

    def op_cache_ops(self) -> None:
        d = self.session.d
        # The worker may finish a track between two calls (only this script deletes, nothing is evicted), so
        # the listed count must lie between the counts before and after.
        before = d.call("cache_stats", timeout=CEILING)["count"]
        tracks = d.call("cache_list", {"limit": 10000}, timeout=CEILING)["tracks"]
        after = d.call("cache_stats", timeout=CEILING)["count"]
        if not before <= len(tracks) <= after:
            self.violation(f"cache_list has {len(tracks)} tracks, cache_stats said {before} then {after}")
        if not tracks:
            return
        tid = self.rng.choice(tracks)["track_id"]
        action = self.rng.choice(["favourite", "favourite", "delete"])
        if action == "favourite":
            d.call(
                "cache_favourite", {"track_id": tid, "favourite": self.rng.random() < 0.5}, timeout=CEILING
            )
        else:
            reply = d.request("cache_delete", {"track_id": tid}, timeout=CEILING)
            if "result" in reply:
                self.deleted.add(tid)
            elif reply["error"]["data"]["error_code"] not in ("CACHE_ERROR", "TRACK_NOT_FOUND"):  # playing
                self.violation(f"cache_delete failed: {reply['error']}")

    def op_wait(self) -> None:
        """Let the queue make progress: wait for the running job's end (as a user listening would)."""
        q = self.session.d.call("queue_status", timeout=CEILING)
        if q["running"]:
            tid = q["running"]["track_id"]
            deadline = time.monotonic() + CEILING
            while self.session.ends()[tid] < self.session.expected[tid] and time.monotonic() < deadline:
                time.sleep(0.05)

    def op_restart(self) -> None:
        self.drain()
        self.end_session(graceful=True)
        self.session = Session(self)

    def op_kill9(self) -> None:
        self.op_generate()  # make sure something is in flight
        self.end_session(graceful=False)
        self.session = Session(self)

    # -- sessions ----------------------------------------------------------------------------------------
    def drain(self) -> None:
        deadline = time.monotonic() + CEILING * 5
        while time.monotonic() < deadline:
            q = self.session.d.call("queue_status", timeout=CEILING)
            if q["running"] is None and not q["waiting"]:
                # the last job's end notification is sent before the queue frees it; give it a moment to arrive
                if all(self.session.ends()[t] >= n for t, n in self.session.expected.items()):
                    return
            time.sleep(0.2)
        self.violation("queue did not drain")

    def end_session(self, graceful: bool) -> None:
        s, d = self.session, self.session.d
        self.sessions_run += 1
        if graceful:
            d.call("shutdown", timeout=CEILING)
            rc = d.proc.wait(CEILING)
            if rc != 0:
                self.violation(f"daemon exited with {rc} after shutdown")
        else:
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait(CEILING)
        d.eof.wait(CEILING)
        if d.garbage:
            self.violation(f"non-protocol bytes on stdout: {d.garbage[:3]}")
        self.completed.update(s.completed())
        with d._cond:
            self.end_kinds.update(n["method"] for n in d.notifications if n["method"] in TERMINAL)
        ends = s.ends()
        for tid, due in s.expected.items():
            got = ends[tid]
            if got > due:
                self.violation(f"job {tid}: {got} end notifications for {due} jobs")
            elif got < due:
                if graceful:
                    self.violation(f"job {tid}: no end notification before a graceful shutdown")
                else:
                    self.interrupted += due - got
        for tid in set(ends) - set(s.expected):
            self.violation(f"end notification for {tid}, a job this session never accepted")
        self.check_index()

    # -- invariants --------------------------------------------------------------------------------------
    def tracks_dir(self) -> Path:
        return self.tmp / "cache" / "tracks"

    def check_index(self) -> None:
        db_path = self.tracks_dir() / "index.sqlite3"
        if not db_path.exists():
            return
        db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            result = db.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            db.close()
        if result != "ok":
            self.violation(f"index integrity: {result}")

    def final_checks(self) -> dict[str, Any]:
        self.drain()
        listed = {t["track_id"]: t for t in self.session.d.call("cache_list", {"limit": 10000})["tracks"]}
        self.end_session(graceful=True)
        self.session = Session(self)  # a fresh start reconciles what a kill -9 left behind
        self.session.d.call("ping")
        self.end_session(graceful=True)
        kept = set(self.completed) - self.deleted
        lost = sorted(kept - set(listed))
        for tid in lost:
            self.violation(f"lost track {tid}")
        missing = [t for t in listed.values() if not Path(t["path"]).is_file()]
        for t in missing:
            self.violation(f"index lists {t['track_id']} but {t['path']} is missing")
        files = {p.name for p in self.tracks_dir().iterdir() if not p.name.startswith("index.sqlite3")}
        db = sqlite3.connect(f"file:{self.tracks_dir() / 'index.sqlite3'}?mode=ro", uri=True)
        try:
            indexed = {row[0] for row in db.execute("SELECT file FROM tracks")}
        finally:
            db.close()
        orphans = sorted(files - indexed)
        for name in orphans:
            self.violation(f"orphan file {name}")
        return {
            "tracks_completed": len(self.completed),
            "tracks_deleted": len(self.deleted & set(self.completed)),
            "tracks_kept": len(kept),
            "tracks_in_cache": len(listed),
            "lost": len(lost),
            "orphans": len(orphans),
            "dangling_rows": len(missing),
        }


def run(minutes: float, backend: str, seed: int, tmp: Path) -> dict[str, Any]:
    rng = random.Random(seed)
    soak = Soak(tmp, backend, rng)
    started = time.monotonic()
    deadline = started + minutes * 60
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    while time.monotonic() < deadline:
        op = rng.choices(names, weights)[0]
        getattr(soak, f"op_{op}")()
        soak.ops[op] += 1
        soak.ping()
    totals = soak.final_checks()
    elapsed = time.monotonic() - started
    pings = sorted(soak.ping_ms)
    return {
        "minutes": round(elapsed / 60, 2),
        "backend": backend,
        "seed": seed,
        "operations": dict(soak.ops),
        "operations_total": sum(soak.ops.values()),
        "daemon_sessions": soak.sessions_run,
        "jobs_accepted": soak.jobs,
        "cache_hits_checked": soak.cache_hits,
        "jobs_interrupted_by_kill9": soak.interrupted,
        "end_notifications": dict(soak.end_kinds),
        **totals,
        "ping_ms": {
            "n": len(pings),
            "p50": round(statistics.median(pings), 1),
            "p99": round(pings[int(0.99 * (len(pings) - 1))], 1),
            "max": round(pings[-1], 1),
        },
        "violations": soak.violations,
        "ok": not soak.violations,
    }


def table(result: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in result.items() if k not in ("operations", "ping_ms", "violations")]
    rows += [(f"op {k}", v) for k, v in sorted(result["operations"].items())]
    rows += [(f"ping {k}", v) for k, v in result["ping_ms"].items()]
    rows.append(("violations", len(result["violations"])))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("minutes", type=float)
    ap.add_argument("--backend", choices=["tone", "musicgen"], default="tone")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="use (and keep) this folder instead of a temporary one")
    args = ap.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run(args.minutes, args.backend, args.seed, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="lofi-soak-") as tmp:
            result = run(args.minutes, args.backend, args.seed, Path(tmp))
    print(table(result))
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
