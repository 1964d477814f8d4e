"""Golden lyric token ids from upstream ACE-Step's own tokenizer code, for tests/test_ace_step_lyrics.py.

How the committed fixture was made:

    git clone https://github.com/ace-step/ACE-Step build/upstream/ACE-Step     # ignored folder, never committed
    (commit d612523f50e252c0e138e68ae75b06223f96e934; only acestep/models/lyrics_utils,
     acestep/language_segmentation and acestep/pipeline_ace_step.py are read)
    scripts/setup --lyrics                                                       # the language packages
    python scripts/lyrics_golden.py --upstream build/upstream/ACE-Step \\
        --out tests/fixtures/ace-step-lyrics/golden.json
    python scripts/lyrics_golden.py --upstream build/upstream/ACE-Step --random 800 --seed 1   # and seeds 2-4

`--random N` also runs N random lines of words, numbers and symbols through upstream and lofi's tokenizer and
prints those that differ (3,200 over seeds 1-4: none).

Upstream's `VoiceBpeTokenizer` (lyric_tokenizer.py, with its vocab.json), its `LangSegment` copy and the two
pipeline methods `get_lang` / `tokenize_lyrics` (taken out of pipeline_ace_step.py by name, so the diffusion
stack need not be importable) run unchanged on every lyric of CORPUS. spaCy is replaced by an empty module: upstream
imports it only for `split_sentence`, which `encode` never calls. The fixture holds each lyric and its id sequence.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import logging
import random
import re
import sys
import types
from pathlib import Path

# Every language upstream's SUPPORT_LANGUAGES lists, with numbers, ordinals, currency, symbols, abbreviations,
# structure tags, quotes, mixed scripts, and blank lines at the start, the middle and the end.
CORPUS: list[str] = [
    "la la la",
    "rock & roll, 100%",
    "[verse]\nI walked 2 miles at 5:30 with Mr. Smith\n\n[chorus]\nLa la la, oh oh oh!",
    "\n\n[intro]\nthe 1st time, the 22nd night, 3.5 hours\n\n",
    "It costs $12.50 and £3, or 20€ — @home #1",
    'She said "hello" to Dr. Jones on St. Mark\'s street',
    "We're the champions, my friend 1,000,000 times",
    "[verse]\n我们一起走过2024年的春天\n你的笑容像100朵花",
    "月亮代表我的心, 你问我爱你有多深",
    "[chorus]\n夜空に輝く星たちよ\n東京の街で君を待つ",
    "今日は3月15日、雨が降っています",
    "사랑해요 오늘 밤\n[bridge]\n우리 함께 3번 노래해",
    "Bailamos toda la noche, 25 canciones, el 1º día",
    "Je t'aime à la folie, 3 fois, 1er amour, M. Dupont",
    "Ich liebe dich, 99 Luftballons, am 3. Mai, z.B. heute",
    "Я люблю тебя, 7 дней в неделю",
    "Eu te amo, 12 estrelas no céu, Sr. Silva",
    "Ti amo, 4 stagioni, la 2a volta, Sig. Rossi",
    "Kocham cię, 10 razy dziennie",
    "Seni seviyorum, 5 kez, İstanbul'da",
    "Miluji tě, 8 hodin denně",
    "Dobrý den, jak se máš? Já se mám dobře, děkuji, 2. den",
    "Ik hou van jou, 6 keer per dag",
    "أحبك كثيرا 3 مرات",
    "Szeretlek, 9 csillag az égen",
    "मैं तुमसे प्यार करता हूँ 2 बार",
    "oh 你好 hello world, こんにちは",
    "[outro]\n  spaces   inside    this line  \n\n\nend",
    "Love is 50% luck & 50% work",
    "我花了35.5元买了1000朵玫瑰, 打八折是80%, 还有3/4的人",
    "2008年8月8日晚上8点, 一共12345个人, 电话13812345678",
    "他有2个孩子和22本书, 200块钱, 两千零二",
    "P2P B2B 第1名",
    "打给我+86 13812345678, 或者座机010-12345678",
    "東京で2人、100円のコーヒー",
    "오늘 1번째 노래, 10% 할인 & 무료",
    "Dra. García pagó 5,50€ y $3 el 2º día",
    "Le 21e siècle, 1 000 euros, 3,14",
    "Am 1. Januar um 12:00 Uhr, 2,5 Prozent",
    "İSTANBUL'DA 3. GÜN",
    "Мы встретились 25-го мая в 2020 году",
    "The 1990s were 100 times better than 2000",
    "oh-oh-oh, na-na-na (yeah) [hook]",
    "[Verse 1]\nLINE ONE\n[Pre-Chorus]\nline two",
    "  \n\t\n",
    "مرحبا 2024 & #حب",
]


def load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def upstream_tokenize(root: Path):
    """upstream's `tokenize_lyrics` bound to its own LangSegment and VoiceBpeTokenizer."""
    sys.path.insert(0, str(root))
    spacy = types.ModuleType("spacy")
    spacy_lang = types.ModuleType("spacy.lang")
    sys.modules.update({"spacy": spacy, "spacy.lang": spacy_lang})
    for code, cls in (
        ("ar", "Arabic"),
        ("en", "English"),
        ("es", "Spanish"),
        ("ja", "Japanese"),
        ("zh", "Chinese"),
    ):
        sub = types.ModuleType(f"spacy.lang.{code}")
        setattr(sub, cls, object)
        sys.modules[f"spacy.lang.{code}"] = sub
    from acestep.language_segmentation import LangSegment, language_filters  # type: ignore[import-not-found]
    from acestep.models.lyrics_utils.lyric_tokenizer import VoiceBpeTokenizer  # type: ignore[import-not-found]

    source = (root / "acestep" / "pipeline_ace_step.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    wanted: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id in ("SUPPORT_LANGUAGES", "structure_pattern")
            for t in node.targets
        ):
            wanted.append(node)
        if isinstance(node, ast.ClassDef) and node.name == "ACEStepPipeline":
            methods = [m for m in node.body if isinstance(m, ast.FunctionDef)]
            node.body = [m for m in methods if m.name in ("get_lang", "tokenize_lyrics")]  # type: ignore[misc]
            node.bases, node.decorator_list, node.keywords = [], [], []
            wanted.append(node)
    namespace: dict = {"re": re, "logger": logging.getLogger("upstream")}
    exec(
        compile(ast.Module(body=wanted, type_ignores=[]), str(root / "pipeline_ace_step.py"), "exec"),
        namespace,
    )
    pipe = namespace["ACEStepPipeline"].__new__(namespace["ACEStepPipeline"])
    segment = LangSegment()
    segment.setfilters(language_filters.default)
    pipe.lang_segment = segment
    pipe.lyric_tokenizer = VoiceBpeTokenizer()
    return pipe.tokenize_lyrics, namespace["SUPPORT_LANGUAGES"]


