"""What `loop=` and `bpm=` cost after generation (backends/shaping.py): tempo estimate, WSOLA stretch and loop
search on a MusicGen-sized (30 s, 32 kHz mono) and an ACE-Step-sized (60 s, 48 kHz stereo) track of drum-like
bursts at 90 BPM. Reference in the same run: one FFT of the whole track (numpy), and the track's own duration
(the real-time factor is wall / duration).

    python scripts/bench_shaping.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

from scripts.benchlib import Watch, machine_info  # noqa: E402

BPM = 90.0


def drums(seconds: float, rate: int, channels: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    burst = rng.standard_normal(int(0.06 * rate)) * np.exp(-np.arange(int(0.06 * rate)) / (0.012 * rate))
    out = 0.05 * np.sin(2 * np.pi * 55.0 * np.arange(n) / rate)
    beat = 60.0 / BPM * rate
    for k in range(int(n / beat)):
        at = int(round(k * beat))
        piece = burst[: n - at] * (0.8 if k % 4 == 0 else 0.4)
        out[at : at + len(piece)] += piece
    return np.repeat(out[:, None], channels, axis=1).astype(np.float32)


def best_of(fn, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        with Watch() as w:
            fn()
        runs.append((w.sec, w.foreign_cores))
    sec, foreign = min(runs)
    return {"wall_s": round(sec, 4), "foreign_cores": round(foreign, 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from lofi_daemon.audio import seam, tempo

    results: dict[str, object] = {}
    for name, seconds, rate, channels in (
        ("musicgen_30s_32k_mono", 30, 32000, 1),
        ("ace_60s_48k_stereo", 60, 48000, 2),
    ):
        x = drums(seconds + 4, rate, channels)
        bar = 4 * 60 / BPM * rate
        length = seconds * rate
        row = {
            "reference_fft": best_of(partial(np.fft.rfft, x[:, 0]), args.repeats),
            "tempo_estimate": best_of(partial(tempo.estimate, x, rate, BPM), args.repeats),
            "stretch_3pct": best_of(partial(tempo.stretch, x, rate, 0.97), args.repeats),
            "loop_bars": best_of(partial(seam.find_loop, x, rate, length, bar=bar), args.repeats),
            "loop_free": best_of(partial(seam.find_loop, x, rate, length), args.repeats),
        }
        for key in ("tempo_estimate", "stretch_3pct", "loop_bars", "loop_free"):
            row[key]["real_time_factor"] = round(row[key]["wall_s"] / seconds, 5)
        results[name] = row
    results["machine"] = machine_info()
    text = json.dumps(results, indent=2)
    print(text)
    print(f"\n{'track':24} {'step':16} {'wall s':>8} {'×RT':>8} {'× FFT':>8}")
    for name, row in results.items():
        if name == "machine":
            continue
        assert isinstance(row, dict)
        ref = row["reference_fft"]["wall_s"]
        for key, value in row.items():
            if key != "reference_fft":
                rtf = value["real_time_factor"]
                print(f"{name:24} {key:16} {value['wall_s']:8.3f} {rtf:8.4f} {value['wall_s'] / ref:8.0f}")
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
