"""Riffusion CPU benchmark (short): spectrogram image → audio (riffusion v1 parameters, 512 × 512 image = 5.12 s)
and audio → image, wall and CPU time with the foreign load measured meanwhile; and the tiny fixture end to end
(10 s = 2 clips) through the backend. Full-size SD-1.5 UNet timings are not taken here (no weights, ~8 GB export).

    python scripts/bench_riffusion.py [--repeats 3] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

from scripts.benchlib import Watch, machine_info  # noqa: E402


def timed(fn) -> dict[str, float]:
    """Run fn; wall, own CPU, and the cores other processes kept busy meanwhile."""
    cpu0 = time.process_time()
    with Watch() as w:
        fn()
    cpu = time.process_time() - cpu0
    return {"wall_s": round(w.sec, 3), "cpu_s": round(cpu, 3), "foreign_cores": round(w.foreign_cores, 2)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from lofi_daemon.backends.riffusion import spectrogram as S

    S.WORKERS = args.threads
    results: dict[str, object] = {"threads": args.threads, "cores": os.cpu_count()}
    results["converter_setup"] = timed(S.converter)
    img = np.random.default_rng(0).integers(0, 256, size=(512, 512), dtype=np.uint8)
    results["image_to_audio"] = [timed(lambda: S.audio_from_image(img)) for _ in range(args.repeats)]
    audio = S.audio_from_image(img)
    results["audio_to_image"] = [timed(lambda: S.image_from_audio(audio)) for _ in range(args.repeats)]

    from lofi_daemon.backends.base import GenerationRequest
    from lofi_daemon.backends.riffusion.backend import RiffusionBackend
    from lofi_daemon.cancel import CancelToken
    from lofi_daemon.config import ModelSettings, Settings

    s = Settings(threads=args.threads)
    s.models["riffusion"] = ModelSettings(dir=ROOT / "tests" / "fixtures" / "riffusion-tiny")
    backend = RiffusionBackend(s)
    backend.load()
    req = GenerationRequest("riffusion", "lofi piano", 10.0, 1, backend.validate({"steps": 30}))
    info: dict = {}
    end_to_end = timed(lambda: info.update(backend.generate(req, lambda *a, **k: None, CancelToken()).info))
    results["tiny_10s_end_to_end"] = {**end_to_end, **info}
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["machine"] = machine_info()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
