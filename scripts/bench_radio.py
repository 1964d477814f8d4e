#!/usr/bin/env python3
"""Radio benchmark: MusicGen continuation windows, one after another, into the player's bounded live stream.

Per window: wall time, real-time factor (audio seconds per wall second) and this process's resident memory after
it; the live stream is drained after each window as a player would (so what is measured is what the radio holds).
Reference in the same run: one `generate` of a single window's length (the RTF a track gets). Flat memory means
the last windows' RSS is the first windows' RSS.

    python scripts/bench_radio.py [--dir tests/fixtures/musicgen-tiny] [--windows 12] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

from lofi_daemon.audio.live import LiveStream  # noqa: E402
from lofi_daemon.backends.musicgen.backend import MusicGenBackend  # noqa: E402
from lofi_daemon.backends.musicgen.pipeline import SamplingParams  # noqa: E402
from lofi_daemon.cancel import CancelToken  # noqa: E402
from lofi_daemon.config import ModelSettings, Settings  # noqa: E402

from scripts.benchlib import MIB, Watch, machine_info  # noqa: E402


def rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(ROOT / "tests" / "fixtures" / "musicgen-tiny"))
    ap.add_argument("--windows", type=int, default=12)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(cache_dir=Path(tmp), log_dir=Path(tmp), provider="cpu")
        settings.models["musicgen"] = ModelSettings(dir=Path(args.dir))
        backend = MusicGenBackend(settings)
        backend.load()
        pipe = backend.pipeline
        params = backend.validate({})
        with Watch() as ref:
            pipe.generate("lofi", backend.window_sec, 1, SamplingParams(**params))
        live = LiveStream("radio", backend.sample_rate, device_rate=lambda: 48000, clock=lambda: 0.0)
        state = backend.start_continuation(params, 1)
        rows = []
        for _ in range(args.windows):
            with Watch() as w:
                info = backend.continue_window(state, "lofi", CancelToken(), live.push)
            live.source.played = live.source.length  # the player consumed it
            rows.append(
                {
                    "index": info["index"],
                    "audio_sec": info["seconds"],
                    "wall_sec": round(w.sec, 3),
                    "rtf": round(info["seconds"] / w.sec, 2),
                    "rss_mib": round(rss_mib(), 1),
                    "live_buffer_mib": round(live.source._data[0].nbytes / MIB, 2),
                    "foreign_cores": round(w.foreign_cores, 2),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    early = statistics.median(r["rss_mib"] for r in rows[1:4])
    late = statistics.median(r["rss_mib"] for r in rows[-3:])
    result = {
        "machine": machine_info(),
        "model_dir": args.dir,
        "window_sec": backend.window_sec,
        "stride_sec": backend.stride_sec,
        "reference_generate_rtf": round(backend.window_sec / ref.sec, 2),
        "reference_foreign_cores": round(ref.foreign_cores, 2),
        "windows": rows,
        "stream_rtf_median": statistics.median(r["rtf"] for r in rows[1:]),
        "rss_early_mib": early,
        "rss_late_mib": late,
        "rss_growth_mib": round(late - early, 1),
    }
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print()
    print(f"{'window':>6}{'audio s':>9}{'wall s':>9}{'RTF':>7}{'RSS MiB':>10}{'live MiB':>10}{'foreign':>9}")
    for r in rows:
        print(
            f"{r['index']:>6}{r['audio_sec']:>9.1f}{r['wall_sec']:>9.2f}{r['rtf']:>7.2f}{r['rss_mib']:>10.1f}"
            f"{r['live_buffer_mib']:>10.2f}{r['foreign_cores']:>9.2f}"
        )
    print(
        f"reference: one {backend.window_sec:g} s generate, RTF {result['reference_generate_rtf']}; "
        f"RSS windows 1-3 {early} MiB → last 3 {late} MiB ({result['rss_growth_mib']:+} MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
