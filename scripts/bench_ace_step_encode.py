"""ACE-Step encode path on the CPU: audio → DCAE latents (encode.py: numpy log-mel + dcae_encoder.onnx) at full
width, against the DCAE decoder on the same number of frames in the same run (the reference: the decode every
generation already pays). Per duration: seconds, peak RSS and its growth over the loaded session, and the CPU
other processes used meanwhile (contamination). Each measurement runs in its own process (clean peak RSS).

    python scripts/bench_ace_step_encode.py [--seconds 10 30] [--threads 2] [--json out.json]

Random weights with the real DCAE configuration (no checkpoint here); graphs go to /work/bench-models/ace-step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "daemon")]

from scripts.benchlib import Watch, machine_info, peak_rss_mib, wait_quiet  # noqa: E402

MODELS = Path(os.environ.get("LOFI_BENCH_MODELS", "/work/bench-models")) / "ace-step" / "dcae-full"
QUIET_WAIT = float(os.environ.get("BENCH_QUIET_WAIT", "60"))


def export() -> None:
    import torch

    from scripts.ace_step_torch import build
    from scripts.export_ace_step import export_dcae, export_dcae_encoder

    if (MODELS / "dcae_encoder.onnx").exists() and (MODELS / "dcae_decoder.onnx").exists():
        return
    MODELS.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    dcae = build.build_dcae(build.REAL["dcae"])
    export_dcae_encoder(dcae, MODELS)
    export_dcae(dcae, MODELS)


def phase(kind: str, seconds: float, threads: int) -> dict:
    import numpy as np
    import onnxruntime as ort
    from lofi_daemon.backends.ace_step.encode import encode_audio

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    name = "dcae_encoder.onnx" if kind == "encode" else "dcae_decoder.onnx"
    sess = ort.InferenceSession(str(MODELS / name), opts, providers=["CPUExecutionProvider"])
    loaded = peak_rss_mib()
    rng = np.random.default_rng(0)
    if kind == "encode":
        audio = (0.1 * rng.standard_normal((int(seconds * 48000), 2))).astype(np.float32)
        with Watch() as w:
            z = encode_audio(audio, 48000, sess)
        frames = z.shape[-1]
    else:
        frames = -(-int(seconds * 44100) // 4096)
        latents = rng.standard_normal((1, 8, 16, frames)).astype(np.float32)
        with Watch() as w:
            sess.run(None, {"latents": latents})
    peak = peak_rss_mib()
    return {
        "kind": kind,
        "seconds": seconds,
        "frames": frames,
        "sec": round(w.sec, 2),
        "foreign_cores": round(w.foreign_cores, 2),
        "loaded_rss_mib": round(loaded),
        "peak_rss_mib": round(peak),
        "activation_mib": round(peak - loaded),
    }


def run_phase(kind: str, seconds: float, threads: int) -> dict:
    waited, load = wait_quiet(QUIET_WAIT)
    print(f"· {kind} {seconds:g} s (waited {waited:.0f} s; other load {load:.2f} cores)", file=sys.stderr)
    args = [sys.executable, __file__, "--phase", kind, "--seconds", str(seconds), "--threads", str(threads)]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"phase {kind} failed:\n{out.stderr[-3000:]}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["load_before"] = round(load, 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=["export", "encode", "decode"])
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 30.0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.phase == "export":
        export()
        return
    if a.phase:
        print(json.dumps(phase(a.phase, a.seconds[0], a.threads)))
        return
    t0 = time.monotonic()
    # in its own process too: Linux keeps a process's peak RSS across fork and exec, so phases started from a
    # parent that built the 2 GB export would all report its peak
    subprocess.run([sys.executable, __file__, "--phase", "export"], check=True, cwd=ROOT)
    rows = [run_phase(kind, s, a.threads) for s in a.seconds for kind in ("encode", "decode")]
    report = {
        "machine": machine_info(),
        "threads": a.threads,
        "rows": rows,
        "wall_sec": time.monotonic() - t0,
    }
    print(json.dumps(report, indent=1))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    m = report["machine"]
    print(f"\n{m['cpu']} ({m.get('cores')} cores), {a.threads} threads", file=sys.stderr)
    print("| audio | stage | frames | time | peak RSS | above loaded | other load |", file=sys.stderr)
    print("|---|---|---|---|---|---|---|", file=sys.stderr)
    for r in rows:
        print(
            f"| {r['seconds']:g} s | {r['kind']} | {r['frames']} | {r['sec']:.1f} s | {r['peak_rss_mib']} MiB | "
            f"{r['activation_mib']} MiB | {r['foreign_cores']:.2f} cores |",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
