"""Export Riffusion (a Stable Diffusion 1.5 fine-tune, diffusers layout) to the ONNX layout the daemon runs.

    python scripts/export_riffusion.py --size tiny --out tests/fixtures/riffusion-tiny
    python scripts/export_riffusion.py --model ~/riffusion-model-v1 --out ~/riffusion-onnx

The layout is optimum's `text-to-image` export: text_encoder/, unet/, vae_decoder/, vae_encoder/ each with
model.onnx and config.json, tokenizer/ (CLIP vocab.json + merges.txt), scheduler/, model_index.json.
The UNet's attention is then rewritten for ONNX Runtime's CPU (backends/riffusion/unet_graph.py: one
MultiHeadAttention node per attention, a flash attention on the CPU), and model_index.json records the rewrite's
version ("lofi_unet_graph") so the daemon can tell an older conversion from a current one.

`--size tiny` builds random weights with the SD-1.5 structure at tiny width (CLIP text encoder 2 layers × 32,
UNet (32, 64) with cross-attention at the lower level only (attention over all 64 × 64 latents would make every
test slow), AutoencoderKL with four blocks so the latent is 1/8 of the image as in SD),
every weight perturbed so no table is constant, and a small CLIP-style byte-level BPE vocabulary learnt from a few
prompts. The PyTorch pipeline is kept in torch/ (safetensors) for the parity tests. `--model DIR` converts a local
copy of the real riffusion/riffusion-model-v1 (needs ≈ 8 GB of RAM). Needs the `export` extra.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "daemon")]

from lofi_daemon.backends.riffusion import unet_graph  # noqa: E402

SEED = 1234
PROMPTS = [
    "lofi hip hop beat with dusty piano and vinyl crackle",
    "jazzy chill guitar loop, rainy night, soft drums",
    "ambient synth pad with warm bass and tape hiss",
    "funky drum break, upbeat saxophone solo",
    "calm acoustic folk, gentle strings, 80 bpm",
]
# SD-1.5's scheduler config as shipped with riffusion-model-v1 (PNDM; the daemon derives DPM-Solver++/DDIM from it)
SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "clip_sample": False,
    "trained_betas": None,
}


# ---------------------------------------------------------------- tiny CLIP-style tokenizer


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte → printable character table."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    keep += list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def tiny_clip_vocab(merges_count: int = 160) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary shape (256 byte symbols, the same with </w>, merges, <|startoftext|>, <|endoftext|>)
    with merges learnt greedily from PROMPTS."""
    import regex

    table = bytes_to_unicode()
    symbols = [table[b] for b in range(256)]
    vocab = symbols + [s + "</w>" for s in symbols]
    pat = regex.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+", regex.IGNORECASE)
    words = Counter()
    for text in PROMPTS:
        for w in pat.findall(text.lower()):
            chars = [table[b] for b in w.encode("utf-8")]
            words[tuple(chars[:-1] + [chars[-1] + "</w>"])] += 1
    merges: list[tuple[str, str]] = []
    for _ in range(merges_count):
        pairs = Counter()
        for w, n in words.items():
            for a, b in zip(w, w[1:], strict=False):
                pairs[(a, b)] += n
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        vocab.append(best[0] + best[1])
        merged = Counter()
        for w, n in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += n
        words = merged
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {tok: i for i, tok in enumerate(vocab)}, merges


def write_tokenizer(dst: Path) -> tuple[int, int, int]:
    """Write vocab.json, merges.txt and the configs transformers' CLIPTokenizer reads; returns (vocab, bos, eos)."""
    vocab, merges = tiny_clip_vocab()
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (dst / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    specials = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (dst / "special_tokens_map.json").write_text(json.dumps(specials))
    cfg = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True, **specials}
    (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
    return len(vocab), vocab["<|startoftext|>"], vocab["<|endoftext|>"]


# ---------------------------------------------------------------- tiny models


def perturb(model: torch.nn.Module, gen: torch.Generator, scale: float = 0.05) -> None:
    """Random init leaves norms at 1/0 and many biases at 0: add noise so every table carries information."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)


def build_tiny(tmp: Path) -> Path:
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    vocab_size, bos, eos = write_tokenizer(tmp / "tok")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=bos,
            eos_token_id=eos,
            pad_token_id=eos,
            hidden_act="quick_gelu",
            projection_dim=32,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=512,
        block_out_channels=(8, 8, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    )
    for m in (text_encoder, unet, vae):
        perturb(m, gen)
        m.eval()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(str(tmp / "tok")),
        unet=unet,
        scheduler=PNDMScheduler.from_config(SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    out = tmp / "diffusers"
    pipe.save_pretrained(str(out), safe_serialization=True)
    return out


def export(model_dir: Path, out: Path) -> None:
    from optimum.exporters.onnx import main_export

    main_export(str(model_dir), output=str(out), task="text-to-image", device="cpu", do_validation=False)


def rewrite_unet(out: Path) -> None:
    """Fuse the exported UNet's attention in place and record the rewrite's version in model_index.json."""
    unet = out / "unet" / "model.onnx"
    count = unet_graph.rewrite_file(unet, unet)
    index = out / "model_index.json"
    data = json.loads(index.read_text())
    data[unet_graph.VERSION_KEY] = unet_graph.UNET_GRAPH_VERSION
    index.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"unet: {count} attention layers → MultiHeadAttention")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--size", choices=["tiny"], help="build the random-weight test fixture")
    src.add_argument(
        "--model", type=Path, help="a local diffusers-layout copy of riffusion/riffusion-model-v1"
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny(Path(tmp)) if args.size else args.model
        if args.out.exists():
            shutil.rmtree(args.out)
        export(model_dir, args.out)
        rewrite_unet(args.out)
        if args.size:
            keep = args.out / "torch"
            shutil.copytree(model_dir, keep, ignore=shutil.ignore_patterns("tokenizer", "scheduler", "*.md"))
    for cfg in [
        *args.out.rglob("config.json"),
        *args.out.rglob("model_index.json"),
    ]:  # drop the temporary build path: exports are reproducible
        data = json.loads(cfg.read_text())
        if data.pop("_name_or_path", None) is not None:
            cfg.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
