"""Weight-only quantized MusicGen decoders with onnxruntime.quantization.

    python scripts/quantize_musicgen.py MODEL_DIR [--kinds int8 q4] [--decoder decoder_model_merged.onnx]

Writes, next to the fp32 decoder, files named like the Xenova hub variants so a local directory with them is
picked up by the daemon's variant choice:
    int8  decoder_model_merged_quantized.onnx  quantize_dynamic, QInt8 weights, MatMul/Gemm, inside If subgraphs
    q4    decoder_model_merged_q4.onnx         MatMulNBits, 4-bit symmetric blocks of 32, accuracy_level 4
    fp16  decoder_model_merged_fp16.onnx       float16 weights and I/O (for GPUs; slow on CPU)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SUFFIX = {"int8": "_quantized", "q4": "_q4", "fp16": "_fp16"}


def quantize(src: Path, dst: Path, kind: str) -> None:
    if kind == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(
            src,
            dst,
            weight_type=QuantType.QInt8,
            per_channel=False,
            op_types_to_quantize=["MatMul", "Gemm"],
            extra_options={"EnableSubgraph": True},
        )
    elif kind == "q4":
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        model = onnx.load(str(src))
        cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=True, accuracy_level=4)
        q = MatMulNBitsQuantizer(model, algo_config=cfg)
        q.process()
        onnx.save_model(q.model.model, str(dst))
    elif kind == "fp16":
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = onnx.load(str(src))
        onnx.save_model(convert_float_to_float16(model, keep_io_types=False), str(dst))
    else:
        raise SystemExit(f"unknown kind {kind}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--kinds", nargs="+", default=["int8", "q4"], choices=sorted(SUFFIX))
    ap.add_argument("--decoder", default="decoder_model_merged.onnx")
    args = ap.parse_args()
    src = args.model_dir / args.decoder
    results = {}
    for kind in args.kinds:
        dst = src.with_name(src.stem + SUFFIX[kind] + src.suffix)
        t0 = time.time()
        quantize(src, dst, kind)
        results[kind] = {"file": dst.name, "bytes": dst.stat().st_size, "seconds": round(time.time() - t0, 1)}
        print(json.dumps({kind: results[kind]}), flush=True)
    print(json.dumps({"source_bytes": src.stat().st_size, "variants": results}, indent=1))


if __name__ == "__main__":
    main()
