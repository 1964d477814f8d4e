"""Add an int8 UNet to an exported Riffusion directory (docs/model-formats.md, ## Riffusion).

    python scripts/quantize_riffusion.py ~/riffusion-onnx

Writes `unet/model_int8.onnx` (+ `unet/model_int8_weights.bin`) beside the fp32 UNet: onnxruntime's dynamic
quantisation of the MatMul/Gemm weights (QInt8; the attention and feed-forward layers, where most of the UNet's
weights outside its convolutions are). Select it with models.riffusion.variant = "int8".
The loop drift is measured in tests/test_riffusion_variants.py and docs/benchmarks.md. Needs onnx and onnxruntime.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# the same dynamic quantisation and external-data layout as ACE-Step's int8 decoder
from scripts.quantize_ace_step import quantize_int8 as quantize_unet  # noqa: E402

INT8 = "model_int8.onnx"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path, help="an exported Riffusion directory (unet/model.onnx)")
    args = ap.parse_args(argv)
    src = args.model_dir / "unet" / "model.onnx"
    quantize_unet(src, src.with_name(INT8))
    print(f"wrote {src.with_name(INT8)}")


if __name__ == "__main__":
    main()
