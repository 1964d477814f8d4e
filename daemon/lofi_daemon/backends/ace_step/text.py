"""Prompt and lyric tokenization with the `tokenizers` library.

Prompts use the UMT5 tokenizer (tokenizer.json), truncated to 256 tokens like upstream. Lyrics follow upstream's
`tokenize_lyrics` token for token: a start token, then per line the line's language tag (`[en]`, `[zh-cn]`, …,
detected per line by lyric_lang.py; `[structure]` lines are English) + the line cleaned for that language
(lyric_clean.py) with spaces spelled `[SPACE]`, ended by the line-end token; a blank line (leading and trailing
ones too) is the line-end token alone. With no lyrics the instrumental convention applies: ids [0], mask [0].
A lyric longer than the lyric encoder's position table is refused, never cut.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ...errors import ErrorCode, LofiError
from . import lyric_clean, lyric_lang
from .layout import ModelLayout
from .lyric_rules import LANGUAGE_NAMES

log = logging.getLogger(__name__)

TEXT_MAX_LENGTH = 256
# The lyric encoder's relative position table (upstream EspnetRelPositionalEncoding max_len, the size the ONNX
# export bakes in); `lyric_max_tokens` in ace_step.json overrides it.
LYRIC_MAX_TOKENS = 5000
# A structure tag; upstream matches it at the start of a line, so "[verse] words" is English too.
STRUCTURE = re.compile(r"\[.*?\]")


class PromptTokenizer:
    def __init__(self, path: Path, max_length: int = TEXT_MAX_LENGTH) -> None:
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_padding()
        self._tok.enable_truncation(max_length)

    def __call__(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        enc = self._tok.encode(prompt)
        ids = np.asarray([enc.ids], dtype=np.int64)
        return ids, np.ones_like(ids)


@dataclass
class LyricTokens:
    ids: list[int]
    languages: list[str | None] = field(default_factory=list)  # per line; None for a blank or left-out line
    notes: list[str] = field(default_factory=list)  # what this install did differently from upstream, and why


class LyricTokenizer:
    def __init__(
        self, path: Path | None, start_id: int, line_end_id: int, max_tokens: int = LYRIC_MAX_TOKENS
    ) -> None:
        self._tok = Tokenizer.from_file(str(path)) if path is not None and Path(path).exists() else None
        self.start_id = start_id
        self.line_end_id = line_end_id
        self.max_tokens = max_tokens

    @property
    def available(self) -> bool:
        return self._tok is not None

    def _encode_line(self, line: str, lang: str) -> list[int]:
        assert self._tok is not None
        text = lyric_clean.clean(line, lang)
        tag = "zh-cn" if lang == "zh" else lang
        return self._tok.encode(f"[{tag}]{text}".replace(" ", "[SPACE]")).ids

    def tokens(self, lyrics: str) -> LyricTokens:
        """Upstream's `tokenize_lyrics`; raises LofiError when the result does not fit the position table."""
        assert self._tok is not None
        out = LyricTokens([self.start_id])
        fallbacks: dict[tuple[str, str], list[int]] = {}  # (language, what happens instead) → line numbers
        for number, raw in enumerate(lyrics.split("\n"), 1):
            line = raw.strip()
            if not line:
                out.ids.append(self.line_end_id)
                out.languages.append(None)
                continue
            structure = STRUCTURE.match(line) is not None
            lang = "en" if structure else lyric_lang.detect(line)
            for key in _fallbacks(line, lang, structure):
                fallbacks.setdefault(key, []).append(number)
            if lyric_lang.missing_modules(lang, detect=False) and lang in lyric_lang.CLEANER_MODULES:
                lang = "en"  # its romaniser is missing: the line's own characters, as English
            try:
                out.ids += self._encode_line(line, lang) + [self.line_end_id]
            except Exception as exc:  # noqa: BLE001 - as upstream: a line its cleaner cannot take is left out
                log.warning("lyric line %d (%s) left out: %s", number, lang, exc)
                out.notes.append(
                    f"lyric line {number} was left out: the {LANGUAGE_NAMES[lang]} cleaner failed ({exc})"
                )
                out.languages.append(None)
                continue
            out.languages.append(lang)
        for (lang, instead), lines in fallbacks.items():
            packages = sorted({lyric_lang.PACKAGES[m] for m in lyric_lang.missing_modules(lang)})
            out.notes.append(
                f"{LANGUAGE_NAMES[lang]} lyrics (line {', '.join(map(str, lines))}) need the lyrics extra "
                f"({lyric_lang.SETUP_HINT}; missing {', '.join(packages)}): {instead}"
            )
        if len(out.ids) > self.max_tokens:
            raise LofiError(
                ErrorCode.INVALID_PARAMS,
                f"lyrics are {len(out.ids)} tokens long; ACE-Step's lyric encoder takes at most {self.max_tokens} "
                "(its position table): shorten them",
                param="lyrics",
                tokens=len(out.ids),
                max_tokens=self.max_tokens,
            )
        return out

    def __call__(self, lyrics: str | None) -> tuple[np.ndarray, np.ndarray]:
        if not lyrics or self._tok is None:
            return np.zeros((1, 1), np.int64), np.zeros((1, 1), np.int64)
        arr = np.asarray([self.tokens(lyrics).ids], dtype=np.int64)
        return arr, np.ones_like(arr)


def lyric_tokenizer_for(layout: ModelLayout) -> LyricTokenizer:
    """The model directory's lyric tokenizer (unavailable when the layout has no lyric_tokenizer.json)."""
    path = layout.path("lyric_tokenizer.json")
    cfg = layout.config
    return LyricTokenizer(
        path if path.exists() else None,
        cfg["lyric_start_id"],
        cfg["lyric_line_end_id"],
        cfg.get("lyric_max_tokens", LYRIC_MAX_TOKENS),
    )


def _fallbacks(line: str, lang: str, structure: bool) -> list[tuple[str, str]]:
    """What this install does to the line unlike upstream, as (language, what it does instead)."""
    out = []
    guessed = lyric_lang.guess_script(line)
    if lang == "en" and not structure and guessed and not all(map(lyric_lang.installed, lyric_lang.DETECTOR)):
        out.append((guessed, "its lines are read as English"))
    if lang in lyric_lang.CLEANER_MODULES and lyric_lang.missing_modules(lang, detect=False):
        out.append(
            (lang, "its lines are read as English; characters missing from the vocabulary become [UNK]")
        )
    elif (
        lang in lyric_clean.SPELLS_NUMBERS
        and re.search(r"[0-9]", line)
        and not lyric_lang.installed("num2words")
    ):
        out.append((lang, "its numbers stay digits"))
    return out
