"""Which language a lyric line is in, as upstream ACE-Step decides it, and which languages this install can clean.

Upstream runs LangSegment (its copy of LangSegment 0.3.5 on top of py3langid) with a filter of ~100 languages over
each line and takes the language with the most characters (Chinese counts double), preferring the runner-up over
English; a language outside its 17 is English. The `lyrics` extra installs the same LangSegment 0.3.5 code
(`langsegment-backup`) and py3langid 0.3.0 that upstream pins, plus the cleaners' packages.

Without the extra every line is English (lofi's behaviour before), and `missing_for` names what a line would need.
"""

from __future__ import annotations

import importlib.util
import re
import threading
from functools import cache, lru_cache
from typing import Any

from .lyric_rules import LANGUAGE_NAMES, LANGUAGE_TOKEN_IDS, MULTILINGUAL

# Upstream's LangSegment filter (acestep/language_segmentation/language_filters.py `default`): the languages the
# segmenter may report; its order decides ties.
SEGMENT_FILTER = (
    "af am an ar as az be bg bn br bs ca cs cy da de dz el en eo es et eu fa fi fo fr ga gl gu he hi hr ht hu hy id "
    "is it ja jv ka kk km kn ko ku ky la lb lo lt lv mg mk ml mn mr ms mt nb ne nl nn no oc or pa pl ps pt qu ro ru "
    "rw se si sk sl sq sr sv sw ta te th tl tr ug uk ur vi vo wa xh zh zu"
).split()

SETUP_HINT = "scripts/setup --lyrics"
# Python module → the pip package that provides it (all in the `lyrics` extra).
PACKAGES = {
    "LangSegment": "langsegment-backup",
    "py3langid": "py3langid",
    "num2words": "num2words",
    "pypinyin": "pypinyin",
    "cutlet": "cutlet",
    "fugashi": "fugashi",
    "unidic_lite": "unidic-lite",
    "hangul_romanize": "hangul-romanize",
}
DETECTOR = ("LangSegment", "py3langid")
CLEANER_MODULES = {
    "zh": ("pypinyin",),
    "ja": ("cutlet", "fugashi", "unidic_lite"),
    "ko": ("hangul_romanize",),
}

# Scripts that tell a line is not English even without the detector (to say what the extra would change).
SCRIPT_GUESS = (
    (re.compile(r"[\u3040-\u30ff]"), "ja"),
    (re.compile(r"[\uac00-\ud7af\u1100-\u11ff]"), "ko"),
    (re.compile(r"[\u4e00-\u9fff]"), "zh"),
    (re.compile(r"[\u0400-\u04ff]"), "ru"),
    (re.compile(r"[\u0600-\u06ff]"), "ar"),
    (re.compile(r"[\u0900-\u097f]"), "hi"),
)


@cache
def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def missing_modules(lang: str, detect: bool = True) -> list[str]:
    """The modules of the `lyrics` extra that lyrics in `lang` need and that are not installed."""
    need = [*DETECTOR] if detect and lang != "en" else []
    need += CLEANER_MODULES.get(lang, ("num2words",) if lang in MULTILINGUAL else ())
    return [m for m in need if not installed(m)]


def languages() -> dict[str, dict[str, Any]]:
    """Every language upstream supports: its name, whether this install handles it as upstream does, and the
    packages it still needs (health)."""
    out = {}
    for lang in LANGUAGE_TOKEN_IDS:
        missing = missing_modules(lang)
        out[lang] = {
            "name": LANGUAGE_NAMES[lang],
            "available": not missing,
            "missing": sorted({PACKAGES[m] for m in missing}),
        }
    return out


_SEGMENTER_LOCK = threading.Lock()


@cache
def _segmenter():
    from LangSegment import LangSegment

    segmenter = LangSegment()
    segmenter.setfilters(SEGMENT_FILTER)
    return segmenter


def detect(line: str) -> str:
    """The line's language code among LANGUAGE_TOKEN_IDS (upstream `get_lang` + `tokenize_lyrics`' mapping)."""
    if not all(installed(m) for m in DETECTOR):
        return "en"
    return _detect(line)


# py3langid takes ≈ 25 ms a segment on a loaded 2-core machine; songs repeat lines, and `generate` tokenises the
# lyrics that validation already did.
@lru_cache(maxsize=4096)
def _detect(line: str) -> str:
    try:
        with (
            _SEGMENTER_LOCK
        ):  # the segmenter keeps the last text's counts; validation and generation share it
            segmenter = _segmenter()
            segmenter.getTexts(line)
            counts = segmenter.getCounts()
        lang = counts[0][0]
        if len(counts) > 1 and lang == "en":
            lang = counts[1][0]
    except Exception:  # noqa: BLE001 - upstream: any failure of the segmenter means English
        lang = "en"
    return lang if lang in LANGUAGE_TOKEN_IDS else "en"


def guess_script(line: str) -> str | None:
    """A language the line's script shows (only used to explain what the missing detector would change)."""
    for pattern, lang in SCRIPT_GUESS:
        if pattern.search(line):
            return lang
    return None
