"""scripts/export_ace_step.py --size full on a checkpoint directory in the published layout (ace_step_transformer/,
umt5-base/, music_dcae_f8c8/, music_vocoder/ with weight-norm tensors and mel_transform buffers), built here from
the tiny models: the checkpoint loads strictly into the project's modules and the export equals the fixture's."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ace_step_helpers import FIXTURE, fixed_inputs, rel_err
from tests.tolerances import ace_dcae_encoder, ace_latents, ace_wave, f32_tol

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_full_export_path_from_checkpoint_layout(tmp_path):
    from safetensors.torch import load_file, save_file

    from scripts.export_ace_step import load_torch, main

    models = load_torch(FIXTURE)
    ckpt = tmp_path / "checkpoints"
    models["transformer"].save_pretrained(str(ckpt / "ace_step_transformer"))
    models["text_encoder"].save_pretrained(str(ckpt / "umt5-base"))
    (ckpt / "umt5-base" / "tokenizer.json").write_bytes((FIXTURE / "tokenizer.json").read_bytes())
    models["dcae"].save_pretrained(str(ckpt / "music_dcae_f8c8"))
    models["vocoder"].save_pretrained(str(ckpt / "music_vocoder"))
    voc_file = next((ckpt / "music_vocoder").glob("*.safetensors"))
    sd = load_file(str(voc_file))
    assert any(k.endswith("weight_g") for k in sd)  # checkpoint-style weight norm
    sd["mel_transform.mel_scale.fb"] = torch.zeros(3, 2)  # encode-path buffer the project does not model
    save_file(sd, str(voc_file))
    out = tmp_path / "onnx"
    main(
        [
            "--size",
            "full",
            "--checkpoint",
            str(ckpt),
            "--lyric-vocab",
            str(FIXTURE / "lyric_tokenizer.json"),
            "--out",
            str(out),
        ]
    )

    import json

    from lofi_daemon.backends.ace_step.layout import detect
    from lofi_daemon.backends.ace_step.pipeline import AceStepPipeline, SamplingParams
    from lofi_daemon.backends.ace_step.sessions import session_factory

    layout = detect(out)
    assert layout.kind == "lofi" and json.loads((out / "ace_step.json").read_text())["lyric_start_id"] == 261
    pipe = AceStepPipeline(layout, session_factory(threads=1))
    ref = AceStepPipeline(detect(FIXTURE), session_factory(threads=1))
    ids, mask, _, _, noise = fixed_inputs(frames=13, lyrics=False)
    lyric = np.zeros((1, 1), np.int64)
    p = SamplingParams(steps=4)
    a = pipe.sample(pipe.conditions_from_ids(ids, mask, lyric, lyric, p), noise, p)
    b = ref.sample(ref.conditions_from_ids(ids, mask, lyric, lyric, p), noise, p)
    # the same weights exported twice (weight norm folded by a different route): equal up to float32 rounding,
    # which depends on the CPU's kernels (an AVX-512/AMX Xeon measured 1.6e-6)
    assert rel_err(a, b) < f32_tol(ace_latents(4)), rel_err(a, b)
    wave_err = rel_err(pipe.waveform(pipe.mel(a)), ref.waveform(ref.mel(b)))
    assert wave_err < f32_tol(ace_wave(4, 13)), wave_err
    audio = np.random.default_rng(2).uniform(-0.5, 0.5, (20000, 2)).astype(np.float32)
    enc_err = rel_err(pipe.encode_audio(audio, 44100), ref.encode_audio(audio, 44100))
    assert enc_err < f32_tol(ace_dcae_encoder(5)), enc_err


def test_encoder_only_adds_the_encoder_to_an_older_export(tmp_path):
    """`--encoder-only` on a directory without dcae_encoder.onnx (tiny: from its torch/ weights) writes the same
    graph the full export writes."""
    import shutil

    from lofi_daemon.backends.ace_step.encode import encode_mel, log_mel
    from lofi_daemon.backends.ace_step.sessions import session_factory

    from scripts.export_ace_step import main

    shutil.copytree(FIXTURE / "torch", tmp_path / "torch")
    main(["--size", "tiny", "--out", str(tmp_path), "--encoder-only"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dcae_encoder.onnx", "torch"]
    mel = log_mel(np.random.default_rng(4).uniform(-0.5, 0.5, (2, 8 * 4096)))
    make = session_factory(threads=1)
    new = encode_mel(mel, make(str(tmp_path / "dcae_encoder.onnx"), None))
    committed = encode_mel(mel, make(str(FIXTURE / "dcae_encoder.onnx"), None))
    assert rel_err(new, committed) < f32_tol(ace_dcae_encoder(8)), rel_err(new, committed)
