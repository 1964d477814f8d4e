"""A test double of lofi-daemon for the Neovim client tests: the same framing and method names, canned behaviour.

It exists to test the Lua client's framing and lifecycle against awkward but legal byte streams (a message split
into single bytes, several messages in one write) and against crashes, without models. Scenario tests that need
real behaviour use the real daemon.

Usage: fake_lofi_daemon.py [--version | health --json] [--split-writes] [--crash-after-started]
                           [--record FILE] [--gen-steps N] [--slow-init-once FILE]
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

ARGS = sys.argv[1:]
SPLIT = "--split-writes" in ARGS
CRASH_AFTER_STARTED = "--crash-after-started" in ARGS
RECORD = ARGS[ARGS.index("--record") + 1] if "--record" in ARGS else None
GEN_STEPS = int(ARGS[ARGS.index("--gen-steps") + 1]) if "--gen-steps" in ARGS else 5
# The first daemon started with this flag (FILE does not exist yet) answers `initialize` only after 30 s, so a
# test can kill it during the handshake; the restarted one answers at once.
SLOW_INIT_ONCE = ARGS[ARGS.index("--slow-init-once") + 1] if "--slow-init-once" in ARGS else None

out_lock = threading.Lock()
stdout = sys.stdout.buffer


def send(msg: dict) -> None:
    body = json.dumps(msg).encode()
    data = b"Content-Length: %d\r\n\r\n" % len(body) + body
    with out_lock:
        if SPLIT:
            # Worst case for a reader: one byte per write.
            for i in range(len(data)):
                stdout.write(data[i : i + 1])
                stdout.flush()
        else:
            stdout.write(data)
            stdout.flush()


def notify(method: str, params: dict) -> None:
    send({"jsonrpc": "2.0", "method": method, "params": params})


def read_message() -> dict | None:
    length = None
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        line = line.strip()
        if not line:
            break
        k, _, v = line.decode().partition(":")
        if k.lower() == "content-length":
            length = int(v)
    body = sys.stdin.buffer.read(length or 0)
    return json.loads(body)


tracks: dict[str, dict] = {}
playback = {
    "state": "stopped",
    "track_id": None,
    "position_sec": 0.0,
    "duration_sec": 0.0,
    "volume": 0.3,
    "loop": True,
}
jobs: dict[str, threading.Event] = {}
running: dict | None = None
counter = 0


class RpcError(Exception):
    def __init__(self, code: int, name: str, message: str, **data):
        self.error = {"code": code, "message": message, "data": {"error_code": name, **data}}


def run_job(track_id: str, params: dict, cancel: threading.Event) -> None:
    global running
    priority = params.get("priority", "normal")
    running = {
        "track_id": track_id,
        "prompt": params["prompt"],
        "backend": "musicgen",
        "priority": priority,
        "percent": 0,
    }
    notify(
        "generation_started",
        {"track_id": track_id, "prompt": params["prompt"], "backend": "musicgen", "priority": priority},
    )
    if CRASH_AFTER_STARTED:
        os._exit(3)
    for i in range(1, GEN_STEPS + 1):
        time.sleep(0.05)
        if cancel.is_set():
            running = None
            notify("generation_cancelled", {"track_id": track_id})
            return
        pct = min(99, int(100 * i / (GEN_STEPS + 1)))
        running["percent"] = pct
        notify("generation_progress", {"track_id": track_id, "percent": pct, "eta_sec": 1.0})
    dur = float(params.get("duration_sec") or 30)
    track = {
        "track_id": track_id,
        "path": f"/tmp/{track_id}.flac",
        "prompt": params["prompt"],
        "backend": "musicgen",
        "params": {"guidance_scale": 3.0},
        "seed": params.get("seed", 7),
        "duration_sec": dur,
        "sample_rate": 32000,
        "channels": 1,
        "format": "flac",
        "model_version": "fake-1",
        "generation_time_sec": 0.3,
        "created_at": time.time(),
        "last_played": None,
        "play_count": 0,
        "favourite": False,
    }
    tracks[track_id] = track
    running = None
    complete = {
        k: track[k] for k in ("track_id", "path", "duration_sec", "sample_rate", "prompt", "seed", "backend")
    }
    notify("generation_complete", {**complete, "model_version": "fake-1", "generation_time_sec": 0.3})
    playback.update(state="playing", track_id=track_id, position_sec=0.0, duration_sec=dur)
    notify("playback_started", {"track_id": track_id, "duration_sec": dur})


def handle(method: str, p: dict):
    global counter
    if method == "initialize":
        if SLOW_INIT_ONCE and not os.path.exists(SLOW_INIT_ONCE):
            open(SLOW_INIT_ONCE, "w").close()
            time.sleep(30)
        return {
            "server": {"name": "fake-lofi-daemon", "version": "0.0.1"},
            "protocol_version": 1,
            "capabilities": {"methods": [], "notifications": []},
            "backends": [],
            "log_file": os.environ.get("FAKE_LOG_FILE", "/tmp/fake-lofi.log"),
            "cache_dir": "/tmp/fake-cache",
        }
    if method == "shutdown":
        return {"ok": True}
    if method == "sleep":  # test-only: a request that stays pending
        time.sleep(float(p.get("sec", 5)))
        return {"slept": True}
    if method == "say":  # test-only: emit a `log` notification
        notify("log", {"level": p.get("level", "warning"), "message": p["message"]})
        return {"ok": True}
    if method == "download_backend":
        return {"backend": p["backend"], "status": "started"}
    if method == "ping":
        return {"pong": True}
    if method == "status":
        return {
            "version": "0.0.1",
            "pid": os.getpid(),
            "uptime_sec": 1.0,
            "log_file": "/tmp/fake-lofi.log",
            "cache_dir": "/tmp/fake-cache",
            "queue": {"running": running, "waiting": []},
            "playback": playback,
            "loaded_backend": None,
        }
    if method == "generate":
        prompt = (p.get("prompt") or "").strip()
        if not prompt:
            raise RpcError(-32006, "INVALID_PROMPT", "Prompt must not be empty")
        dur = p.get("duration_sec") or 30
        if not 5 <= dur <= 120:
            raise RpcError(-32005, "INVALID_DURATION", "Duration must be between 5 and 120 seconds")
        if p.get("backend") == "ace_step":
            raise RpcError(-32008, "BACKEND_NOT_INSTALLED", "ace_step is not installed", backend="ace_step")
        counter += 1
        track_id = f"{counter:016x}"
        cancel = threading.Event()
        jobs[track_id] = cancel
        threading.Thread(
            target=run_job, args=(track_id, {**p, "prompt": prompt}, cancel), daemon=True
        ).start()
        return {
            "track_id": track_id,
            "status": "queued",
            "position": 0,
            "seed": p.get("seed", 7),
            "backend": "musicgen",
        }
    if method == "cancel":
        ev = jobs.get(p["track_id"])
        if not ev:
            raise RpcError(-32012, "TRACK_NOT_FOUND", "no such job")
        ev.set()
        return {"track_id": p["track_id"], "cancelled": True, "was_running": True}
    if method == "queue_status":
        return {"running": running, "waiting": [], "max_waiting": 10}
    if method in ("play", "pause", "resume", "toggle", "stop", "skip", "seek", "volume"):
        if method == "play":
            tid = p.get("track_id") or playback["track_id"]
            if tid not in tracks:
                raise RpcError(-32012, "TRACK_NOT_FOUND", f"track {tid} not found")
            playback.update(
                state="playing", track_id=tid, position_sec=0.0, duration_sec=tracks[tid]["duration_sec"]
            )
        elif method == "pause":
            playback["state"] = "paused"
        elif method in ("resume",):
            playback["state"] = "playing"
        elif method == "toggle":
            playback["state"] = "paused" if playback["state"] == "playing" else "playing"
        elif method == "stop":
            playback.update(state="stopped", track_id=None, position_sec=0.0, duration_sec=0.0)
        elif method == "seek":
            playback["position_sec"] = float(p["position_sec"])
        elif method == "volume" and p.get("level") is not None:
            playback["volume"] = float(p["level"])
        return dict(playback)
    if method == "cache_list":
        items = sorted(tracks.values(), key=lambda t: -t["created_at"])
        if p.get("favourite") is not None:
            items = [t for t in items if t["favourite"] == p["favourite"]]
        return {"tracks": items[: p.get("limit") or 100]}
    if method == "cache_delete":
        if tracks.pop(p["track_id"], None) is None:
            raise RpcError(-32012, "TRACK_NOT_FOUND", "no such track")
        return {"track_id": p["track_id"], "deleted": True}
    if method == "cache_stats":
        return {
            "count": len(tracks),
            "size_bytes": 0,
            "size_mb": 0.0,
            "max_mb": 500,
            "oldest": None,
            "newest": None,
            "dir": "/tmp/fake-cache",
        }
    if method == "cache_favourite":
        if p["track_id"] not in tracks:
            raise RpcError(-32012, "TRACK_NOT_FOUND", "no such track", track_id=p["track_id"])
        tracks[p["track_id"]]["favourite"] = bool(p.get("favourite", True))
        return tracks[p["track_id"]]
    if method == "cache_clear":
        kept = {k: t for k, t in tracks.items() if t["favourite"]}
        removed = len(tracks) - len(kept)
        tracks.clear()
        tracks.update(kept)
        return {"removed": removed, "kept_playing": False}
    if method == "playlist_add":
        return {"tracks": [p["track_id"]], "current_index": 0}
    if method == "get_backends":
        return {
            "backends": [
                {"name": "musicgen", "display_name": "MusicGen", "installed": True},
                {
                    "name": "ace_step",
                    "display_name": "ACE-Step",
                    "installed": False,
                    "download_size_bytes": 12_300_000_000,
                },
            ],
            "default_backend": "musicgen",
        }
    raise RpcError(-32601, "METHOD_NOT_FOUND", f"method not found: {method}")


def main() -> int:
    if "--version" in ARGS:
        print("lofi-daemon 0.0.1 (fake)")
        return 0
    if "health" in ARGS and "--json" in ARGS:
        damaged = (
            "--damaged" in ARGS
        )  # a corrupt model file and a refused cache index, as the real daemon says
        print(
            json.dumps(
                {
                    "version": "0.0.1",
                    "python": "3.11.7",
                    "packages": {"onnxruntime": "1.23.0", "numpy": "2.0"},
                    "providers": ["CPUExecutionProvider"],
                    "backends": [
                        {
                            "name": "musicgen",
                            "installed": True,
                            "variant": "small_i8",
                            "dir": "/models/mg",
                            "kv_precision": "float32",
                            "decoder_products": "int8 MatMulNBits (8-bit, accuracy 4)",
                        },
                        {"name": "ace_step", "installed": False, "variant": None, "dir": None},
                    ],
                    "audio": {"ok": False, "devices": [], "error": "no output device"},
                    "cache": {"dir": "/tmp/fake-cache", "size_mb": 12.5, "count": 3},
                    "log_file": "/tmp/fake-lofi.log",
                    "lyrics": {
                        "setup": "scripts/setup --lyrics",
                        "languages": {
                            "en": {"name": "English", "available": True, "missing": []},
                            "ja": {"name": "Japanese", "available": False, "missing": ["cutlet", "fugashi"]},
                            "ko": {"name": "Korean", "available": False, "missing": ["hangul-romanize"]},
                        },
                    },
                }
                | (
                    {
                        "backends": [
                            {
                                "name": "musicgen",
                                "installed": True,
                                "variant": "small-int8",
                                "verify": {
                                    "ok": False,
                                    "problems": ["small_i8/decoder_model_merged.onnx: truncated"],
                                    "hint": "lofi-daemon download musicgen --repair",
                                },
                            }
                        ],
                        "cache": {
                            "dir": "/c",
                            "size_mb": 0,
                            "files": 0,
                            "error": "cache index /c/x is a symlink",
                        },
                    }
                    if damaged
                    else {}
                )
            )
        )
        return 0
    rec = open(RECORD, "a") if RECORD else None
    while True:
        msg = read_message()
        if msg is None:
            return 0
        if rec:
            rec.write(json.dumps(msg) + "\n")
            rec.flush()
        if "id" not in msg:
            continue
        try:
            result = handle(msg["method"], msg.get("params") or {})
            send({"jsonrpc": "2.0", "id": msg["id"], "result": result})
        except RpcError as e:
            send({"jsonrpc": "2.0", "id": msg["id"], "error": e.error})
        if msg["method"] == "shutdown":
            return 0


if __name__ == "__main__":
    sys.exit(main())
