"""features.py: records in upstream's dataset format become the per-sample features the trainer reads — UMT5
states of the tags, lyric ids by the daemon's tokenizer (`[instrumental]` → the daemon's no-lyrics convention),
speaker embeddings, and latents from the audio encoder (a stand-in here until the DCAE encoder is on main)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ace_step_helpers import FIXTURE
from tests.lofi_lora_helpers import tone_set, write_wavs

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def stand_in_encoder(audio: np.ndarray, sr: int) -> np.ndarray:
    """Shape-true stand-in for `encode_audio`: one latent frame per 4096 samples at 44.1 kHz, values from the
    audio's frame energies so different audio gives different latents."""
    frames = max(1, int(np.ceil(audio.shape[1] * 44100 / sr / 4096)))
    energy = np.array([np.abs(c).mean() for c in np.array_split(audio.mean(0), frames)], np.float32)
    return np.broadcast_to(energy, (8, 16, frames)).copy()


def test_records_become_training_features(tmp_path):
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
    written = features.build(records, audio, FIXTURE, tmp_path / "features", encode=stand_in_encoder)
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
    assert samples["a"]["latents"].shape == (8, 16, 4) and not torch.equal(
        samples["a"]["latents"], samples["b"]["latents"]
    )
    batch = train.collate(list(samples.values()))  # and they batch for the trainer
    assert batch["lyric_ids"].shape[0] == 2 and batch["attention_mask"].sum() == 8


def test_a_foreign_file_in_the_features_folder_is_named(tmp_path):
    from scripts.lofi_lora import features
    from scripts.lofi_lora.errors import FAILED_INPUT, LoraError

    (tmp_path / "x.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(LoraError) as e:
        features.load_samples(tmp_path)
    assert e.value.code == FAILED_INPUT and "x.safetensors" in e.value.message
