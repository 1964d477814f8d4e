"""Precomputed training features: what every epoch would otherwise recompute with frozen models.

One `features/<key>.safetensors` per sample (written atomically), holding
  latents     [8, 16, T]  DCAE latents of the audio (upstream `MusicDCAE.encode` scaling)
  text_states [L, D]      UMT5 last hidden states of the prompt, text_mask [L]
  lyric_ids   [N]         lyric token ids, lyric_mask [N] (instrumental: [0] / [0], the daemon's convention)
  speaker_emb [S]         the speaker embedding (zeros when the record has none)
and the prompt and lyrics as metadata. The trainer reads nothing else, so it never loads the text encoder or the
DCAE. The prompt is the record's tags joined by ", " (upstream's `{name}_prompt.txt` form), frozen per sample.
Latents come from the daemon's audio encoder (backends/ace_step/encode.py) or, for an upstream checkpoint folder,
the PyTorch reference of the same maths.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from .errors import ENVIRONMENT, FAILED_INPUT, LoraError

DIR = "features"
KEYS = ("latents", "text_states", "text_mask", "lyric_ids", "lyric_mask", "speaker_emb")
INSTRUMENTAL = "[instrumental]"


def save_sample(out_dir: Path, key: str, tensors: dict[str, np.ndarray], meta: dict[str, str]) -> Path:
    """Write one sample's features atomically (temporary file, then rename)."""
    from safetensors.numpy import save_file

    missing = set(KEYS) - tensors.keys()
    if missing:
        raise ValueError(f"{key}: missing features {sorted(missing)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{key}.safetensors"
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{key}.", suffix=".tmp")
    os.close(fd)
    try:
        arrays = {k: np.ascontiguousarray(tensors[k]) for k in KEYS}
        save_file(arrays, tmp, metadata={"key": key, **meta})
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return dst


def load_samples(features_dir: Path) -> list[dict]:
    """Every sample of a features folder as torch tensors (+ "key"), checked for the keys and consistent shapes."""
    from safetensors import safe_open

    files = sorted(Path(features_dir).glob("*.safetensors"))
    if not files:
        raise LoraError(
            f"no training features in {features_dir}: run `lofi-lora dataset` (it precomputes them)",
            FAILED_INPUT,
        )
    samples = []
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                keys = set(fh.keys())
                if not set(KEYS) <= keys:
                    raise ValueError(f"missing {sorted(set(KEYS) - keys)}")
                s = {k: fh.get_tensor(k) for k in KEYS}
                s["key"] = (fh.metadata() or {}).get("key", f.stem)
        except Exception as e:  # a truncated or foreign file: name it
            raise LoraError(f"{f} is not a features file: {e}", FAILED_INPUT) from e
        lat = s["latents"]
        if lat.ndim != 3 or lat.shape[:2] != (8, 16):
            raise LoraError(f"{f}: latents must be [8, 16, frames], not {list(lat.shape)}", FAILED_INPUT)
        if (
            s["text_states"].shape[0] != s["text_mask"].shape[0]
            or s["lyric_ids"].shape != s["lyric_mask"].shape
        ):
            raise LoraError(f"{f}: a mask does not match its states", FAILED_INPUT)
        samples.append(s)
    return samples


def prompt_of(record: dict) -> str:
    tags = record.get("tags") or []
    return ", ".join(tags) if isinstance(tags, list) else str(tags)


def lyrics_of(record: dict) -> str:
    lyrics = (record.get("norm_lyrics") or "").strip()
    return "" if lyrics.lower() == INSTRUMENTAL else lyrics


class TextFeatures:
    """Prompt → UMT5 states and lyrics → ids with the base model's tokenizers and text encoder."""

    def __init__(self, base: Path) -> None:
        from lofi_daemon.backends.ace_step.text import LyricTokenizer, PromptTokenizer

        from . import base as base_mod

        self.encoder = base_mod.load(base, ("text_encoder",))["text_encoder"]
        self.prompts = PromptTokenizer(base_mod.tokenizer_file(base))
        cfg_file = Path(base) / "ace_step.json"
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        self.lyrics = LyricTokenizer(
            Path(base) / "lyric_tokenizer.json",
            cfg.get("lyric_start_id", 261),
            cfg.get("lyric_line_end_id", 2),
        )

    def text(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        import torch

        ids, mask = self.prompts(prompt)
        with torch.no_grad():
            states = self.encoder(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        return states.last_hidden_state[0].numpy(), mask[0]

    def lyric(self, lyrics: str) -> tuple[np.ndarray, np.ndarray]:
        if lyrics and not self.lyrics.available:
            raise LoraError("the base model has no lyric tokenizer (lyric_tokenizer.json)", ENVIRONMENT)
        from lofi_daemon.errors import LofiError

        try:
            ids, mask = self.lyrics(lyrics)
        except LofiError as e:  # e.g. longer than the lyric encoder's position table
            raise LoraError(e.message, FAILED_INPUT) from e
        return ids[0], mask[0]


def speaker_of(record: dict, root: Path, dim: int) -> np.ndarray:
    path = record.get("speaker_emb_path") or ""
    if not path:  # upstream's convention: no speaker → zeros
        return np.zeros(dim, np.float32)
    p = Path(path) if Path(path).is_absolute() else Path(root) / path
    if p.suffix == ".npy":
        emb = np.load(p)
    else:
        import torch

        emb = torch.load(p, map_location="cpu", weights_only=True).numpy()
    emb = np.asarray(emb, np.float32).reshape(-1)
    if emb.shape != (dim,):
        raise LoraError(f"{p}: a speaker embedding has {dim} values, this one {emb.size}", FAILED_INPUT)
    return emb


def audio_encoder(base: Path) -> Callable[[np.ndarray, int], np.ndarray]:
    """audio ([samples, channels], any rate) → DCAE latents [1, 8, 16, T], as upstream's `MusicDCAE.encode`: the
    daemon's own path (encode.py with the base model's `dcae_encoder.onnx`) when the base has the graph, else the
    project's PyTorch reference on the base's DCAE (an upstream checkpoint folder)."""
    from lofi_daemon.backends.ace_step import encode as enc

    graph = Path(base) / enc.ENCODER_FILE
    if graph.is_file():
        import onnxruntime as ort

        session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        return lambda audio, sr: enc.encode_audio(audio, sr, session)

    import torch

    from scripts.ace_step_torch import reference

    from . import base as base_mod

    dcae = base_mod.load(base, ("dcae",))["dcae"]

    def encode(audio: np.ndarray, sr: int) -> np.ndarray:
        x = torch.from_numpy(enc.to_model_audio(audio, sr).astype(np.float32))
        return reference.audio_to_latents(dcae, x).numpy()

    return encode


def build(
    records: Iterable[dict],
    audio_root: Path,
    base: Path,
    out_dir: Path,
    encode: Callable[[np.ndarray, int], np.ndarray] | None = None,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> list[Path]:
    """Features for records in upstream's dataset format (keys, filename, tags, speaker_emb_path, norm_lyrics,
    recaption). `encode(audio [samples, channels], sample_rate) -> latents [8, 16, T]` (or [1, 8, 16, T]);
    by default `audio_encoder(base)`."""
    import soundfile as sf

    encode = encode or audio_encoder(base)
    text = TextFeatures(base)
    from . import base as base_mod

    dim = base_mod.load(base, ("transformer",))["transformer"].speaker_embedder.in_features
    written = []
    for rec in progress(list(records)):
        key = str(rec["keys"])
        audio, sr = sf.read(str(Path(audio_root) / rec["filename"]), dtype="float32", always_2d=True)
        latents = np.asarray(encode(audio, sr), np.float32)
        latents = latents[0] if latents.ndim == 4 else latents
        states, mask = text.text(prompt_of(rec))
        lyric_ids, lyric_mask = text.lyric(lyrics_of(rec))
        tensors = {
            "latents": latents,
            "text_states": states.astype(np.float32),
            "text_mask": mask.astype(np.int64),
            "lyric_ids": lyric_ids.astype(np.int64),
            "lyric_mask": lyric_mask.astype(np.int64),
            "speaker_emb": speaker_of(rec, audio_root, dim),
        }
        meta = {"prompt": prompt_of(rec), "lyrics": lyrics_of(rec), "filename": str(rec["filename"])}
        written.append(save_sample(Path(out_dir), key, tensors, meta))
    return written
