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
