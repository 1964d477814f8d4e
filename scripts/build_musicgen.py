"""Build a random-weight MusicGen with the real architecture and export it like the hub's ONNX repos.

    python scripts/build_musicgen.py --size tiny  --out tests/fixtures/musicgen-tiny
    python scripts/build_musicgen.py --size small --out /work/bench-models/musicgen-small

The hub cannot be reached from the build machines, so tests and benchmarks run on models built here: the same
transformers classes, the same exporter (optimum's MusicGen ONNX config, as used for gabotechs/music_gen and
Xenova/musicgen-small), the same file names and tensor names. Only the weights are random (fixed seed) and the
tokenizer is a synthetic T5-like one (Unigram, `</s>`=1 appended), because t5-base's tokenizer.json is unreachable.

Output (flat layout, like a local model directory):
    text_encoder.onnx, decoder_model_merged.onnx, encodec_decode.onnx        ONNX (always)
    decoder_model.onnx, decoder_with_past_model.onnx                          split pair (--keep-split)
    tokenizer.json, config.json, generation_config.json                      as on the hub
    pytorch/{config.json,generation_config.json,model.safetensors}           reference weights (--keep-pytorch)

Needs the `export` extra (torch, transformers, optimum-onnx); never imported by the daemon.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    # musicgen-small: facebook/musicgen-small config (t5-base text encoder, encodec_32khz, 24-layer decoder)
    "small": {
        "t5": dict(
            vocab_size=32128,
            d_model=768,
            d_kv=64,
            d_ff=3072,
            num_layers=12,
            num_heads=12,
            relative_attention_num_buckets=32,
            feed_forward_proj="relu",
        ),
        "decoder": dict(
            vocab_size=2048,
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            ffn_dim=4096,
            max_position_embeddings=2048,
            num_codebooks=4,
            pad_token_id=2048,
            bos_token_id=2048,
            activation_function="gelu",
        ),
        "encodec": dict(num_filters=64, hidden_size=128, codebook_size=2048, codebook_dim=128),
    },
    # a few MB: same structure, tiny widths (vocab 64 → pad/start token 64)
    "tiny": {
        "t5": dict(
            vocab_size=600,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=32,
            feed_forward_proj="relu",
        ),
        "decoder": dict(
            vocab_size=64,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=128,
            max_position_embeddings=2048,
            num_codebooks=4,
            pad_token_id=64,
            bos_token_id=64,
            activation_function="gelu",
        ),
        "encodec": dict(num_filters=4, hidden_size=16, codebook_size=64, codebook_dim=16),
    },
}

# encodec_32khz (shared by both sizes): mono 32 kHz, hop 8*5*4*4 = 640 → 50 frames/s, 2.2 kbps → 4 codebooks
ENCODEC_COMMON = dict(
    audio_channels=1,
    sampling_rate=32000,
    upsampling_ratios=[8, 5, 4, 4],
    target_bandwidths=[2.2],
    num_lstm_layers=2,
    norm_type="weight_norm",
    pad_mode="reflect",
    compress=2,
    use_causal_conv=False,
    normalize=False,
    chunk_length_s=None,
    overlap=None,
)

# The words the synthetic tokenizer knows whole; everything else falls back to characters.
VOCAB_WORDS = (
    "lofi hip hop jazz piano rainy night chill beat beats drums bass bassy synth guitar ambient mellow slow soft "
    "warm vinyl crackle study coding relaxing calm dreamy nostalgic 80s pop track with and the a of in for song "
    "music melody rhythm groove funk soul electronic acoustic upbeat sad happy dark bright morning evening city "
    "cafe coffee rain summer winter sunset"
).split()


def build_tokenizer(vocab_size: int) -> str:
    """A T5-like tokenizer.json: Unigram pieces with the ▁ word marker, pad=0, </s>=1, unk=2, `</s>` appended."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    seen = {p for p, _ in pieces}

    def add(piece: str, score: float) -> None:
        if piece not in seen and len(pieces) < vocab_size:
            seen.add(piece)
            pieces.append((piece, score))

    for i, w in enumerate(VOCAB_WORDS):
        add("▁" + w, -5.0 - i * 0.01)
    for c in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-":
        add("▁" + c, -11.0)
        add(c, -10.0)
    add("▁", -9.0)
    tok = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Replace("  ", " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tok.add_special_tokens(["<pad>", "</s>", "<unk>"])
    return tok.to_str(pretty=True)


def randomize_codebooks(model) -> None:
    """transformers initialises EnCodec's codebooks (`embed` buffers) to zeros, so every code would decode to the
    same waveform and no audio-level test could notice a wrong code. Give each codebook distinct unit-scale
    vectors (a trained codebook's entries are distinct too), drawn from the already-seeded torch RNG."""
    import torch

    with torch.no_grad():
        for layer in model.audio_encoder.quantizer.layers:
            book = layer.codebook
            book.embed.copy_(torch.randn_like(book.embed))
            book.embed_avg.copy_(book.embed)
            book.cluster_size.fill_(1.0)


def build_pytorch(size: str, out: Path, seed: int) -> None:
    import torch
    from transformers import (
        EncodecConfig,
        GenerationConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    spec = SIZES[size]
    torch.manual_seed(seed)
    t5 = T5Config(**spec["t5"], decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
    enc = EncodecConfig(**spec["encodec"], **ENCODEC_COMMON)
    dec = MusicgenDecoderConfig(**spec["decoder"])
    config = MusicgenConfig.from_sub_models_config(t5, enc, dec)
    pad = spec["decoder"]["pad_token_id"]
    config.decoder_start_token_id = pad
    config.pad_token_id = pad
    model = MusicgenForConditionalGeneration(config).eval()
    randomize_codebooks(model)
    # facebook/musicgen-small's generation_config.json (max_length 1500 = 30 s of frames)
    model.generation_config = GenerationConfig(
        do_sample=True,
        guidance_scale=3.0,
        max_length=1500,
        bos_token_id=pad,
        pad_token_id=pad,
        decoder_start_token_id=pad,
    )
    model.save_pretrained(out, safe_serialization=True)
    (out / "tokenizer.json").write_text(build_tokenizer(spec["t5"]["vocab_size"]), encoding="utf-8")


def export_onnx(pt_dir: Path, onnx_dir: Path) -> None:
    from optimum.exporters.onnx import main_export
    from optimum.onnx import merge_decoders

    main_export(str(pt_dir), onnx_dir, task="text-to-audio", do_validation=False)
    # optimum-onnx 0.1.0 gates the merge on `use_past`, which the text-to-audio task leaves False; run the same
    # post-processing step it would have run (the hub repos ship the merged file).
    merge_decoders(
        onnx_dir / "decoder_model.onnx",
        onnx_dir / "decoder_with_past_model.onnx",
        save_path=onnx_dir / "decoder_model_merged.onnx",
        strict=False,
    )


def main() -> None:
    # optimum's merge de-duplicates initializers in set order, which follows Python's string hashing: pin it so
    # the same seed gives byte-identical ONNX files
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--keep-split", action="store_true", help="keep decoder_model.onnx + decoder_with_past_model.onnx"
    )
    ap.add_argument(
        "--no-pytorch", action="store_true", help="do not keep the PyTorch weights in out/pytorch"
    )
    args = ap.parse_args()

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        pt_dir = Path(tmp) / "pytorch"
        onnx_dir = Path(tmp) / "onnx"
        build_pytorch(args.size, pt_dir, args.seed)
        print(f"built PyTorch model in {time.time() - t0:.1f}s")
        export_onnx(pt_dir, onnx_dir)
        print(f"exported ONNX in {time.time() - t0:.1f}s")
        names = ["text_encoder.onnx", "decoder_model_merged.onnx", "encodec_decode.onnx"]
        if args.keep_split:
            names += ["decoder_model.onnx", "decoder_with_past_model.onnx"]
        for name in names:
            shutil.move(str(onnx_dir / name), out / name)
        for name in ["config.json", "generation_config.json", "tokenizer.json"]:
            shutil.copy(pt_dir / name, out / name)
        if not args.no_pytorch:
            dst = out / "pytorch"
            dst.mkdir(exist_ok=True)
            for name in ["config.json", "generation_config.json", "model.safetensors"]:
                shutil.move(str(pt_dir / name), dst / name)
    listing = {p.name: p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
    print(json.dumps({"out": str(out), "seconds": round(time.time() - t0, 1), "files": listing}, indent=1))


if __name__ == "__main__":
    main()
