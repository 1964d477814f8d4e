"""Export ACE-Step v1 to the five-graph ONNX layout the daemon runs (docs/model-formats.md, ## ACE-Step).

    python scripts/export_ace_step.py --size tiny --out tests/fixtures/ace-step-tiny
    python scripts/export_ace_step.py --size full --checkpoint ~/ACE-Step/checkpoints --out ~/ace-step-onnx

`--size tiny` builds random-weight models with the real structure (committed test fixture: ONNX files, the PyTorch
weights as safetensors, synthetic tokenizers). `--size full` reads a local copy of the published checkpoint
(`ACE-Step/ACE-Step-v1-3.5B`: ace_step_transformer/, umt5-base/, music_dcae_f8c8/, music_vocoder/) plus the
upstream lyric vocabulary (`--lyric-vocab`, acestep/models/lyrics_utils/vocab.json) and needs ≈ 30 GB of RAM.
`--layers N` exports a layer-reduced full-width random model (benchmarks). `--encoder-only` adds the DCAE
encoder graph (`dcae_encoder.onnx`, audio → latents for the editing tasks) to an export made before it existed.
Needs the `export` extra.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch
from safetensors.torch import load_file, load_model, save_model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.ace_step_torch import build  # noqa: E402
from scripts.ace_step_torch.onnx_wrappers import (  # noqa: E402
    DcaeDecoderWrapper,
    DcaeEncoderWrapper,
    TextEncoderWrapper,
    TransformerDecoderWrapper,
    TransformerEncoderWrapper,
    VocoderWrapper,
)

OPSET = 17
DECODER_DATA = "transformer_decoder_weights.bin"
# Both transformer graphs keep their weights as external data, so the daemon can read LoRA base weights with a
# memory map at the offsets recorded in lora_name_map.json (no onnx package at runtime). All graphs are exported
# with constant folding: Linear weights then reach MatMul pre-transposed under anonymous names (found by value
# in the name map), and onnxruntime honours `add_initializer` overrides of them — it ignores overrides of
# initializers that feed a Transpose it constant-folds (the lab's unfolded export, §5.3 item 7).
ENCODER_DATA = "transformer_encoder_weights.bin"
TINY_LYRIC_IDS = {"lyric_start_id": 3, "lyric_line_end_id": 2}
REAL_LYRIC_IDS = {"lyric_start_id": 261, "lyric_line_end_id": 2}
TORCH_DIR = "torch"  # PyTorch weights beside the ONNX files (safetensors + configs)


# ---------------------------------------------------------------- tokenizers (tiny fixture only)


def synthetic_text_tokenizer(vocab_size: int):
    """A T5-style Unigram tokenizer (Metaspace, </s> appended, pad 0 / eos 1 / unk 2) trained on a few lofi
    prompts. The real UMT5 tokenizer.json is copied from the checkpoint for --size full."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        shrinking_factor=0.75,
    )
    corpus = [
        "lofi hip hop beat, mellow piano, vinyl crackle, rainy night, 80 bpm",
        "chill jazz guitar, soft drums, warm bass, study music, relaxing",
        "ambient synth pads, slow tempo, dreamy atmosphere, tape hiss",
        "upbeat funk groove with electric piano and brushed snare",
        "melancholic cello and rhodes, late night coding session",
    ] * 20
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return tok


