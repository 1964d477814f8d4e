"""Riffusion CPU benchmark (short): spectrogram image → audio (riffusion v1 parameters, 512 × 512 image = 5.12 s),
the product's Griffin–Lim on the 22 kHz grid against the full-rate iteration in the same run (time, difference,
spectral convergence), the same code with scipy.fft instead of ducc0's FFTs, and optionally the converter of an
earlier git revision (`--before REV`, read with `git show`, for a before/after in one run); audio → image; wall and
CPU time with the foreign load measured meanwhile; and the tiny fixture end to end (10 s = 2 clips) through the
backend. Full-size SD-1.5 UNet timings are not taken here (no weights, ~8 GB export).

    python scripts/bench_riffusion.py [--repeats 3] [--threads 2] [--before REV] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

from scripts.benchlib import Watch, machine_info, wait_quiet  # noqa: E402

QUIET_WAIT = 30.0  # seconds to wait for other processes to calm down before each round


def timed(fn) -> dict[str, float]:
    """Run fn; wall, own CPU, and the cores other processes kept busy meanwhile."""
    cpu0 = time.process_time()
    with Watch() as w:
        fn()
    cpu = time.process_time() - cpu0
    return {"wall_s": round(w.sec, 3), "cpu_s": round(cpu, 3), "foreign_cores": round(w.foreign_cores, 2)}


def converter_at(rev: str) -> ModuleType:
    """spectrogram.py as it was at git revision `rev`, imported as its own module (the old path lives only here)."""
    rel = "daemon/lofi_daemon/backends/riffusion/spectrogram.py"
    text = subprocess.run(
        ["git", "show", f"{rev}:{rel}"], cwd=ROOT, check=True, capture_output=True, text=True
    )
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(text.stdout)
    spec = importlib.util.spec_from_file_location(f"spectrogram_{rev}", f.name)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    os.unlink(f.name)
    return module


def with_scipy_fft(S: ModuleType, fn: Callable[[], object]) -> Callable[[], object]:
    """fn run with scipy.fft (pocketfft) doing the converter's FFTs instead of ducc0: what the dependency buys."""
    import scipy.fft

    def run() -> object:
        kept = S.rfft, S.irfft
        S.rfft = lambda frames, out: scipy.fft.rfft(frames, axis=-1)
        S.irfft = lambda spectra, n, out: scipy.fft.irfft(spectra, n=n, axis=-1)
        try:
            return fn()
        finally:
            S.rfft, S.irfft = kept

    return run


def tiny_end_to_end(threads: int) -> dict:
    """The tiny fixture's 10 s track (2 clips) through the backend: the pipeline's overhead, not a real UNet's."""
    from lofi_daemon.backends.base import GenerationRequest
    from lofi_daemon.backends.riffusion.backend import RiffusionBackend
    from lofi_daemon.cancel import CancelToken
    from lofi_daemon.config import ModelSettings, Settings

    s = Settings(threads=threads)
    s.models["riffusion"] = ModelSettings(dir=ROOT / "tests" / "fixtures" / "riffusion-tiny")
    backend = RiffusionBackend(s)
    backend.load()
    req = GenerationRequest("riffusion", "lofi piano", 10.0, 1, backend.validate({"steps": 30}))
    info: dict = {}
    end_to_end = timed(lambda: info.update(backend.generate(req, lambda *a, **k: None, CancelToken()).info))
    return {**end_to_end, **info}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--before", help="also time image → audio with spectrogram.py at this git revision")
    ap.add_argument("--no-end-to-end", action="store_true", help="skip the tiny fixture's 10 s track")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from lofi_daemon.backends.riffusion import spectrogram as S

    S.THREADS = args.threads
    results: dict[str, object] = {"threads": args.threads, "cores": os.cpu_count()}
    results["converter_setup"] = timed(S.converter)
    conv = S.converter()
    img = np.random.default_rng(0).integers(0, 256, size=(512, 512), dtype=np.uint8)
    mag = conv.linear_from_mel(S.mel_from_image(img))
    full = S.RIFFUSION_V1.sample_rate
    # the product (22 kHz grid, full-rate edges), the same with scipy.fft, the full-rate iteration riffusion runs
    # and optionally an earlier revision, in turns (each turn after waiting for a quiet machine): same conditions
    variants: dict[str, Callable[[], object]] = {
        "image_to_audio": lambda: S.audio_from_image(img),
        "image_to_audio_scipy_fft": with_scipy_fft(S, lambda: S.audio_from_image(img)),
        "image_to_audio_full_rate": lambda: conv.griffin_lim(
            conv.linear_from_mel(S.mel_from_image(img)), rate=full
        ),
    }
    if args.before:
        old = converter_at(args.before)
        old.THREADS = args.threads
        old.converter()
        want, got = S.audio_from_image(img), old.audio_from_image(img)
        results["before"] = {
            "rev": args.before,
            "rel_diff_to_product": float(np.linalg.norm(got - want) / np.linalg.norm(want)),
        }
        variants["image_to_audio_before"] = lambda: old.audio_from_image(img)
    runs: dict[str, list[dict[str, float]]] = {key: [] for key in variants}
    waits = []
    for _ in range(args.repeats):
        waits.append(round(wait_quiet(QUIET_WAIT)[0], 1))
        for key, fn in variants.items():
            runs[key].append(timed(fn))
    results.update(runs, waited_for_quiet_s=waits)
    grid_out, full_out = conv.griffin_lim(mag), conv.griffin_lim(mag, rate=full)

    def convergence(y: np.ndarray) -> float:
        return float(np.linalg.norm(np.abs(conv.stft(y)) - mag) / np.linalg.norm(mag))

    results["grid_vs_full_rate"] = {
        "rel_diff": float(np.linalg.norm(grid_out - full_out) / np.linalg.norm(full_out)),
        "spectral_convergence_grid": round(convergence(grid_out), 6),
        "spectral_convergence_full_rate": round(convergence(full_out), 6),
    }
    audio = S.audio_from_image(img)
    results["audio_to_image"] = [timed(lambda: S.image_from_audio(audio)) for _ in range(args.repeats)]

    if not args.no_end_to_end:
        results["tiny_10s_end_to_end"] = tiny_end_to_end(args.threads)
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["machine"] = machine_info()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    print_table(results)


def print_table(r: dict) -> None:
    def span(runs: list[dict], key: str) -> str:
        lo, hi = min(x[key] for x in runs), max(x[key] for x in runs)
        return f"{lo:.2f}–{hi:.2f} s"

    print("\n| phase | wall | own CPU | foreign cores |", file=sys.stderr)
    print("|---|---|---|---|", file=sys.stderr)
    rows = [
        ("image_to_audio", "image → audio, 22 kHz grid (product)"),
        ("image_to_audio_scipy_fft", "image → audio, the same with scipy.fft"),
        ("image_to_audio_full_rate", "image → audio, full rate (riffusion's iteration)"),
        ("image_to_audio_before", f"image → audio at {r.get('before', {}).get('rev')}"),
        ("audio_to_image", "audio → image"),
    ]
    for key, label in rows:
        if key not in r:
            continue
        runs = r[key]
        foreign = max(x["foreign_cores"] for x in runs)
        print(
            f"| {label} | {span(runs, 'wall_s')} | {span(runs, 'cpu_s')} | ≤ {foreign:.2f} |", file=sys.stderr
        )
    g = r["grid_vs_full_rate"]
    print(
        f"\ngrid vs full rate: relative difference {g['rel_diff']:.1e}; spectral convergence "
        f"{g['spectral_convergence_grid']} vs {g['spectral_convergence_full_rate']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
