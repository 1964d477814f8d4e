"""Which files make an ACE-Step model directory, and which of the two layouts it is.

* `lofi` (ours, scripts/export_ace_step.py): `ace_step.json` + five graphs with ERG q-scale inputs, per-sample
  timestep, dynamic-length DCAE with de-normalisation inside, vocoder taking both stereo channels as a batch,
  `lora_name_map.json`, `tokenizer.json`, `lyric_tokenizer.json`.
* `reference` (hub `willibrandon/lofi-models`, `ace-step/`): the same five graph names without `ace_step.json`;
  fixed 128-frame DCAE, mono vocoder input, scalar timestep, no ERG inputs, no lyric tokenizer, no LoRA map.
  It runs at lower fidelity (docs/model-formats.md lists exactly what is lost).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRAPHS = (
    "text_encoder.onnx",
    "transformer_encoder.onnx",
    "transformer_decoder.onnx",
    "dcae_decoder.onnx",
    "vocoder.onnx",
)
LOFI_FILES = (
    *GRAPHS,
    "transformer_encoder_weights.bin",
    "transformer_decoder_weights.bin",
    "tokenizer.json",
    "ace_step.json",
    "lora_name_map.json",
)
LOFI_OPTIONAL = ("lyric_tokenizer.json",)
REFERENCE_FILES = (*GRAPHS, "transformer_decoder_weights.bin", "tokenizer.json")

# Transformer decoder precisions: the same graph under another name in the model directory, written by
# scripts/quantize_ace_step.py (external data beside it as `<stem>_weights.bin`). The other four graphs are
# always the fp32 ones (together 2 GB; the decoder is 10 GB of the 12).
DECODER_FILES = {
    "fp32": "transformer_decoder.onnx",
    "int8": "transformer_decoder_int8.onnx",
    "fp16": "transformer_decoder_fp16.onnx",
}
# Best first when the user did not ask: int8 on the CPU (docs/benchmarks.md: ≈ 2.3× faster, loop drift bounded),
# fp16 on GPUs; fp16 never by default on a CPU (no fast fp16 GEMM there).
CPU_ORDER = ("int8", "fp32")
GPU_ORDER = ("fp16", "fp32", "int8")
DTYPE_ALIASES = {"int8": "int8", "i8": "int8", "quantized": "int8", "fp32": "fp32", "fp16": "fp16"}

# What the reference export is assumed to contain (read from its graphs; its export script is unpublished).
REFERENCE_CONFIG: dict[str, Any] = {
    "format": "lofi.nvim-reference",
    "sample_rate": 44100,
    "text_max_length": 256,
    "speaker_dim": 512,
    "lyric_start_id": 261,
    "lyric_line_end_id": 2,
    "dcae_fixed_frames": 128,
}


@dataclass
class ModelLayout:
    kind: str  # "lofi" | "reference"
    dir: Path
    config: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def files(self) -> list[Path]:
        names = LOFI_FILES + LOFI_OPTIONAL if self.kind == "lofi" else REFERENCE_FILES
        return [self.dir / n for n in names if (self.dir / n).exists()]

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.files)

    def decoder_dtypes(self) -> list[str]:
        """Decoder precisions present in this directory."""
        return [d for d, name in DECODER_FILES.items() if (self.dir / name).exists()]


def choose_decoder(layout: ModelLayout, requested: str | None, provider: str) -> str | None:
    """The decoder precision to run: the requested one when present, else the provider's order. None when the
    requested precision is missing (the caller says how to make it)."""
    present = layout.decoder_dtypes()
    if requested:
        return requested if requested in present else None
    order = CPU_ORDER if provider == "cpu" else GPU_ORDER
    return next((d for d in order if d in present), "fp32")


def missing_files(directory: Path) -> list[str]:
    """The files `directory` lacks: for the reference layout when it holds some of those graphs but no
    ace_step.json, for the lofi layout otherwise (an empty directory, or a started lofi export)."""
    d = Path(directory)
    reference = not (d / "ace_step.json").exists() and any((d / n).exists() for n in REFERENCE_FILES)
    return [n for n in (REFERENCE_FILES if reference else LOFI_FILES) if not (d / n).exists()]


def detect(directory: Path) -> ModelLayout | None:
    """The layout of `directory`, or None when it holds neither complete set of files."""
    d = Path(directory)
    if all((d / n).exists() for n in LOFI_FILES):
        return ModelLayout("lofi", d, json.loads((d / "ace_step.json").read_text()))
    if all((d / n).exists() for n in REFERENCE_FILES):
        return ModelLayout("reference", d, dict(REFERENCE_CONFIG))
    return None
