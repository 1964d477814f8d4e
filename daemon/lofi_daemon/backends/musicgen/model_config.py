"""The few numbers the pipeline needs from a MusicGen `config.json` / `generation_config.json`.

Configs written by recent transformers omit default values (e.g. no `decoder.pad_token_id` in a musicgen-small
export), so every field falls back to musicgen-small's value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ...errors import ErrorCode, LofiError


@dataclass(frozen=True)
class MusicGenConfig:
    num_codebooks: int = 4
    codebook_size: int = 2048  # decoder vocab; the pad/start token is usually this value
    pad_token_id: int = 2048
    start_token_id: int = 2048
    sample_rate: int = 32000
    hop_length: int = 640  # audio samples per token frame (EnCodec upsampling ratios 8*5*4*4)
    audio_channels: int = 1

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @classmethod
    def from_files(cls, config_path: Path, generation_config_path: Path | None = None) -> MusicGenConfig:
        try:
            cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
            gen = {}
            if generation_config_path is not None and Path(generation_config_path).is_file():
                gen = json.loads(Path(generation_config_path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise LofiError(ErrorCode.MODEL_LOAD_FAILED, f"cannot read MusicGen config: {exc}") from exc
        dec = cfg.get("decoder", {})
        audio = cfg.get("audio_encoder", {})
        vocab = int(dec.get("vocab_size", 2048))

        def first(*values: object, default: int) -> int:
            for v in values:
                if v is not None:
                    return int(v)  # type: ignore[call-overload]
            return default

        pad = first(dec.get("pad_token_id"), cfg.get("pad_token_id"), gen.get("pad_token_id"), default=vocab)
        start = first(
            cfg.get("decoder_start_token_id"),
            gen.get("decoder_start_token_id"),
            dec.get("bos_token_id"),
            default=pad,
        )
        ratios = audio.get("upsampling_ratios") or [8, 5, 4, 4]
        channels = int(dec.get("audio_channels", 1))
        if channels != 1:
            raise LofiError(
                ErrorCode.MODEL_LOAD_FAILED,
                "stereo MusicGen checkpoints are not supported (mono models only)",
            )
        return cls(
            num_codebooks=int(dec.get("num_codebooks", 4)),
            codebook_size=vocab,
            pad_token_id=pad,
            start_token_id=start,
            sample_rate=int(audio.get("sampling_rate", 32000)),
            hop_length=int(math.prod(int(r) for r in ratios)),
            audio_channels=channels,
        )
