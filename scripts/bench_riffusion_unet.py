"""Full-size Riffusion UNet on the CPU: one classifier-free-guidance step (batch 2, 64 × 64 latents, 77 × 768 text)
of an SD-1.5-shaped UNet with random weights (speed does not depend on weight values; riffusion v1 is SD-1.5), in
the same run:

* `old_fp32`  — the export as optimum writes it, opened as the daemon did before (ORT basic optimisation);
* `fp32`      — the converter's rewrite (backends/riffusion/unet_graph.py: MultiHeadAttention) opened as the daemon
                opens the UNet now (ORT's full optimisation: NCHWc convolutions);
* `int8`      — scripts/quantize_riffusion.py's static int8 (resnet convolutions, matrix products) on that graph
                (the `int8` variant;
                calibrated here on one random input: its speed does not depend on the ranges, its drift is
                measured on the tiny fixture in tests/test_riffusion_variants.py);
* `torch_fp32` — diffusers' PyTorch UNet on the same weights.

Each round runs one step of every variant in turn (a session is opened, warmed up, timed, closed: they do not all
fit in memory at once), so the neighbours' load hits all of them alike; own CPU time, wall time and the foreign
load (benchlib.Watch) are recorded with machine facts. Needs the `export` extra and ≈ 12 GB of RAM.

    python scripts/bench_riffusion_unet.py --work /tmp/riff-unet [--rounds 2] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

from scripts.benchlib import Watch, machine_info, peak_rss_mib  # noqa: E402

VARIANTS = ("old_fp32", "fp32", "int8", "torch_fp32")


def feed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "sample": rng.standard_normal((2, 4, 64, 64), dtype=np.float32),
        "timestep": np.asarray(500.0, dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((2, 77, 768), dtype=np.float32),
    }


def build(work: Path) -> dict[str, Path]:
    """The three ONNX files (made once into `work`) and the PyTorch weights."""
    import torch
    from diffusers import UNet2DConditionModel
    from lofi_daemon.backends.riffusion import unet_graph

    from scripts.quantize_riffusion import INT8, quantize_unet

    old, new = work / "unet" / "model.onnx", work / "unet_cpu" / "model.onnx"
    weights = work / "unet.pt"
    if not old.is_file() or not weights.is_file():
        torch.manual_seed(0)
        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768).eval()  # SD-1.x shapes
        old.parent.mkdir(parents=True, exist_ok=True)
        torch.save(unet.state_dict(), weights)

        class Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, sample, timestep, encoder_hidden_states):
                return self.m(sample, timestep, encoder_hidden_states, return_dict=False)[0]

        f = {k: torch.from_numpy(v) for k, v in feed().items()}
        dims = {0: "batch_size", 2: "height", 3: "width"}  # optimum's text-to-image UNet axes
        with torch.no_grad():
            torch.onnx.export(
                Wrapped(unet),
                (f["sample"], f["timestep"], f["encoder_hidden_states"]),
                str(old),
                input_names=["sample", "timestep", "encoder_hidden_states"],
                output_names=["out_sample"],
                dynamic_axes={
                    "sample": dims,
                    "encoder_hidden_states": {0: "batch_size", 1: "sequence_length"},
                    "out_sample": dims,
                },
                opset_version=18,
                dynamo=False,
            )
    if not new.is_file():
        new.parent.mkdir(parents=True, exist_ok=True)
        unet_graph.rewrite_file(old, new)
    int8 = new.with_name(INT8)
    if not int8.is_file():
        quantize_unet(new, int8, [feed()])
    return {"old_fp32": old, "fp32": new, "int8": int8, "weights": weights}


def step_runner(name: str, files: dict[str, Path], threads: int) -> tuple[Callable[[], np.ndarray], float]:
    """(one step, load seconds) for a variant."""
    t0 = time.perf_counter()
    f = feed()
    if name == "torch_fp32":
        import torch
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768).eval()
        unet.load_state_dict(torch.load(files["weights"]))
        t = [torch.from_numpy(f[k]) for k in ("sample", "timestep", "encoder_hidden_states")]

        def run_torch() -> np.ndarray:
            with torch.no_grad():
                return unet(*t, return_dict=False)[0].numpy()

        return run_torch, time.perf_counter() - t0
    import onnxruntime as ort
    from lofi_daemon.config import Settings
    from lofi_daemon.runtime.providers import plan_providers
    from lofi_daemon.runtime.sessions import open_session

    level = None if name == "old_fp32" else ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # the daemon's choices
    settings = Settings(threads=threads)
    sess = open_session(files[name], settings, plan_providers("cpu"), optimization=level)
    return (lambda: sess.run(None, f)[0]), time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    files = build(args.work)
    results: dict[str, object] = {"threads": args.threads, "rounds": args.rounds}
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    outs: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name in VARIANTS:
            step, load_s = step_runner(name, files, args.threads)
            outs[name] = step()  # warm-up (first-run allocations)
            cpu0 = time.process_time()
            with Watch() as w:
                step()
            runs[name].append(
                {
                    "wall_s": round(w.sec, 3),
                    "cpu_s": round(time.process_time() - cpu0, 3),
                    "foreign_cores": round(w.foreign_cores, 2),
                    "load_s": round(load_s, 2),
                }
            )
            del step
            gc.collect()
    ref = outs["torch_fp32"]

    def rel(a: np.ndarray) -> float:
        return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))

    results["runs"] = runs
    results["rel_err_vs_torch"] = {k: rel(v) for k, v in outs.items() if k != "torch_fp32"}
    results["peak_rss_mib"] = round(peak_rss_mib(), 1)
    results["machine"] = machine_info()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    # on a shared machine the wall time carries the neighbours' load (foreign_cores); own CPU compares too
    wall = {k: min(r["wall_s"] for r in runs[k]) for k in VARIANTS}
    cpu = {k: min(r["cpu_s"] for r in runs[k]) for k in VARIANTS}
    print(
        "\n| one CFG step (batch 2, 64 × 64) | best wall | best own CPU | wall vs PyTorch | CPU vs PyTorch |",
        file=sys.stderr,
    )
    print("|---|---|---|---|---|", file=sys.stderr)
    for k in VARIANTS:
        print(
            f"| {k} | {wall[k]:.2f} s | {cpu[k]:.2f} s | {wall['torch_fp32'] / wall[k]:.2f}× "
            f"| {cpu['torch_fp32'] / cpu[k]:.2f}× |",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
