"""Prompt and lyric tokenization with the `tokenizers` library.

Prompts use the UMT5 tokenizer (tokenizer.json), truncated to 256 tokens like upstream. Lyrics follow upstream's
`tokenize_lyrics` line structure: a start token, then per line `[en]` + the line with spaces spelled `[SPACE]`,
ended by the line-end token; blank lines contribute only the line-end token. Upstream's multilingual cleaners
(number/abbreviation expansion, language detection, G2P for zh/ja/ko) are not reproduced: every line is English
with lowercase and whitespace cleanup. With no lyrics the instrumental convention applies: ids [0], mask [0].
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

TEXT_MAX_LENGTH = 256


class PromptTokenizer:
    def __init__(self, path: Path, max_length: int = TEXT_MAX_LENGTH) -> None:
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)

    def __call__(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        enc = self._tok.encode(prompt)
        ids = np.asarray([enc.ids], dtype=np.int64)
        return ids, np.ones_like(ids)


class LyricTokenizer:
    def __init__(self, path: Path | None, start_id: int, line_end_id: int) -> None:
        self._tok = Tokenizer.from_file(str(path)) if path is not None and Path(path).exists() else None
        self.start_id = start_id
        self.line_end_id = line_end_id

    @property
    def available(self) -> bool:
        return self._tok is not None

    def __call__(self, lyrics: str | None) -> tuple[np.ndarray, np.ndarray]:
        if not lyrics or not lyrics.strip() or self._tok is None:
            return np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64)
        ids = [self.start_id]
        for line in lyrics.split("\n"):
            line = line.strip()
            if line:
                text = re.sub(r"\s+", " ", line.replace('"', "").lower())
                ids += self._tok.encode("[en]" + text.replace(" ", "[SPACE]")).ids
            ids.append(self.line_end_id)
        arr = np.asarray([ids], dtype=np.int64)
        return arr, np.ones_like(arr)
