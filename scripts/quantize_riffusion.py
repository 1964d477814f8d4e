"""Add an int8 UNet to an exported Riffusion directory (docs/model-formats.md, ## Riffusion).

    python scripts/quantize_riffusion.py ~/riffusion-onnx [--prompts 2] [--steps 8] [--out FILE]

Writes `unet/model_int8.onnx` (+ `unet/model_int8.onnx.data`) beside the fp32 UNet: ONNX Runtime's static QDQ
quantisation (int8 weights per output channel, uint8 activations) of the resnet blocks' convolutions and of the
matrix products (int8_nodes), which ONNX Runtime's CPU EP runs as integer kernels (VNNI on x86 with AVX-512 VNNI /
AVX-VNNI): about 2× less CPU per SD-1.5 step than fp32 (docs/benchmarks.md). The activation ranges are calibrated
on what the UNet really sees: its inputs along the fp32 pipeline's own sampling loop (classifier-free guidance,
DPM-Solver++) for a few prompts. The attention itself (MultiHeadAttention) stays fp32.
Select it with models.riffusion.variant = "int8". Its drift over a whole loop is measured in
tests/test_riffusion_variants.py and docs/benchmarks.md. Needs onnx and onnxruntime (no torch).
`lofi-daemon convert riffusion --int8` runs it (with --out in a temporary folder, then renames the file into place).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "daemon")]

INT8 = "model_int8.onnx"
# What runs in int8: the 3 × 3 convolutions inside the resnet blocks (most of the convolution work) and the matrix
# products left after the attention rewrite (the transformers' projections and feed-forward layers). The other
# convolutions stay fp32: the first and last, the 1 × 1 projections around the transformers, the shortcuts and the
# up/down samplers read tensors with a wider spread (concatenated skips, the residual stream, the raw latents);
# quantising them too tripled the tiny fixture's drift over a loop (4 % → 13 %, docs/benchmarks.md).
RESNET_CONV = re.compile(r"/resnets\.\d+/conv[12]/Conv$")
CALIBRATION_PROMPTS = (
    "lofi hip hop beat with dusty piano and vinyl crackle",
    "jazzy chill guitar loop, rainy night, soft drums",
    "ambient synth pad with warm bass and tape hiss",
    "funky drum break, upbeat saxophone solo",
)


def calibration_feeds(model_dir: Path, prompts: int = 2, steps: int = 8) -> list[dict[str, np.ndarray]]:
    """The UNet's inputs along the fp32 pipeline's sampling loop (CFG 7, DPM-Solver++) for `prompts` prompts,
    each from its own noise: `prompts` × `steps` feeds covering the schedule from noise to the image."""
    from lofi_daemon.backends.ace_step.sessions import session_factory
    from lofi_daemon.backends.riffusion.pipeline import RiffusionPipeline, Sampling

    pipe = RiffusionPipeline(model_dir, session_factory())
    unet = pipe.sessions["unet"]
    feeds: list[dict[str, np.ndarray]] = []

    class Recording:
        def run(self, names: Any, feed: dict[str, np.ndarray]) -> Any:
            feeds.append({k: np.array(v) for k, v in feed.items()})
            return unet.run(names, feed)

    pipe.sessions["unet"] = Recording()
    for i, prompt in enumerate(CALIBRATION_PROMPTS[:prompts]):
        ctx = pipe.embeddings(prompt, "", 7.0)
        noise = np.random.default_rng(i).standard_normal(
            pipe.latent_shape(*pipe.image_size), dtype=np.float32
        )
        pipe.sample(ctx, noise, Sampling(steps=steps))
    return feeds


def int8_nodes(src: Path) -> list[str]:
    """The names of the nodes to quantise in the UNet at `src` (see RESNET_CONV)."""
    import onnx

    graph = onnx.load(str(src), load_external_data=False).graph
    return [
        n.name
        for n in graph.node
        if (n.op_type == "Conv" and RESNET_CONV.search(n.name)) or n.op_type == "MatMul"
    ]


def quantize_unet(src: Path, dst: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """Static QDQ int8 of `int8_nodes(src)`, activation ranges (min/max) from `feeds`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["Conv", "MatMul"],
        nodes_to_quantize=int8_nodes(src),
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        use_external_data_format=src.with_name(src.name + "_data").is_file(),  # beside it, as the fp32 UNet
        extra_options={"WeightSymmetric": True},  # the augmented graph keeps per-tensor min/max only
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path, help="an exported Riffusion directory (unet/model.onnx)")
    ap.add_argument("--prompts", type=int, default=2, help="calibration prompts (default 2)")
    ap.add_argument("--steps", type=int, default=8, help="sampling steps per calibration prompt (default 8)")
    ap.add_argument(
        "--out", type=Path, help=f"where to write the int8 UNet (default: unet/{INT8} in model_dir)"
    )
    args = ap.parse_args(argv)
    src = args.model_dir / "unet" / "model.onnx"
    dst = args.out or src.with_name(INT8)
    feeds = calibration_feeds(args.model_dir, args.prompts, args.steps)
    quantize_unet(src, dst, feeds)
    print(f"wrote {dst} (calibrated on {len(feeds)} UNet inputs)")


if __name__ == "__main__":
    main()
