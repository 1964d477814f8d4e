"""Add an int8 UNet to an exported Riffusion directory (docs/model-formats.md, ## Riffusion).

    python scripts/quantize_riffusion.py ~/riffusion-onnx

Writes `unet/model_int8.onnx` (+ `unet/model_int8_weights.bin`) beside the fp32 UNet: onnxruntime's dynamic
quantisation of the MatMul/Gemm weights (QInt8; the attention and feed-forward layers, where most of the UNet's
weights outside its convolutions are). Select it with models.riffusion.variant = "int8".
The loop drift is measured in tests/test_riffusion_variants.py and docs/benchmarks.md. Needs onnx and onnxruntime.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnx

INT8 = "model_int8.onnx"


def quantize_unet(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        q = Path(tmp) / "unet_int8.onnx"
        quantize_dynamic(
            str(src),
            str(q),
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            use_external_data_format=True,
        )
        data = dst.with_name(dst.stem + "_weights.bin")
        for p in (dst, data):
            p.unlink(missing_ok=True)
        onnx.save(
            onnx.load(str(q)),
            str(dst),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data.name,
            size_threshold=1024,
        )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path, help="an exported Riffusion directory (unet/model.onnx)")
    args = ap.parse_args(argv)
    src = args.model_dir / "unet" / "model.onnx"
    quantize_unet(src, src.with_name(INT8))
    print(f"wrote {src.with_name(INT8)}")


if __name__ == "__main__":
    main()
