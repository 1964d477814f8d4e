"""Shared helpers for the MusicGen tests: the committed tiny random-weight model (scripts/build_musicgen.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from lofi_daemon.config import ModelSettings, Settings

FIXTURE = Path(__file__).parent / "fixtures" / "musicgen-tiny"
PROMPTS = ["80s pop track with bassy drums and synth", "rainy night jazz piano", "lofi"]


# The pipeline converts decoders once into <cache_dir>/converted (static_kv.py): never into the user's cache.
_CACHE = tempfile.TemporaryDirectory(prefix="lofi-test-cache-")


def cpu_settings(threads: int | None = 1) -> Settings:
    return Settings(cache_dir=Path(_CACHE.name), provider="cpu", threads=threads or 0)


def fixture_files(directory: Path = FIXTURE, merged: bool = True) -> dict[str, Path]:
    files = {
        "tokenizer": directory / "tokenizer.json",
        "config": directory / "config.json",
        "generation_config": directory / "generation_config.json",
        "text_encoder": directory / "text_encoder.onnx",
        "encodec_decode": directory / "encodec_decode.onnx",
    }
    if merged:
        files["decoder_merged"] = directory / "decoder_model_merged.onnx"
    else:
        files["decoder"] = directory / "decoder_model.onnx"
        files["decoder_with_past"] = directory / "decoder_with_past_model.onnx"
    return files


def tiny_settings(tmp_path: Path, directory: Path = FIXTURE, variant: str | None = None) -> Settings:
    s = Settings(cache_dir=tmp_path / "cache", log_dir=tmp_path / "log", provider="cpu", threads=1)
    s.models["musicgen"] = ModelSettings(dir=directory, variant=variant)
    return s
