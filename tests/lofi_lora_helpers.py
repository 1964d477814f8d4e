"""Shared pieces of the lofi-lora training-side tests: synthetic precomputed features of the tiny fixture's shapes
and a one-call CLI runner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.ace_step_helpers import FIXTURE

TEXT_DIM = 32  # the tiny UMT5's d_model
SPEAKER_DIM = 16
LYRIC_VOCAB = 96


def write_features(folder: Path, n: int = 2, frames: int = 6, seed: int = 0) -> Path:
    """n samples with the real feature layout: smooth latents (a different chord of sines per channel and row,
    so every sample is distinct and structured), random text states of varying length, lyric ids."""
    from scripts.lofi_lora import features

    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2 * np.pi, frames, dtype=np.float32)
    for i in range(n):
        f = 1.0 + 0.3 * np.arange(16, dtype=np.float32)[None, :, None]
        phase = np.arange(8, dtype=np.float32)[:, None, None] + i
        latents = np.sin(t[None, None, :] * f + phase).astype(np.float32)
        tokens = 4 + i
        lyric = rng.integers(4, LYRIC_VOCAB, size=3 + i)
        features.save_sample(
            folder,
            f"track{i}",
            {
                "latents": latents,
                "text_states": rng.standard_normal((tokens, TEXT_DIM)).astype(np.float32),
                "text_mask": np.ones(tokens, np.int64),
                "lyric_ids": lyric.astype(np.int64),
                "lyric_mask": np.ones_like(lyric, dtype=np.int64),
                "speaker_emb": rng.standard_normal(SPEAKER_DIM).astype(np.float32),
            },
            {"prompt": f"lofi, piano, take {i}"},
        )
    return folder


def lofi_lora(*argv: str) -> tuple[int, dict]:
    """Run `lofi-lora ARGV --json --quiet` in-process: (exit code, the JSON result)."""
    import contextlib
    import io

    from scripts.lofi_lora import cli

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = cli.main([*argv, "--json", "--quiet"])
    out = buf.getvalue().strip().splitlines()
    return code, json.loads(out[-1]) if out else {}


def train_args(features: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--base",
        str(FIXTURE),
        "--features",
        str(features),
        "--out",
        str(out),
        "--rank",
        "4",
        "--alpha",
        "8",
        "--precision",
        "fp32",
        *extra,
    ]


EMBEDDER = Path(__file__).parent / "fixtures" / "lofi-lora" / "random_embedder.py"


def tone_set(n: int, seconds: float = 0.5, sr: int = 16000, noise: float = 0.0, seed: int = 0) -> list:
    """n stereo clips ([samples, 2], soundfile's layout): a chord of two tones at different pitches per clip,
    plus white noise of the given amplitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    clips = []
    for i in range(n):
        f = 220.0 * 2 ** (i / 7)
        mono = 0.4 * np.sin(2 * np.pi * f * t) + 0.2 * np.sin(2 * np.pi * 1.5 * f * t)
        stereo = np.stack([mono, mono], axis=1) + noise * rng.standard_normal((t.size, 2))
        clips.append((stereo.astype(np.float32), sr))
    return clips


def write_wavs(folder: Path, clips: list) -> Path:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    for i, (audio, sr) in enumerate(clips):
        sf.write(str(folder / f"clip{i}.wav"), audio, sr)
    return folder


def tiny_clap(folder: Path) -> Path:
    """A random-weight CLAP (transformers ClapModel) with a word-level tokenizer, built offline and saved like a
    downloaded model. Its spectrogram fits the audio config: spec_size² / mel bins = 64² / 16 = 256 ≥ 101 frames."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, PreTrainedTokenizerFast

    words = (
        "lofi hip hop mellow piano dusty drums vinyl crackle bpm rainy autumn evening warm rhodes soft rain"
    )
    words += (
        " late night coding calm synth pads tape hiss jazz guitar upright bass brushed snare female humming"
    )
    words += " airy vocal chops , 70 75 78 80 85"
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for w in words.split():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    text = dict(
        vocab_size=len(vocab) + 4,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=40,
        projection_dim=8,
    )
    audio = dict(
        spec_size=64,
        num_mel_bins=16,
        window_size=4,
        patch_size=4,
        patch_stride=[4, 4],
        hidden_size=32,
        patch_embeds_hidden_size=16,
        depths=[1, 1],
        num_attention_heads=[2, 2],
        projection_dim=8,
        enable_fusion=False,
    )
    import torch

    torch.manual_seed(0)
    ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).save_pretrained(str(folder))
    ClapFeatureExtractor(
        feature_size=16, sampling_rate=16000, hop_length=160, max_length_s=1, fft_window_size=1024
    ).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder


def random_adapter(folder: Path, seed: int, scale: float = 0.05) -> Path:
    """A LoRA the way `train` saves one (peft on the fixture's transformer, rank 2), with random A and B."""
    import torch

    from scripts.lofi_lora import base, train

    model = train.attach_lora(base.load(FIXTURE)["transformer"], train.TrainConfig(rank=2, alpha=2))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(scale * torch.randn(p.shape, generator=g))
    model.save_lora_adapter(str(folder), adapter_name=train.ADAPTER)
    return folder / train.ADAPTER_FILE
