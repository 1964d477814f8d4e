"""CLIP prompt tokenization with the `tokenizers` library, from the vocab.json + merges.txt that Stable Diffusion
checkpoints ship (the pipeline transformers' CLIPTokenizerFast builds from the same files: NFC, whitespace runs to
one space, lowercase; CLIP's word regex; byte-level symbols; BPE with the `</w>` end-of-word suffix;
<|startoftext|> … <|endoftext|>), truncated and padded to 77 tokens with <|endoftext|> as diffusers does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77
WORDS = r"'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"


class ClipTokenizer:
    def __init__(self, folder: Path, max_length: int = MAX_LENGTH) -> None:
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        lines = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        tok = Tokenizer(models.BPE(vocab, merges, unk_token=EOS, end_of_word_suffix="</w>", fuse_unk=False))
        tok.normalizer = normalizers.Sequence(
            [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
        )
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(WORDS), behavior="removed", invert=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.RobertaProcessing(
            sep=(EOS, vocab[EOS]), cls=(BOS, vocab[BOS]), add_prefix_space=False, trim_offsets=False
        )
        tok.enable_truncation(max_length)
        tok.enable_padding(length=max_length, pad_id=vocab[EOS], pad_token=EOS)
        self._tok = tok

    def __call__(self, texts: list[str]) -> np.ndarray:
        """[len(texts), 77] int64 ids."""
        return np.asarray([e.ids for e in self._tok.encode_batch(texts)], dtype=np.int64)
