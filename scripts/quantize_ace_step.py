"""Add int8 and/or fp16 transformer decoders to an exported ACE-Step directory (docs/model-formats.md, ## ACE-Step).

    python scripts/quantize_ace_step.py ~/ace-step-onnx --int8 [--fp16]

* int8 (`transformer_decoder_int8.onnx`): onnxruntime's dynamic quantisation of the MatMul/Gemm weights (QInt8),
  the CPU default when present (docs/benchmarks.md: ≈ 2.3× faster, a quarter of the memory, the loop drift
  measured there).
* fp16 (`transformer_decoder_fp16.onnx`): weights and arithmetic in half precision, inputs and outputs fp32
  (onnxruntime.transformers.float16); the default on CUDA/CoreML when present, never on the CPU.

Each writes `<name>.onnx` + `<name>_weights.bin` beside the fp32 decoder. The full decoder needs about 25 GB of RAM
to quantise (the fp32 graph is loaded whole). Needs the `export` extra (onnx).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import onnx

SOURCE = "transformer_decoder.onnx"
TARGETS = {"int8": "transformer_decoder_int8.onnx", "fp16": "transformer_decoder_fp16.onnx"}


def _save(model: onnx.ModelProto, dst: Path) -> None:
    """One graph file plus one `<stem>_weights.bin` (replacing both: onnx appends to an existing data file)."""
    data = dst.with_name(dst.stem + "_weights.bin")
    for p in (dst, data):
        p.unlink(missing_ok=True)
    onnx.save(
        model,
        str(dst),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )


def quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        q = Path(tmp) / "decoder_int8.onnx"
        quantize_dynamic(
            str(src),
            str(q),
            op_types_to_quantize=["MatMul", "Gemm"],
            weight_type=QuantType.QInt8,
            use_external_data_format=True,
        )
        _save(onnx.load(str(q)), dst)


def convert_fp16(src: Path, dst: Path) -> None:
    from onnxruntime.transformers.float16 import convert_float_to_float16

    _save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), dst)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="an ACE-Step model directory (scripts/export_ace_step.py output)")
    ap.add_argument("--int8", action="store_true")
    ap.add_argument("--fp16", action="store_true")
    a = ap.parse_args(argv)
    src = a.dir / SOURCE
    if not src.exists():
        ap.error(f"{src} not found")
    if not (a.int8 or a.fp16):
        ap.error("choose --int8 and/or --fp16")
    if a.int8:
        quantize_int8(src, a.dir / TARGETS["int8"])
        print(f"wrote {a.dir / TARGETS['int8']}")
    if a.fp16:
        convert_fp16(src, a.dir / TARGETS["fp16"])
        print(f"wrote {a.dir / TARGETS['fp16']}")


if __name__ == "__main__":
    main()
