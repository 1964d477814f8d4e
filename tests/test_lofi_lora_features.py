"""features.py: records in upstream's dataset format become the per-sample features the trainer reads — UMT5
states of the tags, lyric ids by the daemon's tokenizer (`[instrumental]` → the daemon's no-lyrics convention),
speaker embeddings, and DCAE latents from the daemon's audio encoder (or the PyTorch reference for an upstream
checkpoint folder)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ace_step_helpers import FIXTURE
from tests.lofi_lora_helpers import tone_set, write_wavs

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def test_records_become_training_features(tmp_path):
    import onnxruntime as ort
    import soundfile as sf
    from lofi_daemon.backends.ace_step import encode as enc
    from lofi_daemon.backends.ace_step.text import PromptTokenizer

    from scripts.lofi_lora import features, train
    from scripts.lofi_lora.base import load, tokenizer_file

    audio = write_wavs(tmp_path / "audio", tone_set(2, seconds=0.3, sr=48000))
    np.save(tmp_path / "audio" / "voice.npy", np.arange(16, dtype=np.float32))
    records = [
        {
            "keys": "a",
            "filename": "clip0.wav",
            "tags": ["lofi", "piano"],
            "speaker_emb_path": "",
            "norm_lyrics": "[instrumental]",
            "recaption": {},
        },
        {
            "keys": "b",
            "filename": "clip1.wav",
            "tags": ["jazz", "guitar"],
            "speaker_emb_path": "voice.npy",
            "norm_lyrics": "soft rain\non the window",
            "recaption": {},
        },
    ]
    written = features.build(records, audio, FIXTURE, tmp_path / "features")
    assert [p.name for p in written] == ["a.safetensors", "b.safetensors"]
    samples = {s["key"]: s for s in features.load_samples(tmp_path / "features")}

    ids, mask = PromptTokenizer(tokenizer_file(FIXTURE))("lofi, piano")
    te = load(FIXTURE, ("text_encoder",))["text_encoder"]
    with torch.no_grad():
        want = te(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state[0]
    assert torch.equal(samples["a"]["text_states"], want)
    assert samples["a"]["lyric_ids"].tolist() == [0] and samples["a"]["lyric_mask"].tolist() == [0]
    assert torch.equal(samples["a"]["speaker_emb"], torch.zeros(16))
    assert (
        samples["b"]["lyric_ids"][0].item() == 3 and samples["b"]["lyric_mask"].sum() > 4
    )  # start id, tokens
    assert torch.equal(samples["b"]["speaker_emb"], torch.arange(16, dtype=torch.float32))
    # 0.3 s at 48 kHz → 13230 samples at 44.1 kHz → 4 latent frames; the daemon's encoder made them
    clip, sr = sf.read(str(audio / "clip0.wav"), dtype="float32")
    session = ort.InferenceSession(str(FIXTURE / enc.ENCODER_FILE))
    assert np.array_equal(samples["a"]["latents"].numpy(), enc.encode_audio(clip, sr, session)[0])
    assert samples["a"]["latents"].shape == (8, 16, 4)
    assert not torch.equal(samples["a"]["latents"], samples["b"]["latents"])
    batch = train.collate(list(samples.values()))  # and they batch for the trainer
    assert batch["lyric_ids"].shape[0] == 2 and batch["attention_mask"].sum() == 8


def test_a_foreign_file_in_the_features_folder_is_named(tmp_path):
    from scripts.lofi_lora import features
    from scripts.lofi_lora.errors import FAILED_INPUT, LoraError

    (tmp_path / "x.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(LoraError) as e:
        features.load_samples(tmp_path)
    assert e.value.code == FAILED_INPUT and "x.safetensors" in e.value.message


def test_an_upstream_style_base_without_the_onnx_encoder_uses_the_torch_reference(tmp_path):
    """Same latents from the PyTorch reference on the base's DCAE as from the daemon's ONNX encoder, to float32
    rounding (the encoder's chain, tests/tolerances.py)."""
    import shutil

    from scripts.lofi_lora import features
    from tests.ace_step_helpers import rel_err
    from tests.tolerances import ace_dcae_encoder, f32_tol

    torch_only = tmp_path / "base"
    shutil.copytree(FIXTURE / "torch", torch_only / "torch")
    clip, sr = tone_set(1, seconds=0.5, sr=48000)[0]
    onnx_latents = features.audio_encoder(FIXTURE)(clip, sr)
    torch_latents = features.audio_encoder(torch_only)(clip, sr)
    frames = onnx_latents.shape[-1]
    assert torch_latents.shape == onnx_latents.shape == (1, 8, 16, 6)
    assert rel_err(torch_latents, onnx_latents) < f32_tol(ace_dcae_encoder(frames))


def test_a_dataset_made_by_lofi_lora_dataset_trains(tmp_path):
    """The two halves meet: `dataset --features` precomputes through features.build into DATA_DIR/features, and
    `train --data-dir` trains on exactly the training tracks."""
    from tests.lofi_lora_helpers import lofi_lora

    audio = write_wavs(tmp_path / "data" / "audio", tone_set(3, seconds=0.3, sr=48000))
    for i in range(3):
        (audio / f"clip{i}_prompt.txt").write_text("lofi, piano, rain")
        (audio / f"clip{i}_lyrics.txt").write_text("[instrumental]")
    data = ["--data-dir", str(tmp_path / "data"), "--base", str(FIXTURE)]
    code, res = lofi_lora("dataset", "--features", *data)
    assert code == 0, res
    assert res["features"] == res["counts"]["train_tracks"] == 2
    code, res = lofi_lora("train", *data, "--out", str(tmp_path / "run"), "--steps", "2", "--rank", "2")
    assert code == 0, res
    assert res["samples"] == 2 and res["step"] == 2 and res["last_loss"] > 0
