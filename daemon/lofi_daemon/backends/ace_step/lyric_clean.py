"""Upstream ACE-Step's per-language lyric cleaning: numbers, abbreviations and symbols spelled out, lowercase,
collapsed whitespace; Chinese read out in characters then romanised to numbered pinyin, Korean romanised, Japanese
romanised to romaji. The rules are data in lyric_rules.py; the language packages are the optional `lyrics` extra
(lyric_lang.py says which are installed).

Each step behaves as upstream's does when it fails (for example num2words has no Korean cardinals): the text of that
step is kept unchanged and the next step runs.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from . import lyric_rules as rules
from .lyric_zh_numbers import normalize_chinese

SPELLS_NUMBERS = rules.MULTILINGUAL - {"zh"}  # the languages whose numbers num2words says
WHITESPACE = re.compile(r"\s+")
NUMBER = re.compile(r"[0-9]+")
GROUPED_COMMA = re.compile(r"\b\d{1,3}(,\d{3})*(\.\d+)?\b")  # 1,000,000.5 (en, ru)
GROUPED_DOT = re.compile(r"\b\d{1,3}(.\d{3})*(\,\d+)?\b")  # 1.000.000,5 (others; the "." is any character)
DECIMAL = re.compile(r"([0-9]+[.,][0-9]+)")
CURRENCIES = (  # checked in this order
    ("GBP", re.compile(r"((£[0-9\.\,]*[0-9]+)|([0-9\.\,]*[0-9]+£))")),
    ("USD", re.compile(r"((\$[0-9\.\,]*[0-9]+)|([0-9\.\,]*[0-9]+\$))")),
    ("EUR", re.compile(r"(([0-9\.\,]*[0-9]+€)|((€[0-9\.\,]*[0-9]+)))")),
)


@cache
def _abbreviations(lang: str) -> list[tuple[re.Pattern[str], str]]:
    end = rules.ABBREVIATION_END.get(lang, r"\.")
    return [
        (re.compile(r"\b" + short + end, re.IGNORECASE), long) for short, long in rules.ABBREVIATIONS[lang]
    ]


def _num2words(value: Any, lang: str, **kwargs: Any) -> str:
    from num2words import num2words

    return num2words(value, lang="cz" if lang == "cs" else lang, **kwargs)


def _currency(match: re.Match[str], lang: str, currency: str) -> str:
    amount = float(re.sub(r"[^\d.]", "", match.group(0).replace(",", ".")))
    words = _num2words(amount, lang, to="currency", currency=currency)
    if amount.is_integer():  # drop the "and zero cents" part
        cut = words.rfind(rules.CURRENCY_AND.get(lang, ", "))
        if cut != -1:
            words = words[:cut]
    return words


def expand_numbers(text: str, lang: str) -> str:
    """Numbers as words (raises when num2words cannot say them in `lang`)."""
    if lang == "zh":
        return normalize_chinese(text)
    grouped = GROUPED_COMMA if lang in ("en", "ru") else GROUPED_DOT
    separator = "," if lang in ("en", "ru") else "."
    text = grouped.sub(lambda m: m.group(0).replace(separator, ""), text)
    try:  # currencies one after another; the first that num2words cannot say ends this step only
        for currency, pattern in CURRENCIES:
            text = pattern.sub(lambda m, c=currency: _currency(m, lang, c), text)  # type: ignore[misc]
    except Exception:  # noqa: BLE001 - upstream ignores any failure here
        pass
    if lang != "tr":
        text = DECIMAL.sub(lambda m: _num2words(float(m.group(1).replace(",", ".")), lang), text)
    text = rules.ORDINALS[lang].sub(lambda m: _num2words(int(m.group(1)), lang, ordinal=True), text)
    return NUMBER.sub(lambda m: _num2words(int(m.group(0)), lang), text)


def expand_abbreviations(text: str, lang: str) -> str:
    for pattern, words in _abbreviations(lang):
        text = pattern.sub(words, text)
    return text


def expand_symbols(text: str, lang: str) -> str:
    for char, words in zip(rules.SYMBOL_CHARS, rules.SYMBOL_WORDS[lang], strict=True):
        text = text.replace(char, f" {words} ").replace("  ", " ")
    return text.strip()


def multilingual_clean(text: str, lang: str) -> str:
    text = text.replace('"', "")
    if lang == "tr":
        text = text.replace("İ", "i").replace("Ö", "ö").replace("Ü", "ü")
    text = text.lower()
    for step in (expand_numbers, expand_abbreviations, expand_symbols):
        try:
            text = step(text, lang)
        except Exception:  # noqa: BLE001 - as upstream: a step that fails leaves the text as it was
            pass
    return WHITESPACE.sub(" ", text)


def pinyin(text: str) -> str:
    """Numbered pinyin without separators (neutral tone 5); other characters stay as they are."""
    import pypinyin

    style = pypinyin.Style.TONE3
    return "".join(
        p[0] for p in pypinyin.pinyin(text, style=style, heteronym=False, neutral_tone_with_five=True)
    )


@cache
def _korean():
    from hangul_romanize import Transliter
    from hangul_romanize.rule import academic

    return Transliter(academic)


@cache
def _cutlet():
    import cutlet

    return cutlet.Cutlet()


def clean(text: str, lang: str) -> str:
    """One lyric line in the form upstream's VoiceBpe tokenizer saw in training."""
    if lang == "ja":
        return _cutlet().romaji(text).lower()
    if lang == "hi":
        return WHITESPACE.sub(" ", text.lower())
    text = multilingual_clean(text, lang)
    if lang == "zh":
        return pinyin(text)
    if lang == "ko":
        return _korean().translit(text)
    return text
