"""Where a MusicGen decoder step spends its time: ONNX Runtime's per-node profile of the in-place KV decoder
(static_kv.py) at a short and a long cache, grouped into weights, attention and glue, plus the non-step costs of a
10 s run (text encoder, cross K/V, first prefill, EnCodec).

    python scripts/profile_musicgen.py /work/bench-models/musicgen-small --variant int8 --lengths 50 1400

The cache is filled with random values up to each length instead of being prefilled (attention costs the same
whatever the values; a 1400-position prefill would take minutes). Prints one JSON document and a table.
Not a test: nothing here asserts speed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "daemon"), str(REPO)]

from scripts.bench_musicgen import BEFORE, DECODERS, PROMPT, bench_settings  # noqa: E402
from scripts.benchlib import Watch, machine_info  # noqa: E402

# ops that stream the weights (and the dynamic quantisation of their inputs), ops of attention
WEIGHT_OPS = {
    "MatMulInteger",
    "DynamicQuantizeLinear",
    "MatMulNBits",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "Gemm",
}
ATTENTION_OPS = {"GroupQueryAttention", "Softmax", "MultiHeadAttention", "Attention"}


def group(op: str, node: str) -> str:
    if op in WEIGHT_OPS:
        return "weights"
    if op in ATTENTION_OPS or (op == "MatMul" and "encoder_attn" in node and "proj" not in node):
        return "attention"
    if op == "MatMul":
        return "weights"  # fp32 projections
    return "glue"


def profile_steps(
    static_path: Path, cross_path: Path, length: int, steps: int, threads: int, opt: str
) -> dict:
    import numpy as np
    import onnxruntime as ort
    from lofi_daemon.backends.musicgen.pipeline import _StaticDecoder
    from lofi_daemon.runtime.sessions import session_options

    settings = bench_settings(static_path.parent, threads)

    def session(path: Path, profile: bool) -> ort.InferenceSession:
        opts = session_options(settings)
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{opt.upper()}")
        if profile:
            opts.enable_profiling = True
            opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"lofi-mg-profile-{length}")
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    static = session(static_path, True)
    dec = _StaticDecoder(static, session(cross_path, False), capacity=length + steps + 8)
    rng = np.random.default_rng(0)
    width = next(int(i.shape[-1]) for i in dec.cross.get_inputs() if i.name == "encoder_hidden_states")
    hidden = rng.standard_normal((2, 12, width)).astype(np.float32)
    mask = np.ones((2, 12), dtype=np.int64)
    ids = rng.integers(0, 2048, (8, 1))
    dec(ids, hidden, mask)  # binds the buffers
    for buf in dec.buffers.values():
        buf[...] = rng.standard_normal(buf.shape).astype(np.float32)
    dec.length = length
    warm = 3
    times = []
    for _ in range(warm + steps):
        t = time.perf_counter()
        dec(ids, hidden, mask)
        times.append(time.perf_counter() - t)
        dec.length = length  # stay at this length: every profiled step sees the same cache
    prof = json.loads(Path(static.end_profiling()).read_text())
    runs = sorted((e["ts"], e["ts"] + e["dur"]) for e in prof if e.get("name") == "model_run")[-steps:]
    start = runs[0][0]
    by_op: dict[str, float] = defaultdict(float)
    by_group: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for e in prof:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or e["ts"] < start:
            continue
        op = e["args"]["op_name"]
        by_op[op] += e["dur"] / steps / 1000
        by_group[group(op, e["name"])] += e["dur"] / steps / 1000
        count[op] += 1
    run_ms = sum(b - a for a, b in runs) / len(runs) / 1000
    return {
        "length": length,
        "wall_ms_per_step": 1000 * float(np.median(times[warm:])),
        "run_ms_per_step": run_ms,
        "nodes_per_step": sum(count.values()) // steps,
        "by_group_ms": {k: round(v, 2) for k, v in sorted(by_group.items())},
        "by_op_ms": {k: round(v, 2) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])},
        "outside_kernels_ms": round(run_ms - sum(by_op.values()), 2),
    }


def non_step_costs(model_dir: Path, decoder: str, threads: int) -> dict:
    """A real 10 s run's costs outside the steps: text encoder, cross K/V (+ first prefill call), EnCodec."""
    import numpy as np
    from lofi_daemon.backends.musicgen.pipeline import MusicGenPipeline

    files = {
        "tokenizer": model_dir / "tokenizer.json",
        "config": model_dir / "config.json",
        "generation_config": model_dir / "generation_config.json",
        "text_encoder": model_dir / "text_encoder.onnx",
        "encodec_decode": model_dir / "encodec_decode.onnx",
        "decoder_merged": model_dir / decoder,
    }
    pipe = MusicGenPipeline(files, bench_settings(model_dir, threads))
    out = {}
    t = time.perf_counter()
    hidden, mask = pipe.encode_text(PROMPT)
    out["text_encoder_ms"] = 1000 * (time.perf_counter() - t)
    dec = pipe.decoder
    ids = np.full((8, 1), pipe.config.pad_token_id, dtype=np.int64)
    dec.reset()
    t = time.perf_counter()
    dec(ids, hidden, mask)
    out["cross_kv_and_first_call_ms"] = 1000 * (time.perf_counter() - t)
    t = time.perf_counter()
    dec(ids, hidden, mask)
    out["one_step_ms"] = 1000 * (time.perf_counter() - t)
    frames = np.random.default_rng(0).integers(0, pipe.config.codebook_size, (500, pipe.config.num_codebooks))
    pipe.decode(frames[:10])  # warm
    t = time.perf_counter()
    pipe.decode_track(frames)
    out["encodec_10s_ms"] = 1000 * (time.perf_counter() - t)
    dec.reset()
    prompt = np.random.default_rng(1).integers(0, 2048, (8, 601))
    t = time.perf_counter()
    dec(prompt, hidden, mask)
    out["prefill_600_positions_ms"] = 1000 * (time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--variant", default="int8", choices=sorted(DECODERS))
    ap.add_argument("--lengths", type=int, nargs="+", default=[50, 1400])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--opt", default="basic", choices=["basic", "extended", "all"])
    ap.add_argument("--no-extra", action="store_true", help="skip the non-step costs")
    args = ap.parse_args()
    from lofi_daemon.backends.musicgen import static_kv

    decoder = DECODERS[args.variant]
    static, cross = (
        BEFORE[args.variant](args.model_dir)
        if args.variant in BEFORE
        else static_kv.converted(
            {"decoder_merged": args.model_dir / decoder},
            bench_settings(args.model_dir, 0).cache_dir / "converted" / "musicgen",
        )
    )
    info = machine_info()
    with Watch() as w:
        rows = [profile_steps(static, cross, n, args.steps, args.threads, args.opt) for n in args.lengths]
        extra = {} if args.no_extra else non_step_costs(args.model_dir, decoder, args.threads)
    print(
        json.dumps(
            {
                "machine": info,
                "variant": args.variant,
                "opt": args.opt,
                "steps": rows,
                "extra": extra,
                "foreign_cpu_cores": round(w.foreign_cores, 2),
            },
            indent=1,
        )
    )
    print(f"\n{info['cpu']}; read {info['read_gb_per_s']} GB/s; foreign CPU {w.foreign_cores:.2f} cores\n")
    groups = sorted({g for r in rows for g in r["by_group_ms"]})
    print("| cache length | step wall | in kernels: " + " | ".join(groups) + " | outside kernels | nodes |")
    print("|---" * (len(groups) + 4) + "|")
    for r in rows:
        cells = " | ".join(f"{r['by_group_ms'].get(g, 0):.1f}" for g in groups)
        print(
            f"| {r['length']} | {r['wall_ms_per_step']:.1f} ms | {cells} | {r['outside_kernels_ms']:.1f} | "
            f"{r['nodes_per_step']} |"
        )
    for r in rows:
        top = ", ".join(f"{k} {v:.1f}" for k, v in list(r["by_op_ms"].items())[:8])
        print(f"\nL={r['length']}: {top}")
    if extra:
        print("\n" + ", ".join(f"{k} {v:.0f}" for k, v in extra.items()))


if __name__ == "__main__":
    main()
