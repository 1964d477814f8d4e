"""Full-size Riffusion UNet on the CPU: one classifier-free-guidance step (batch 2, 64 × 64 latents, 77 × 768 text)
of an SD-1.5-shaped UNet with random weights (speed does not depend on weight values; riffusion v1 is SD-1.5), ONNX
Runtime fp32 and int8 (scripts/quantize_riffusion.py's dynamic quantisation) against diffusers' PyTorch in the same
run, with machine facts and the foreign load during each phase. Needs the `export` extra and ≈ 12 GB of RAM.

    python scripts/bench_riffusion_unet.py --work /tmp/riff-unet [--repeats 3] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "daemon"), str(ROOT)]

from scripts.benchlib import Watch, machine_info, peak_rss_mib  # noqa: E402


def timed(fn, repeats: int) -> list[dict[str, float]]:
    out = []
    for _ in range(repeats):
        cpu0 = time.process_time()
        with Watch() as w:
            fn()
        out.append(
            {
                "wall_s": round(w.sec, 3),
                "cpu_s": round(time.process_time() - cpu0, 3),
                "foreign_cores": round(w.foreign_cores, 2),
            }
        )
    return out


def build_and_export(work: Path) -> Path:
    import torch
    from diffusers import UNet2DConditionModel

    onnx_path = work / "unet" / "model.onnx"
    if onnx_path.is_file():
        return onnx_path
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768).eval()  # SD-1.x shapes
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    args = (torch.randn(2, 4, 64, 64), torch.tensor(500.0), torch.randn(2, 77, 768))

    class Wrapped(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, sample, timestep, encoder_hidden_states):
            return self.m(sample, timestep, encoder_hidden_states, return_dict=False)[0]

    with torch.no_grad():
        torch.onnx.export(
            Wrapped(unet),
            args,
            str(onnx_path),
            input_names=["sample", "timestep", "encoder_hidden_states"],
            output_names=["out_sample"],
            opset_version=17,
            dynamo=False,
        )
    torch.save(unet.state_dict(), work / "unet.pt")
    return onnx_path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch

    from scripts.quantize_riffusion import quantize_unet

    torch.set_num_threads(args.threads)
    onnx_path = build_and_export(args.work)
    int8_path = onnx_path.with_name("model_int8.onnx")
    if not int8_path.is_file():
        quantize_unet(onnx_path, int8_path)
    rng = np.random.default_rng(0)
    feed = {
        "sample": rng.standard_normal((2, 4, 64, 64), dtype=np.float32),
        "timestep": np.asarray(500.0, dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((2, 77, 768), dtype=np.float32),
    }
    results: dict[str, object] = {"threads": args.threads}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    outs = {}
    for name, path in (("ort_fp32", onnx_path), ("ort_int8", int8_path)):
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        outs[name] = sess.run(None, feed)[0]  # warm-up
        results[name] = timed(lambda s=sess: s.run(None, feed), args.repeats)
        del sess
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768).eval()
    unet.load_state_dict(torch.load(args.work / "unet.pt"))
    t_feed = [torch.from_numpy(feed[k]) for k in ("sample", "timestep", "encoder_hidden_states")]
    with torch.no_grad():
        ref = unet(*t_feed, return_dict=False)[0].numpy()
        results["torch_fp32"] = timed(lambda: unet(*t_feed, return_dict=False), args.repeats)

    def rel(a: np.ndarray) -> float:
        return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))

    results["rel_err_vs_torch"] = {k: rel(v) for k, v in outs.items()}
    results["peak_rss_mib"] = round(peak_rss_mib(), 1)
    results["machine"] = machine_info()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    # on a shared machine the wall time carries the neighbours' load (foreign_cores); own CPU compares
    keys = ("ort_fp32", "ort_int8", "torch_fp32")
    wall = {k: min(r["wall_s"] for r in results[k]) for k in keys}
    cpu = {k: min(r["cpu_s"] for r in results[k]) for k in keys}
    print(
        "\n| one CFG step (batch 2, 64 × 64) | best wall | best own CPU | CPU vs PyTorch |", file=sys.stderr
    )
    print("|---|---|---|---|", file=sys.stderr)
    for k in keys:
        print(
            f"| {k} | {wall[k]:.2f} s | {cpu[k]:.2f} s | {cpu['torch_fp32'] / cpu[k]:.2f}× |", file=sys.stderr
        )


if __name__ == "__main__":
    main()
