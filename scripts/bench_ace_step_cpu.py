"""ACE-Step on a CPU laptop: end-to-end time and peak RSS per stage of a 30 s track through the daemon's own backend
(memory plan, decoder precision, CPU preset), and the drift of whole sampling loops (int8 against fp32, the CPU
preset's steps against upstream's 60), projected from layer-reduced full-width decoders to the real 24 blocks.

    python scripts/bench_ace_step_cpu.py e2e   --model /work/bench-models/ace-step/full-4 [--variant int8] [--memory low]
    python scripts/bench_ace_step_cpu.py drift --model /work/bench-models/ace-step/full-4 [--steps 30 60]
    python scripts/bench_ace_step_cpu.py all   --models /work/bench-models/ace-step/full-1 /work/bench-models/ace-step/full-4

Model directories come from `scripts/export_ace_step.py --size full --random --layers N` (+ the tiny fixture's
tokenizers copied in) and `scripts/quantize_ace_step.py DIR --int8`. Each run is a separate process; every result
records the CPU other processes used meanwhile (`foreign_cores`) and the time of a fixed reference workload
(`reference_sec`: one 4-block fp32 evaluation when present, else a numpy matmul) measured in the same process, so
results from a shared, loaded machine can be compared with the quiet numbers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "daemon"))

from scripts.bench_ace_step import decoder_inputs  # noqa: E402
from scripts.benchlib import Watch, machine_info  # noqa: E402

BLOCKS_REAL = 24


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class StageRss:
    """Samples VmRSS every 20 ms and keeps the peak per named stage (the stage is whatever was set last)."""

    def __init__(self) -> None:
        self.stage = "start"
        self.peaks: dict[str, float] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def set(self, stage: str) -> None:
        self._sample()
        self.stage = stage
        self._sample()

    def _sample(self) -> None:
        r = rss_mb()
        self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), r)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self._sample()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._t.join()
        self._sample()
        return {k: round(v) for k, v in self.peaks.items()}


def reference_workload(model: Path) -> float:
    """Seconds for a fixed piece of work: a 4-block fp32 evaluation at 322 frames if that graph is at hand (its
    quiet time is in docs/benchmarks.md), else 20 float32 1024² matmuls."""
    import numpy as np

    ref = model.parent / "full-4" / "transformer_decoder.onnx"
    if ref.exists():
        from lofi_daemon.backends.ace_step.sessions import session_factory
        from lofi_daemon.config import Settings

        sess = session_factory(Settings(provider="cpu", threads=2))(str(ref), None)
        names = {i.name for i in sess.get_inputs()}
        feeds = {k: v for k, v in decoder_inputs(322).items() if k in names}
        sess.run(["sample"], feeds)
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            sess.run(["sample"], feeds)
            best = min(best, time.perf_counter() - t)
        return best
    a = np.random.default_rng(0).standard_normal((1024, 1024), dtype=np.float32)
    t = time.perf_counter()
    for _ in range(20):
        a @ a
    return time.perf_counter() - t


def run_e2e(a) -> dict:
    """One 30 s generation through AceStepBackend (fresh process: load + conditions + loop + decode)."""
    import numpy as np

    os.environ["LOFI_ACE_STEP_MEMORY"] = a.memory
    from lofi_daemon.backends.ace_step import pipeline as pl
    from lofi_daemon.backends.ace_step.backend import AceStepBackend
    from lofi_daemon.backends.base import GenerationRequest
    from lofi_daemon.cancel import CancelToken
    from lofi_daemon.config import ModelSettings, Settings

    settings = Settings(provider="cpu", threads=a.threads, cache_dir=Path("/tmp/lofi-bench-cache"))
    settings.models["ace_step"] = ModelSettings(dir=a.model, variant=a.variant)
    rss = StageRss()
    b = AceStepBackend(settings)
    eval_times: list[float] = []
    real_velocity = pl.Graphs.velocity

    def timed_velocity(self, *args, **kw):
        t = time.perf_counter()
        out = real_velocity(self, *args, **kw)
        eval_times.append(time.perf_counter() - t)
        return out

    pl.Graphs.velocity = timed_velocity
    progress: list[tuple[float, float, str]] = []
    t0 = time.perf_counter()
    with Watch() as w:
        rss.set("load")
        b.load()
        b.pipeline.graphs.on_open = rss.set
        raw = {} if a.steps is None else {"inference_steps": a.steps}
        req = GenerationRequest("ace_step", "rainy night lofi piano, vinyl crackle", 30.0, 7, b.validate(raw))
        out = b.generate(
            req,
            lambda d, t, **f: progress.append((time.perf_counter() - t0, d / t, f["stage"])),
            CancelToken(),
        )
    peaks = rss.stop()
    ref = reference_workload(a.model)
    timings = out.info["timings"]
    first_eval = (
        eval_times[0] if eval_times else float("nan")
    )  # includes nothing but the run (session opened)
    return {
        "model": str(a.model),
        "variant": out.info["decoder_variant"],
        "memory": out.info["memory"],
        "steps": out.info["steps"],
        "evaluations": len(eval_times),
        "wall_sec": w.sec,
        "timings": timings,
        "eval_median_sec": float(np.median(eval_times)),
        "eval_first_sec": first_eval,
        "peak_rss_mb_per_stage": peaks,
        "peak_rss_mb": max(peaks.values()),
        "progress_during_decode": sum(1 for _, _, s in progress if s == "decode"),
        "foreign_cores": w.foreign_cores,
        "reference_sec": ref,
        "samples": int(out.samples.shape[0]),
    }


def run_drift(a) -> dict:
    """Whole sampling loops on one model: the same conditions and noise, fp32 vs int8 decoder, and the CPU preset's
    steps vs 60 (fp32). Drift = RMS(Δ final latents) / RMS(fp32 final latents)."""
    import numpy as np
    from lofi_daemon.backends.ace_step.layout import DECODER_FILES, detect
    from lofi_daemon.backends.ace_step.pipeline import AceStepPipeline, SamplingParams, frame_count
    from lofi_daemon.backends.ace_step.sessions import session_factory
    from lofi_daemon.config import Settings

    layout = detect(a.model)
    factory = session_factory(Settings(provider="cpu", threads=a.threads))
    frames = frame_count(a.seconds)
    noise = np.random.default_rng(7).standard_normal((1, 8, 16, frames), dtype=np.float32)

    def rms(x):
        return float(np.sqrt(np.mean(np.asarray(x, np.float64) ** 2)))

    def pipe(dtype):
        files = {"transformer_decoder": layout.path(DECODER_FILES[dtype])}
        return AceStepPipeline(layout, factory, files=files, resident=False)

    res: dict = {"model": str(a.model), "frames": frames}
    with Watch() as w:
        base = pipe("fp32")
        p0 = SamplingParams(steps=max(a.steps))
        cond = base.conditions("rainy night lofi piano, vinyl crackle", "la la la\nrain on the window", p0)
        lat = {}
        for steps in a.steps:
            p = SamplingParams(steps=steps)
            lat[("fp32", steps)] = base.sample(cond, noise, p)
            if "int8" in layout.decoder_dtypes():
                lat[("int8", steps)] = pipe("int8").sample(cond, noise, p)
    for steps in a.steps:
        ref = lat[("fp32", steps)]
        if ("int8", steps) in lat:
            res[f"int8_vs_fp32_{steps}_steps"] = rms(lat[("int8", steps)] - ref) / rms(ref)
        if steps != max(a.steps):
            top = lat[("fp32", max(a.steps))]
            res[f"fp32_{steps}_vs_{max(a.steps)}_steps"] = rms(ref - top) / rms(top)
            if ("int8", steps) in lat:
                res[f"int8_{steps}_vs_fp32_{max(a.steps)}_steps"] = rms(lat[("int8", steps)] - top) / rms(top)
    res["wall_sec"] = w.sec
    res["foreign_cores"] = w.foreign_cores
    return res


def subprocess_json(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def blocks_of(model: Path) -> int:
    import onnx  # only to count the decoder's blocks from its graph

    g = onnx.load(str(model / "transformer_decoder.onnx"), load_external_data=False).graph
    found = (re.search(r"transformer_blocks\.(\d+)/", n.name) for n in g.node)
    return len({m.group(1) for m in found if m})


def project(lo: dict, hi: dict, b_lo: int, b_hi: int) -> dict:
    """Scale the per-block parts (evaluations, decoder session RSS) linearly to 24 blocks; the rest is as measured
    on the larger model."""

    def at24(x_lo: float, x_hi: float) -> float:
        return x_hi + (BLOCKS_REAL - b_hi) * (x_hi - x_lo) / (b_hi - b_lo)

    eval24 = at24(lo["eval_median_sec"], hi["eval_median_sec"])
    # the first evaluation also opens the decoder session (staged plan): its load time scales with the blocks too
    load_lo, load_hi = (r["eval_first_sec"] - r["eval_median_sec"] for r in (lo, hi))
    load24 = at24(load_lo, load_hi)
    diffusion_other = hi["timings"]["diffusion"] - hi["evaluations"] * hi["eval_median_sec"] - load_hi
    total = (
        hi["wall_sec"] - hi["timings"]["diffusion"] + diffusion_other + load24 + hi["evaluations"] * eval24
    )
    rss = dict(hi["peak_rss_mb_per_stage"])
    rss["transformer_decoder"] = at24(
        lo["peak_rss_mb_per_stage"]["transformer_decoder"], hi["peak_rss_mb_per_stage"]["transformer_decoder"]
    )
    return {
        "eval_sec_24": eval24,
        "decoder_load_sec_24": load24,
        "total_sec_24": total,
        "peak_rss_mb_24": max(rss.values()),
        "peak_rss_mb_per_stage_24": {k: round(v) for k, v in rss.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["e2e", "drift", "all"])
    ap.add_argument("--model", type=Path)
    ap.add_argument(
        "--models", type=Path, nargs=2, help="all: the smaller and the larger layer-reduced model"
    )
    ap.add_argument("--variant", default=None, help="decoder precision (default: the CPU default)")
    ap.add_argument("--memory", default="low", choices=["low", "high", "auto"])
    ap.add_argument("--steps", type=int, nargs="*", default=None)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    if a.what == "e2e":
        a.steps = a.steps[0] if a.steps else None
        print(json.dumps(run_e2e(a)))
        return
    if a.what == "drift":
        a.steps = a.steps or [30, 60]
        print(json.dumps(run_drift(a)))
        return
    lo, hi = a.models
    res: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}

    def keep(key: str, value) -> None:  # partial results survive an interrupted run
        res[key] = value
        if a.json:
            a.json.write_text(json.dumps(res, indent=1))

    for variant in ("int8", "drift", "fp32"):
        if variant == "drift":
            keep("drift", subprocess_json(["drift", "--model", str(hi), "--steps", "30", "60"]))
            continue
        runs = {}
        for m in (lo, hi):
            args = ["e2e", "--model", str(m), "--variant", variant, "--memory", a.memory]
            runs[m.name] = subprocess_json(args)
            keep(f"e2e_{variant}", runs)
        keep(f"projection_{variant}", project(runs[lo.name], runs[hi.name], blocks_of(lo), blocks_of(hi)))
    res["machine"] = machine_info()
    out = json.dumps(res, indent=1)
    print(out)
    if a.json:
        a.json.write_text(out)


if __name__ == "__main__":
    main()