# Words per language and number/symbol forms that random lines are made of (--random).
WORDS = {
    "en": "love night baby dance rain fire heart street dream Mr. Dr. St. Jr. Co.",
    "es": "amor noche corazón bailar Sr. Sra. Dra. fuego",
    "fr": "amour nuit cœur danser Mme. Mr. Dr. feu",
    "de": "Liebe Nacht Herz tanzen Fr. Dr. St. Feuer",
    "ru": "любовь ночь сердце танцевать г-н д-р",
    "zh": "我 爱 你 夜晚 星星 月亮 心 跳舞 元 块 个 朵 年 月 日 号",
    "ja": "愛 夜 星 月 心 踊る 東京 君 僕 です ね",
    "ko": "사랑 밤 별 달 마음 춤 너 나 번째 번",
    "pt": "amor noite coração dançar Sr. Sra.",
    "it": "amore notte cuore ballare Sig. Dr.",
    "pl": "miłość noc serce tańczyć",
    "tr": "aşk gece kalp dans İstanbul",
    "nl": "liefde nacht hart dansen dhr. mevr.",
    "hu": "szerelem éjszaka szív tánc dr.",
    "ar": "حب ليل قلب رقص",
    "hi": "प्यार रात दिल नाच",
    "cs": "láska noc srdce tančit",
}
NUMBERS = (
    "1 2 3 10 12 22 100 1000 2024 1,000 1.000 3.5 3,5 $5 £3 20€ $1,000.50 50% 1st 2nd 3rd 4th 1º 2ª 1er 3. 25-го "
    '12:30 3/4 #1 @home & ° "q" 1990s 0 007 99.99 13812345678 010-12345678 0755-1234567 1234567'
).split()


def compare_random(tokenize, count: int, seed: int) -> int:
    """Random lines of words, numbers, symbols and structure tags through upstream and lofi; prints the lines
    that differ and returns how many did."""
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root / "daemon"))  # this checkout's daemon, not an installed one
    from lofi_daemon.backends.ace_step.text import LyricTokenizer

    vocab = root / "tests" / "fixtures" / "ace-step-lyrics" / "vocab.json"
    ours = LyricTokenizer(vocab, 261, 2)
    rng = random.Random(seed)
    differ = 0
    for _ in range(count):
        words = WORDS[rng.choice(sorted(WORDS))].split()
        line = " ".join(
            rng.choice(words if rng.random() < 0.7 else NUMBERS) for _ in range(rng.randint(1, 8))
        )
        if rng.random() < 0.2:
            line = f"[{rng.choice(['verse', 'chorus', 'Bridge 2'])}] {line}"
        if tokenize(line) != ours.tokens(line).ids:
            differ += 1
            print(f"differs: {line!r}")
    print(f"{count - differ} of {count} random lines equal")
    return differ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--upstream", type=Path, required=True, help="an ACE-Step v1 checkout (ignored folder)")
    ap.add_argument("--out", type=Path, help="write the golden fixture here")
    ap.add_argument("--random", type=int, default=0, help="also compare N random lines with lofi's tokenizer")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tokenize, languages = upstream_tokenize(args.upstream.resolve())
    if args.random and compare_random(tokenize, args.random, args.seed):
        raise SystemExit(1)
    if args.out is None:
        return
    cases = [{"lyrics": lyric, "ids": tokenize(lyric)} for lyric in CORPUS]
    doc = {
        "source": "ACE-Step v1 commit d612523f50e252c0e138e68ae75b06223f96e934, scripts/lyrics_golden.py",
        "languages": languages,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(case, ensure_ascii=False) for case in cases]  # one lyric a line: readable diffs
    head = json.dumps({k: v for k, v in doc.items() if k != "cases"}, ensure_ascii=False)[:-1]
    args.out.write_text(head + ', "cases": [\n' + ",\n".join(lines) + "\n]}\n", encoding="utf-8")
    print(f"{len(cases)} lyrics → {args.out}")


if __name__ == "__main__":
    main()
