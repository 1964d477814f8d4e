"""`lofi-lora export` and `quantize`: the (merged) model as the daemon's five ONNX graphs, then smaller decoders.

export: scripts/export_ace_step.py's graphs (opset 17, dynamic batch/length axes) from a base-model folder
(`lofi-lora merge --out` makes one with a LoRA merged in), verified by running the two transformer graphs in ONNX
Runtime against PyTorch on seeded inputs.

quantize: transformer-decoder tiers beside the fp32 one: fp16 and int8 (scripts/quantize_ace_step.py, files the
daemon selects with `dtype`), int4 (onnxruntime's MatMulNBits weight-only blocks of 32; an offline tier the daemon
does not load yet). Each is reported with its size and its drift from fp32 on the same inputs. Only the decoder is
quantised: the transformer encoder — which holds the lyric encoder and the speaker embedder — stays fp32, so
neither ever goes below int8.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .errors import ENVIRONMENT, FAILED_INPUT, USAGE, LoraError

HELP = {
    "export": "export a (merged) base model to the daemon's ONNX graphs, verified against PyTorch",
    "quantize": "add fp16 / int8 / int4 transformer decoders to an export, with size and drift",
}
TIERS = ("fp16", "int8", "int4")
INT4_FILE = "transformer_decoder_int4.onnx"
U32 = 2.0**-24


def add_arguments(p, command: str) -> None:
    if command == "export":
        p.add_argument("--base", type=Path, help="base (or merged) ACE-Step model (else $LOFI_ACE_STEP_DIR)")
        p.add_argument("--out", type=Path, required=True, help="folder for the ONNX model")
        p.add_argument(
            "--lyric-vocab", type=Path, help="upstream lyrics_utils/vocab.json (upstream checkpoints)"
        )
    else:
        p.add_argument("dir", type=Path, help="an exported ACE-Step ONNX folder")
        p.add_argument("--tiers", default="fp16,int8,int4", help="comma-separated: fp16, int8, int4")


# ---------------------------------------------------------------- probes shared by export and quantize


def encoder_feeds(d_text: int, spk: int, vocab: int, seed: int = 0) -> dict:
    """Seeded inputs of transformer_encoder.onnx."""
    rng = np.random.default_rng(seed)
    return {
        "encoder_text_hidden_states": rng.standard_normal((1, 5, d_text)).astype(np.float32),
        "text_attention_mask": np.ones((1, 5), np.int64),
        "speaker_embeds": rng.standard_normal((1, spk)).astype(np.float32),
        "lyric_token_idx": rng.integers(0, vocab, (1, 4)).astype(np.int64),
        "lyric_mask": np.ones((1, 4), np.int64),
        "lyric_q_scale": np.ones(1, np.float32),
    }


def decoder_feeds(inner: int, frames: int = 6, cond: int = 10, seed: int = 0) -> dict:
    """Seeded inputs of transformer_decoder.onnx at a mid timestep."""
    rng = np.random.default_rng(seed)
    return {
        "hidden_states": rng.standard_normal((1, 8, 16, frames)).astype(np.float32),
        "attention_mask": np.ones((1, frames), np.float32),
        "encoder_hidden_states": rng.standard_normal((1, cond, inner)).astype(np.float32),
        "encoder_hidden_mask": np.ones((1, cond), np.float32),
        "timestep": np.array([500.0], np.float32),
        "erg_q_scale": np.ones(1, np.float32),
    }


def run_graph(path: Path, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    return sess.run(None, {k: v for k, v in feeds.items() if k in names})[0]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def graph_sizes(folder: Path, graph: str) -> dict[str, int]:
    """Bytes of the graph file and of its external weights (for small models the graph itself weighs as much)."""
    weights = folder / (Path(graph).stem + "_weights.bin")
    w = weights.stat().st_size if weights.exists() else 0
    return {"bytes": (folder / graph).stat().st_size + w, "weight_bytes": w}


# ---------------------------------------------------------------- export


def export(base: Path, out: Path, lyric_vocab: Path | None) -> dict:
    import torch

    from scripts import export_ace_step as ex

    from . import base as base_mod

    kind = base_mod.layout(base)
    models = base_mod.load(base, ("text_encoder", "transformer", "dcae", "vocoder"))
    out.mkdir(parents=True, exist_ok=True)
    if kind == "lofi":
        cfg_file = base / "ace_step.json"
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        ids = {k: cfg.get(k, ex.TINY_LYRIC_IDS[k]) for k in ex.TINY_LYRIC_IDS}
        size = cfg.get("size", "tiny")
        lyric_tok = base / "lyric_tokenizer.json"
    else:
        ids, size, lyric_tok = ex.REAL_LYRIC_IDS, "full", lyric_vocab
        if lyric_tok is None:
            raise LoraError("an upstream checkpoint needs --lyric-vocab (lyrics_utils/vocab.json)", USAGE)
    shutil.copy(base_mod.tokenizer_file(base), out / "tokenizer.json")
    if lyric_tok is not None and Path(lyric_tok).is_file():
        shutil.copy(lyric_tok, out / "lyric_tokenizer.json")
    with torch.no_grad():
        ex.export_all(models, out, lyric_ids=ids, size=size)
    return {"out": str(out), "size": size, "opset": ex.OPSET, "verification": verify_export(models, out)}


def verify_export(models: dict, out: Path) -> dict:
    """ONNX Runtime against PyTorch on seeded inputs: the two transformer graphs (where a LoRA lives)."""
    import torch

    dit = models["transformer"]
    enc = encoder_feeds(
        dit.genre_embedder.in_features, dit.speaker_embedder.in_features, dit.lyric_embs.num_embeddings
    )
    dec = decoder_feeds(dit.genre_embedder.out_features)
    t = {k: torch.from_numpy(v) for k, v in {**enc, **dec}.items()}
    with torch.no_grad():
        want_enc, _ = dit.encode(
            t["encoder_text_hidden_states"],
            t["text_attention_mask"],
            t["speaker_embeds"],
            t["lyric_token_idx"],
            t["lyric_mask"],
        )
        want_dec = dit.decode(
            t["hidden_states"],
            t["attention_mask"],
            t["encoder_hidden_states"],
            t["encoder_hidden_mask"],
            t["timestep"],
        )
    got_enc = run_graph(out / "transformer_encoder.onnx", enc)
    got_dec = run_graph(out / "transformer_decoder.onnx", dec)
    n = sum(m.in_features for m in dit.modules() if isinstance(m, torch.nn.Linear))
    result = {
        "encoder_rel_error": rel(got_enc, want_enc.numpy()),
        "decoder_rel_error": rel(got_dec, want_dec.numpy()),
        "tolerance": 4.0 * float(np.sqrt(n)) * U32,  # float32 summation order (tests/tolerances.py)
    }
    worst = max(result["encoder_rel_error"], result["decoder_rel_error"])
    if not worst <= result["tolerance"]:
        raise LoraError(f"the exported graphs differ from PyTorch by {worst:.2e}", FAILED_INPUT)
    return result


# ---------------------------------------------------------------- quantize


def quantize_int4(src: Path, dst: Path) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from scripts.quantize_ace_step import _save

    q = MatMulNBitsQuantizer(onnx.load(str(src)), block_size=32, is_symmetric=True)
    q.process()
    _save(q.model.model, dst)


def quantize(folder: Path, tiers: list[str]) -> dict:
    from scripts import quantize_ace_step as qa

    src = folder / qa.SOURCE
    if not src.is_file():
        raise LoraError(f"{src} not found: run `lofi-lora export` first", FAILED_INPUT)
    import onnxruntime as ort

    inputs = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()
    dec = decoder_feeds(next(i.shape[2] for i in inputs if i.name == "encoder_hidden_states"))
    ref = run_graph(src, dec)
    writers = {"fp16": qa.convert_fp16, "int8": qa.quantize_int8, "int4": quantize_int4}
    files = {**qa.TARGETS, "int4": INT4_FILE}
    report = {"fp32": {"file": qa.SOURCE, **graph_sizes(folder, qa.SOURCE), "rel_drift": 0.0}}
    for tier in tiers:
        dst = folder / files[tier]
        writers[tier](src, dst)
        report[tier] = {
            "file": dst.name,
            **graph_sizes(folder, dst.name),
            "rel_drift": rel(run_graph(dst, dec), ref),
        }
    report["unquantised"] = [
        "transformer_encoder.onnx (lyric encoder, speaker embedder)",
        "text_encoder.onnx",
        "dcae_decoder.onnx",
        "vocoder.onnx",
    ]
    return report


def run(args) -> dict:
    from . import env

    if args.command == "export":
        base = env.ace_step_dir(args.base)
        from . import base as base_mod

        base_mod.layout(base)
        if args.dry_run:
            return {"base": str(base), "out": str(args.out)}
        try:
            import onnx  # noqa: F401
        except ImportError as e:
            raise LoraError(
                "export needs the `export` extra (onnx): scripts/setup --export", ENVIRONMENT
            ) from e
        return export(base, Path(args.out).expanduser(), args.lyric_vocab)
    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    unknown = sorted(set(tiers) - set(TIERS))
    if unknown or not tiers:
        raise LoraError(f"--tiers takes {', '.join(TIERS)} (not {', '.join(unknown) or 'nothing'})", USAGE)
    if args.dry_run:
        return {"dir": str(args.dir), "tiers": tiers}
    return {"dir": str(args.dir), "tiers": quantize(Path(args.dir).expanduser(), tiers)}
