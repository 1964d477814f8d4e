"""CLAP prompt–audio alignment with transformers' `ClapModel`, loaded from a local folder (e.g. a download of
laion/larger_clap_music): the cosine similarity between the prompt's text embedding and the audio's embedding.

The feature extractor's default truncation ("fusion") yields four mel channels that only fusion-enabled models
read; we ask for "rand_trunc" (one random crop of long audio, repeat-padding of short audio), with a fixed seed so a
score is reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ENVIRONMENT, LoraError
from .fad import Embedder, to_mono


class Clap:
    def __init__(self, path: Path) -> None:
        from transformers import AutoTokenizer, ClapFeatureExtractor, ClapModel

        try:
            self.model = ClapModel.from_pretrained(str(path)).eval()
            self.features = ClapFeatureExtractor.from_pretrained(str(path))
            self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        except (OSError, ValueError) as e:
            raise LoraError(
                f"{path} is no CLAP model folder (transformers ClapModel): {e}", ENVIRONMENT
            ) from e
        self.sample_rate = int(self.features.sampling_rate)

    def audio_embeds(self, waves: list[tuple[np.ndarray, int]]) -> np.ndarray:
        """Unit-norm audio embeddings [n, d] of (audio, sample rate) pairs."""
        import torch

        mono = [to_mono(a, sr, self.sample_rate) for a, sr in waves]
        state = np.random.get_state()  # rand_trunc crops with numpy's global generator
        np.random.seed(0)
        try:
            x = self.features(
                mono,
                sampling_rate=self.sample_rate,
                return_tensors="pt",
                truncation="rand_trunc",
                padding="repeatpad",
            )
        finally:
            np.random.set_state(state)
        with torch.no_grad():
            e = self.model.get_audio_features(input_features=x["input_features"])
        return torch.nn.functional.normalize(e, dim=-1).numpy().astype(np.float64)

    def text_embeds(self, prompts: list[str]) -> np.ndarray:
        import torch

        t = self.tokenizer(prompts, padding=True, return_tensors="pt")
        with torch.no_grad():
            e = self.model.get_text_features(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
        return torch.nn.functional.normalize(e, dim=-1).numpy().astype(np.float64)

    def scores(self, prompts: list[str], waves: list[tuple[np.ndarray, int]]) -> np.ndarray:
        """Cosine similarity of each prompt with its audio."""
        return (self.text_embeds(prompts) * self.audio_embeds(waves)).sum(-1)

    def embedder(self) -> Embedder:
        """CLAP audio embeddings as an FAD embedder (one vector per clip)."""
        return Embedder("clap", self.sample_rate, lambda wave: self.audio_embeds([(wave, self.sample_rate)]))
