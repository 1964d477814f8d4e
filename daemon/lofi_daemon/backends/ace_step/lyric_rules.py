"""Per-language spelling rules of upstream ACE-Step's lyric cleaner (acestep/models/lyrics_utils/lyric_tokenizer.py,
itself from Coqui XTTS), as data: language tags and their token ids, abbreviations, symbols, ordinal suffixes.

The model was trained on text cleaned by exactly these rules, so they are reproduced as they are (including
upstream's quirks, e.g. Russian abbreviations end at a word boundary, not at a dot).
"""

from __future__ import annotations

import re

# Upstream's SUPPORT_LANGUAGES: language → the id of its `[lang]` token in the real vocab (the text tag is
# `[zh-cn]` for zh). Any other detected language is tokenised as English.
LANGUAGE_TOKEN_IDS = {
    "en": 259,
    "de": 260,
    "fr": 262,
    "es": 284,
    "it": 285,
    "pt": 286,
    "pl": 294,
    "tr": 295,
    "ru": 267,
    "cs": 293,
    "nl": 297,
    "ar": 5022,
    "zh": 5023,
    "ja": 5412,
    "hu": 5753,
    "ko": 6152,
    "hi": 6680,
}
LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "pl": "Polish",
    "tr": "Turkish",
    "ru": "Russian",
    "cs": "Czech",
    "nl": "Dutch",
    "ar": "Arabic",
    "zh": "Chinese",
    "ja": "Japanese",
    "hu": "Hungarian",
    "ko": "Korean",
    "hi": "Hindi",
}

# Languages cleaned by the multilingual cleaner (numbers, abbreviations, symbols); ja is romanised instead and
# hi only lowercased.
MULTILINGUAL = frozenset(LANGUAGE_TOKEN_IDS) - {"ja", "hi"}

# "abbreviation." → words, case-insensitive, in this order (so "mrs" is tried before "mr").
ABBREVIATIONS: dict[str, list[tuple[str, str]]] = {
    "en": [
        ("mrs", "misess"),
        ("mr", "mister"),
        ("dr", "doctor"),
        ("st", "saint"),
        ("co", "company"),
        ("jr", "junior"),
        ("maj", "major"),
        ("gen", "general"),
        ("drs", "doctors"),
        ("rev", "reverend"),
        ("lt", "lieutenant"),
        ("hon", "honorable"),
        ("sgt", "sergeant"),
        ("capt", "captain"),
        ("esq", "esquire"),
        ("ltd", "limited"),
        ("col", "colonel"),
        ("ft", "fort"),
    ],
    "es": [
        ("sra", "señora"),
        ("sr", "señor"),
        ("dr", "doctor"),
        ("dra", "doctora"),
        ("st", "santo"),
        ("co", "compañía"),
        ("jr", "junior"),
        ("ltd", "limitada"),
    ],
    "fr": [
        ("mme", "madame"),
        ("mr", "monsieur"),
        ("dr", "docteur"),
        ("st", "saint"),
        ("co", "compagnie"),
        ("jr", "junior"),
        ("ltd", "limitée"),
    ],
    "de": [("fr", "frau"), ("dr", "doktor"), ("st", "sankt"), ("co", "firma"), ("jr", "junior")],
    "pt": [
        ("sra", "senhora"),
        ("sr", "senhor"),
        ("dr", "doutor"),
        ("dra", "doutora"),
        ("st", "santo"),
        ("co", "companhia"),
        ("jr", "júnior"),
        ("ltd", "limitada"),
    ],
    "it": [
        ("sig", "signore"),
        ("dr", "dottore"),
        ("st", "santo"),
        ("co", "compagnia"),
        ("jr", "junior"),
        ("ltd", "limitata"),
    ],
    "pl": [("p", "pani"), ("m", "pan"), ("dr", "doktor"), ("sw", "święty"), ("jr", "junior")],
    "cs": [("dr", "doktor"), ("ing", "inženýr"), ("p", "pan")],
    "ru": [("г-жа", "госпожа"), ("г-н", "господин"), ("д-р", "доктор")],
    "nl": [("dhr", "de heer"), ("mevr", "mevrouw"), ("dr", "dokter"), ("jhr", "jonkheer")],
    "tr": [("b", "bay"), ("byk", "büyük"), ("dr", "doktor")],
    "hu": [("dr", "doktor"), ("b", "bácsi"), ("nőv", "nővér")],
}
ABBREVIATION_END = {"ru": r"\b"}  # every other language: the abbreviation ends with a dot

# The words for & @ % # $ £ ° (in that order) per language.
SYMBOL_CHARS = "&@%#$£°"
SYMBOL_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("and", "at", "percent", "hash", "dollar", "pound", "degree"),
    "es": ("y", "arroba", "por ciento", "numeral", "dolar", "libra", "grados"),
    "fr": ("et", "arobase", "pour cent", "dièse", "dollar", "livre", "degrés"),
    "de": ("und", "at", "prozent", "raute", "dollar", "pfund", "grad"),
    "pt": ("e", "arroba", "por cento", "cardinal", "dólar", "libra", "graus"),
    "it": ("e", "chiocciola", "per cento", "cancelletto", "dollaro", "sterlina", "gradi"),
    "pl": ("i", "małpa", "procent", "krzyżyk", "dolar", "funt", "stopnie"),
    "ar": ("و", "على", "في المئة", "رقم", "دولار", "جنيه", "درجة"),
    "zh": ("和", "在", "百分之", "号", "美元", "英镑", "度"),
    "cs": ("a", "na", "procento", "křížek", "dolar", "libra", "stupně"),
    "ru": ("и", "собака", "процентов", "номер", "доллар", "фунт", "градус"),
    "nl": ("en", "bij", "procent", "hekje", "dollar", "pond", "graden"),
    "tr": ("ve", "at", "yüzde", "diyez", "dolar", "sterlin", "derece"),
    "hu": ("és", "kukac", "százalék", "kettőskereszt", "dollár", "font", "fok"),
    "ko": ("그리고", "에", "퍼센트", "번호", "달러", "파운드", "도"),
}

# Ordinal suffixes after digits ("1st", "2º", "3.") per language.
ORDINAL_SUFFIXES: dict[str, str] = {
    "en": r"(st|nd|rd|th)",
    "es": r"(º|ª|er|o|a|os|as)",
    "fr": r"(º|ª|er|re|e|ème)",
    "de": r"(st|nd|rd|th|º|ª|\.(?=\s|$))",
    "pt": r"(º|ª|o|a|os|as)",
    "it": r"(º|°|ª|o|a|i|e)",
    "pl": r"(º|ª|st|nd|rd|th)",
    "ar": r"(ون|ين|ث|ر|ى)",
    "cs": r"\.(?=\s|$)",
    "ru": r"(-й|-я|-е|-ое|-ье|-го)",
    "nl": r"(de|ste|e)",
    "tr": r"(\.|inci|nci|uncu|üncü|\.)",
    "hu": r"(\.|adik|edik|odik|edik|ödik|ödike|ik)",
    "ko": r"(번째|번|차|째)",
}
ORDINALS = {lang: re.compile(r"([0-9]+)" + suffix) for lang, suffix in ORDINAL_SUFFIXES.items()}

# The word num2words puts before the cents of a currency amount; dropped with the cents of whole amounts.
CURRENCY_AND = {"es": " con ", "fr": " et ", "de": " und ", "pt": " e ", "it": " e "}  # others: ", "
