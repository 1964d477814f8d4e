"""What the remote-generator link costs: bytes on the link per second of audio, and the latency it adds to the
first sound, against the same backend run in this process (interleaved, same machine, same model).

The "remote" is a second lofi-daemon (`serve --generator`) started as a child process on this machine, so the
numbers are the protocol's own cost (encoding, framing, the pipe, decoding, verification) without a network; add
your network's round trip and bandwidth to them.

    python scripts/bench_remote.py [--musicgen-dir DIR] [--duration 10] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

from scripts.benchlib import Watch, machine_info  # noqa: E402


def run(backend, request, cancel) -> dict:
    first: list[float] = []
    t0 = time.monotonic()
    with Watch() as w:
        audio = backend.generate(
            request,
            lambda *_a, **_k: None,
            cancel,
            on_audio=lambda _c: first or first.append(time.monotonic()),
        )
    return {
        "wall_s": round(w.sec, 3),
        "first_audio_s": round(first[0] - t0, 3) if first else None,
        "audio_s": round(audio.duration_sec, 2),
        "foreign_cores": round(w.foreign_cores, 2),
    }


def main(argv: list[str] | None = None) -> None:
    from lofi_daemon.backends.base import GenerationRequest
    from lofi_daemon.backends.musicgen.backend import MusicGenBackend
    from lofi_daemon.cancel import CancelToken
    from lofi_daemon.config import Settings
    from lofi_daemon.remote.backend import RemoteBackend
    from lofi_daemon.remote.link import RemoteLink

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--musicgen-dir", type=Path, default=ROOT / "tests" / "fixtures" / "musicgen-tiny")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    tmp = Path(__import__("tempfile").mkdtemp(prefix="lofi-bench-remote-"))
    settings = Settings(cache_dir=tmp / "local", log_dir=tmp / "log", provider="cpu", threads=args.threads)
    settings.models["musicgen"].dir = args.musicgen_dir
    local = MusicGenBackend(settings, lambda *_: None)
    env = {
        "PYTHONPATH": f"{ROOT / 'daemon'}:{ROOT}",
        "LOFI_MUSICGEN_DIR": str(args.musicgen_dir),
        "LOFI_CACHE_DIR": str(tmp / "remote"),
        "LOFI_LOG_DIR": str(tmp / "remote-log"),
        "LOFI_PROVIDER": "cpu",
        "LOFI_THREADS": str(args.threads),
    }
    assigns = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    cmd = ["sh", "-c", f"exec env {assigns} {shlex.quote(sys.executable)} -m lofi_daemon serve --generator"]
    link = RemoteLink(cmd, connect_timeout_sec=300)
    t0 = time.monotonic()
    link.wait_ready()
    connect_s = time.monotonic() - t0
    remote = RemoteBackend(MusicGenBackend(settings, lambda *_: None), link, lambda *_: None)
    request = GenerationRequest("musicgen", "lofi hip hop, rainy night", args.duration, 1, local.validate({}))
    local.load()
    rows: dict[str, list[dict]] = {"local": [], "remote": []}
    try:
        remote.generate(request, lambda *_a, **_k: None, CancelToken())  # warm the remote's model
        run(local, request, CancelToken())
        for _ in range(args.repeats):
            rows["local"].append(run(local, request, CancelToken()))
            before = link.bytes_received
            row = run(remote, request, CancelToken())
            row["link_bytes"] = link.bytes_received - before
            rows["remote"].append(row)
    finally:
        link.close()

    def best(key: str, side: str) -> float:
        return min(r[key] for r in rows[side] if r[key] is not None)

    audio_s = rows["remote"][0]["audio_s"]
    pcm_rate = local.sample_rate * local.channels * 4
    link_rate = min(r["link_bytes"] for r in rows["remote"]) / audio_s
    result = {
        "machine": machine_info(),
        "model": str(args.musicgen_dir),
        "duration_s": args.duration,
        "connect_s": round(connect_s, 2),
        "rows": rows,
        "link_bytes_per_audio_s": round(link_rate),
        "pcm_float32_bytes_per_audio_s": pcm_rate,
        "link_over_pcm": round(link_rate / pcm_rate, 3),
        "first_audio_local_s": best("first_audio_s", "local"),
        "first_audio_remote_s": best("first_audio_s", "remote"),
        "added_first_audio_ms": round(
            (best("first_audio_s", "remote") - best("first_audio_s", "local")) * 1000, 1
        ),
        "added_wall_ms": round((best("wall_s", "remote") - best("wall_s", "local")) * 1000, 1),
    }
    print(json.dumps(result, indent=1))
    m = result["machine"]
    print(f"\n{m.get('cpu')} | {m.get('features')} | read {m.get('read_gb_per_s')} GB/s")
    print("| side | wall s (best) | first audio s (best) | link bytes / audio s |")
    print("|---|---|---|---|")
    print(f"| local | {best('wall_s', 'local')} | {best('first_audio_s', 'local')} | – |")
    print(
        f"| remote | {best('wall_s', 'remote')} | {best('first_audio_s', 'remote')} | {result['link_bytes_per_audio_s']} "
        f"({result['link_over_pcm']}× float32 PCM) |"
    )
    print(
        f"added latency to first sound: {result['added_first_audio_ms']} ms; connect: {result['connect_s']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
