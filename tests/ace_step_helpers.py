"""Shared fixtures for the ACE-Step tests (the tiny random-weight fixture and fixed inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

FIXTURE = Path(__file__).parent / "fixtures" / "ace-step-tiny"


def tiny_pipeline(windowing=None):
    from lofi_daemon.backends.ace_step.layout import detect
    from lofi_daemon.backends.ace_step.pipeline import AceStepPipeline
    from lofi_daemon.backends.ace_step.sessions import session_factory

    return AceStepPipeline(detect(FIXTURE), session_factory(threads=1), windowing)


def fixed_inputs(frames: int = 21, lyrics: bool = True, seed: int = 1234):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 300, size=(1, 9)).astype(np.int64)
    mask = np.ones_like(ids)
    if lyrics:
        lyric_ids = rng.integers(0, 96, size=(1, 11)).astype(np.int64)
        lyric_mask = np.ones_like(lyric_ids)
    else:
        lyric_ids = np.zeros((1, 1), np.int64)
        lyric_mask = np.zeros((1, 1), np.int64)
    noise = rng.standard_normal((1, 8, 16, frames), dtype=np.float32)
    return ids, mask, lyric_ids, lyric_mask, noise


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def make_reference_layout(dst: Path, fixed_frames: int = 128) -> Path:
    """Rewrite the tiny lofi-layout graphs into lofi.nvim's reference contract (onnx graph surgery): no ERG
    inputs (the scale becomes a constant 1), timestep [1], DCAE input fixed to `fixed_frames` latent frames,
    vocoder input batch fixed to 1; no ace_step.json, lyric tokenizer or name map."""
    import shutil

    import onnx
    from onnx import numpy_helper

    dst.mkdir(parents=True, exist_ok=True)

    def drop_input(model, name):
        inp = next(i for i in model.graph.input if i.name == name)
        model.graph.input.remove(inp)
        const = numpy_helper.from_array(np.ones(1, np.float32), name=name)
        model.graph.initializer.append(const)

    def set_dim(model, name, axis, value):
        inp = next(i for i in model.graph.input if i.name == name)
        inp.type.tensor_type.shape.dim[axis].dim_value = value

    te = onnx.load(str(FIXTURE / "text_encoder.onnx"))
    drop_input(te, "erg_q_scale")
    onnx.save(te, str(dst / "text_encoder.onnx"))
    enc = onnx.load(str(FIXTURE / "transformer_encoder.onnx"), load_external_data=True)
    drop_input(enc, "lyric_q_scale")
    onnx.save(enc, str(dst / "transformer_encoder.onnx"))
    dec = onnx.load(str(FIXTURE / "transformer_decoder.onnx"), load_external_data=True)
    drop_input(dec, "erg_q_scale")
    set_dim(dec, "timestep", 0, 1)
    onnx.save(
        dec,
        str(dst / "transformer_decoder.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="transformer_decoder_weights.bin",
        size_threshold=0,
    )
    dcae = onnx.load(str(FIXTURE / "dcae_decoder.onnx"))
    set_dim(dcae, "latents", 0, 1)
    set_dim(dcae, "latents", 3, fixed_frames)
    onnx.save(dcae, str(dst / "dcae_decoder.onnx"))
    voc = onnx.load(str(FIXTURE / "vocoder.onnx"))
    set_dim(voc, "mel", 0, 1)
    voc.graph.input[0].name = "input"  # the reference feeds it positionally
    for node in voc.graph.node:
        node.input[:] = ["input" if i == "mel" else i for i in node.input]
    onnx.save(voc, str(dst / "vocoder.onnx"))
    shutil.copy(FIXTURE / "tokenizer.json", dst / "tokenizer.json")
    return dst