def synthetic_lyric_tokenizer(vocab_size: int):
    """Character BPE in the shape of upstream's VoiceBpeTokenizer file ([STOP]=0, [UNK]=1, [SPACE]=2, language
    tags as added tokens)."""
    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    special = ["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special)
    text = "abcdefghijklmnopqrstuvwxyz0123456789'.,!?-[]() " * 4 + "the rain falls on the city lights tonight"
    tok.train_from_iterator([text], trainer)
    return tok


# ---------------------------------------------------------------- export helpers


def fix_negative_transpose_perms(model: onnx.ModelProto) -> int:
    """diffusers' DCAE attention uses movedim(-1, 1); the legacy exporter writes Transpose(perm=[0,-1,1,2]),
    which onnxruntime refuses to load. Rewrite perms modulo rank."""
    fixed = 0
    for node in model.graph.node:
        if node.op_type != "Transpose":
            continue
        for attr in node.attribute:
            if attr.name == "perm" and any(p < 0 for p in attr.ints):
                rank = len(attr.ints)
                perm = [p % rank for p in attr.ints]
                del attr.ints[:]
                attr.ints.extend(perm)
                fixed += 1
    return fixed


def _export(
    wrapper, args, path: Path, inputs, outputs, dynamic_axes, fold: bool, external: str | None = None
):
    tmp = Path(tempfile.mkdtemp(prefix="ace_export_"))
    try:
        raw = tmp / path.name
        with torch.no_grad():
            torch.onnx.export(
                wrapper,
                args,
                str(raw),
                dynamo=False,
                opset_version=OPSET,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=dynamic_axes,
                do_constant_folding=fold,
            )
        model = onnx.load(str(raw), load_external_data=True)
        fix_negative_transpose_perms(model)
        for stale in (path, path.parent / (external or "")):
            if external and stale.exists() and stale.is_file():
                stale.unlink()
        if external:
            onnx.save_model(
                model,
                str(path),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=external,
                size_threshold=0,
            )
        else:
            onnx.save_model(model, str(path))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _key(arr: np.ndarray) -> tuple:
    a = np.ascontiguousarray(arr, dtype=np.float32)
    return a.shape, hashlib.sha1(a.tobytes()).hexdigest()


def name_map(onnx_path: Path, module: torch.nn.Module, prefix: str) -> dict[str, dict]:
    """Map model parameter names (checkpoint naming) to the ONNX initializers holding them, found by value
    (exact bytes, as stored or transposed) so it survives any renaming the exporter does. Only parameters
    whose value is unique are mapped (LoRA targets are random matrices, so they always are)."""
    model = onnx.load(str(onnx_path), load_external_data=True)
    by_key: dict[tuple, list[str]] = {}
    for init in model.graph.initializer:
        by_key.setdefault(_key(onnx.numpy_helper.to_array(init)), []).append(init.name)
    where = {}  # initializer → (file, offset, length) for external data
    for init in onnx.load(str(onnx_path), load_external_data=False).graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            kv = {e.key: e.value for e in init.external_data}
            where[init.name] = {
                "file": kv["location"],
                "offset": int(kv.get("offset", 0)),
                "length": int(kv["length"]),
                "shape": list(init.dims),
            }
    out: dict[str, dict] = {}
    for name, p in module.named_parameters():
        if not name.startswith(prefix):
            continue
        pname = name[len(prefix) :]
        arr = p.detach().cpu().numpy()
        hits = [(n, False) for n in by_key.get(_key(arr), [])]
        if arr.ndim == 2:
            hits += [(n, True) for n in by_key.get(_key(arr.T), [])]
        if len(hits) == 1:
            out[pname] = {"initializer": hits[0][0], "transposed": hits[0][1], **where.get(hits[0][0], {})}
    return out


B, T, N_LYRIC, F = 2, 7, 5, 12  # trace shapes (all dynamic in the exported graphs)


def export_text_encoder(te, out: Path) -> TextEncoderWrapper:
    w = TextEncoderWrapper(te).eval()
    _export(
        w,
        (torch.randint(3, te.config.vocab_size, (B, T)), torch.ones(B, T, dtype=torch.long), torch.ones(B)),
        out / "text_encoder.onnx",
        ["input_ids", "attention_mask", "erg_q_scale"],
        ["last_hidden_state"],
        {
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "erg_q_scale": {0: "batch"},
            "last_hidden_state": {0: "batch", 1: "tokens"},
        },
        fold=True,
    )
    return w


def export_transformer_encoder(dit, d_text: int, out: Path) -> TransformerEncoderWrapper:
    w = TransformerEncoderWrapper(dit).eval()
    vocab = dit.lyric_embs.num_embeddings
    spk = dit.speaker_embedder.in_features
    _export(
        w,
        (
            torch.randn(B, T, d_text),
            torch.ones(B, T, dtype=torch.long),
            torch.zeros(B, spk),
            torch.randint(0, vocab, (B, N_LYRIC)),
            torch.ones(B, N_LYRIC, dtype=torch.long),
            torch.ones(B),
        ),
        out / "transformer_encoder.onnx",
        [
            "encoder_text_hidden_states",
            "text_attention_mask",
            "speaker_embeds",
            "lyric_token_idx",
            "lyric_mask",
            "lyric_q_scale",
        ],
        ["encoder_hidden_states", "encoder_hidden_mask"],
        {
            "encoder_text_hidden_states": {0: "batch", 1: "tokens"},
            "text_attention_mask": {0: "batch", 1: "tokens"},
            "speaker_embeds": {0: "batch"},
            "lyric_token_idx": {0: "batch", 1: "lyric_tokens"},
            "lyric_mask": {0: "batch", 1: "lyric_tokens"},
            "lyric_q_scale": {0: "batch"},
            "encoder_hidden_states": {0: "batch", 1: "cond_len"},
            "encoder_hidden_mask": {0: "batch", 1: "cond_len"},
        },
        fold=True,
        external=ENCODER_DATA,
    )
    return w


def export_transformer_decoder(dit, out: Path) -> TransformerDecoderWrapper:
    inner = dit.genre_embedder.out_features
    w = TransformerDecoderWrapper(dit).eval()
    s = 1 + T + N_LYRIC
    _export(
        w,
        (
            torch.randn(B, 8, 16, F),
            torch.ones(B, F),
            torch.randn(B, s, inner),
            torch.ones(B, s),
            torch.tensor([900.0, 300.0]),
            torch.ones(B),
        ),
        out / "transformer_decoder.onnx",
        [
            "hidden_states",
            "attention_mask",
            "encoder_hidden_states",
            "encoder_hidden_mask",
            "timestep",
            "erg_q_scale",
        ],
        ["sample"],
        {
            "hidden_states": {0: "batch", 3: "frames"},
            "attention_mask": {0: "batch", 1: "frames"},
            "encoder_hidden_states": {0: "batch", 1: "cond_len"},
            "encoder_hidden_mask": {0: "batch", 1: "cond_len"},
            "timestep": {0: "batch"},
            "erg_q_scale": {0: "batch"},
            "sample": {0: "batch", 3: "frames"},
        },
        fold=True,
        external=DECODER_DATA,
    )
    return w


def export_dcae(dcae, out: Path) -> None:
    _export(
        DcaeDecoderWrapper(dcae).eval(),
        (torch.randn(1, 8, 16, F),),
        out / "dcae_decoder.onnx",
        ["latents"],
        ["mel_spectrogram"],
        {"latents": {0: "batch", 3: "frames"}, "mel_spectrogram": {0: "batch", 3: "mel_frames"}},
        fold=True,
    )


def export_dcae_encoder(dcae, out: Path) -> None:
    """The encode path (audio2audio, repaint, extend, edit; LoRA dataset latents): log-mel → latents."""
    _export(
        DcaeEncoderWrapper(dcae).eval(),
        (torch.randn(1, 2, 128, 8 * F),),
        out / "dcae_encoder.onnx",
        ["mel_spectrogram"],
        ["latents"],
        {"mel_spectrogram": {0: "batch", 3: "mel_frames"}, "latents": {0: "batch", 3: "frames"}},
        fold=True,
    )


def export_vocoder(voc, out: Path) -> None:
    voc.fold_weight_norm()
    _export(
        VocoderWrapper(voc).eval(),
        (torch.randn(2, 128, 8 * F),),
        out / "vocoder.onnx",
        ["mel"],
        ["audio"],
        {"mel": {0: "batch", 2: "mel_frames"}, "audio": {0: "batch", 2: "samples"}},
        fold=True,
    )


def export_all(models: dict, out: Path, lyric_ids: dict, size: str) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    te, dit, dcae, voc = models["text_encoder"], models["transformer"], models["dcae"], models["vocoder"]
    spk = dit.speaker_embedder.in_features
    w_text = export_text_encoder(te, out)
    w_enc = export_transformer_encoder(dit, te.config.d_model, out)
    w_dec = export_transformer_decoder(dit, out)
    export_dcae(dcae, out)
    export_dcae_encoder(dcae, out)
    export_vocoder(voc, out)

    names = {
        "text_encoder.onnx": name_map(out / "text_encoder.onnx", w_text, "model."),
        "transformer_encoder.onnx": name_map(out / "transformer_encoder.onnx", w_enc, "model."),
        "transformer_decoder.onnx": name_map(out / "transformer_decoder.onnx", w_dec, "model."),
    }
    (out / "lora_name_map.json").write_text(json.dumps(names, indent=1, sort_keys=True))
    cfg = {
        "format": "lofi-ace-step-onnx",
        "format_version": 1,
        "size": size,
        "sample_rate": 44100,
        "latent": {"channels": 8, "height": 16, "samples_per_frame": 4096, "scale": 0.1786, "shift": -1.9091},
        "mel": {"bins": 128, "frames_per_latent": 8, "hop": 512},
        "text_max_length": 256,
        "speaker_dim": spk,
        "erg": build.ERG,
        **lyric_ids,
    }
    (out / "ace_step.json").write_text(json.dumps(cfg, indent=1))
    return names


def save_torch(models: dict, sizes: dict, out: Path) -> None:
    """PyTorch weights in checkpoint naming (vocoder still with weight norm), plus the configs to rebuild."""
    d = out / TORCH_DIR
    d.mkdir(parents=True, exist_ok=True)
    for name, m in models.items():
        save_model(m, str(d / f"{name}.safetensors"))
    (d / "configs.json").write_text(json.dumps(sizes, indent=1, default=list))


def load_torch(fixture: Path) -> dict:
    """Rebuild the fixture's PyTorch models (used by torch-marked tests)."""
    d = Path(fixture) / TORCH_DIR
    cfgs = json.loads((d / "configs.json").read_text())
    models = {
        "text_encoder": build.build_text_encoder(cfgs["text_encoder"]),
        "transformer": build.build_transformer(cfgs["transformer"]),
        "dcae": build.build_dcae(_tuples(cfgs["dcae"])),
        "vocoder": build.build_vocoder(cfgs["vocoder"]),
    }
    for name, m in models.items():
        load_model(m, str(d / f"{name}.safetensors"), strict=True)
        m.eval()
    return models


def _tuples(cfg: dict) -> dict:
    return {
        k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
        for k, v in cfg.items()
    }


def load_checkpoint(ckpt: Path, layers: int | None) -> dict:
    """The published PyTorch checkpoint → the project's modules (strict except the vocoder's mel_transform)."""
    from diffusers import AutoencoderDC
    from transformers import UMT5EncoderModel

    tcfg = json.loads((ckpt / "ace_step_transformer" / "config.json").read_text())
    tcfg = {k: v for k, v in tcfg.items() if not k.startswith("_")}
    dit = build.build_transformer(tcfg)
    sd = {}
    for f in sorted((ckpt / "ace_step_transformer").glob("*.safetensors")):
        sd.update(load_file(str(f)))
    dit.load_state_dict(sd, strict=True)
    te = UMT5EncoderModel.from_pretrained(str(ckpt / "umt5-base"), attn_implementation="eager").eval()
    dcae = AutoencoderDC.from_pretrained(str(ckpt / "music_dcae_f8c8")).eval()
    vcfg = json.loads((ckpt / "music_vocoder" / "config.json").read_text())
    voc = build.build_vocoder({k: v for k, v in vcfg.items() if not k.startswith("_")})
    vsd = {}
    for f in sorted((ckpt / "music_vocoder").glob("*.safetensors")):
        vsd.update(load_file(str(f)))
    missing, unexpected = voc.load_state_dict(vsd, strict=False)
    if missing or any(not k.startswith("mel_transform.") for k in unexpected):
        raise SystemExit(f"vocoder checkpoint mismatch: missing={missing} unexpected={unexpected}")
    if layers:
        dit.transformer_blocks = dit.transformer_blocks[:layers]
    return {
        "text_encoder": te.float(),
        "transformer": dit.float(),
        "dcae": dcae.float(),
        "vocoder": voc.float(),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=["tiny", "full"], required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--checkpoint", type=Path, help="local ACE-Step-v1-3.5B checkpoint directory (--size full)"
    )
    ap.add_argument("--lyric-vocab", type=Path, help="upstream lyrics_utils/vocab.json (--size full)")
    ap.add_argument("--layers", type=int, help="keep only the first N DiT blocks (benchmarks / tests)")
    ap.add_argument("--random", action="store_true", help="--size full with random weights (benchmarks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--encoder-only",
        action="store_true",
        help="only add dcae_encoder.onnx to an existing export (tiny: from OUT/torch; full: --checkpoint)",
    )
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    if a.encoder_only:
        if a.size == "tiny":
            dcae = load_torch(a.out)["dcae"]
        elif a.checkpoint:
            from diffusers import AutoencoderDC

            dcae = AutoencoderDC.from_pretrained(str(a.checkpoint / "music_dcae_f8c8")).float().eval()
        else:
            ap.error("--size full --encoder-only needs --checkpoint")
        export_dcae_encoder(dcae, a.out)
        print(f"exported {a.out / 'dcae_encoder.onnx'}")
        return
    if a.size == "tiny":
        cfgs = build.TINY
        models = build.build_all("tiny")
        build.randomize_(models, a.seed)
        if a.layers:
            models["transformer"].transformer_blocks = models["transformer"].transformer_blocks[: a.layers]
        save_torch(models, cfgs, a.out)
        synthetic_text_tokenizer(cfgs["text_encoder"]["vocab_size"]).save(str(a.out / "tokenizer.json"))
        vocab = cfgs["transformer"]["lyric_encoder_vocab_size"]
        synthetic_lyric_tokenizer(vocab).save(str(a.out / "lyric_tokenizer.json"))
        export_all(models, a.out, lyric_ids=TINY_LYRIC_IDS, size="tiny")
    elif a.random:
        cfg = dict(build.REAL["transformer"])
        if a.layers:
            cfg["num_layers"] = a.layers
        models = {
            "text_encoder": build.build_text_encoder(build.REAL["text_encoder"]),
            "transformer": build.build_transformer(cfg),
            "dcae": build.build_dcae(build.REAL["dcae"]),
            "vocoder": build.build_vocoder(build.REAL["vocoder"]),
        }
        export_all(models, a.out, lyric_ids=REAL_LYRIC_IDS, size="full-random")
    else:
        if not a.checkpoint or not a.lyric_vocab:
            ap.error("--size full needs --checkpoint and --lyric-vocab (or --random)")
        models = load_checkpoint(a.checkpoint, a.layers)
        shutil.copy(a.checkpoint / "umt5-base" / "tokenizer.json", a.out / "tokenizer.json")
        shutil.copy(a.lyric_vocab, a.out / "lyric_tokenizer.json")
        export_all(models, a.out, lyric_ids=REAL_LYRIC_IDS, size="full")
    print(f"exported to {a.out}")


if __name__ == "__main__":
    main()
