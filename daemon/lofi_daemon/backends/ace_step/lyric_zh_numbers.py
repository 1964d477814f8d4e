"""Chinese numbers read out in characters, as upstream ACE-Step's Chinese lyric cleaner does (its zh_num2words
TextNorm with default options): dates, money, telephone numbers, fractions, percentages, numbers before a measure
word, digit strings of 4+ digits (read digit by digit), other numbers (read with 十百千万亿), then every punctuation
mark becomes ",".
"""

from __future__ import annotations

import re
import string

DIGITS = "零一二三四五六七八九"
# (power of ten, character) for the "mid" numbering system: 万 = 10^4, 亿 = 10^8, 兆 = 10^12 …
UNITS = [(1, "十"), (2, "百"), (3, "千"), (4, "万")] + [
    ((i + 2) * 4, c) for i, c in enumerate("亿兆京垓秭穰沟涧正载")
]

CURRENCY_UNITS = "((亿|千万|百万|万|千|百)|(亿|千万|百万|万|千|百|)元|(亿|千万|百万|万|千|百|)块|角|毛|分)"
MEASURE_WORDS = (
    "(匹|张|座|回|场|尾|条|个|首|阙|阵|网|炮|顶|丘|棵|只|支|袭|辆|挑|担|颗|壳|窠|曲|墙|群|腔|"
    "砣|座|客|贯|扎|捆|刀|令|打|手|罗|坡|山|岭|江|溪|钟|队|单|双|对|出|口|头|脚|板|跳|枝|件|贴|"
    "针|线|管|名|位|身|堂|课|本|页|家|户|层|丝|毫|厘|分|钱|两|斤|担|铢|石|钧|锱|忽|(千|毫|微)克|"
    "毫|厘|分|寸|尺|丈|里|寻|常|铺|程|(千|分|厘|毫|微)米|撮|勺|合|升|斗|石|盘|碗|碟|叠|桶|笼|盆|"
    "盒|杯|钟|斛|锅|簋|篮|盘|桶|罐|瓶|壶|卮|盏|箩|箱|煲|啖|袋|钵|年|月|日|季|刻|时|周|天|秒|分|旬|"
    "纪|岁|世|更|夜|春|夏|秋|冬|代|伏|辈|丸|泡|粒|颗|幢|堆|条|根|支|道|面|片|张|颗|块)"
)
PUNCTUATION = (
    "！？｡。＂＃＄％＆＇（）＊＋，－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､、〃《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿"
    "–—‘’‛“”„‟…‧﹏·〈〉-" + string.punctuation
)
TO_COMMA = str.maketrans(PUNCTUATION, "," * len(PUNCTUATION))

DATE = re.compile(r"\D+((([089]\d|(19|20)\d{2})年)?(\d{1,2}月(\d{1,2}[日号])?)?)")
MONEY = re.compile(r"\D+((\d+(\.\d+)?)[多余几]?" + CURRENCY_UNITS + r"(\d" + CURRENCY_UNITS + r"?)?)")
MOBILE = re.compile(r"\D((\+?86 ?)?1([38]\d|5[0-35-9]|7[678]|9[89])\d{8})\D")  # Chinese mobile numbers
LANDLINE = re.compile(r"\D((0(10|2[1-3]|[3-9]\d{2})-?)?[1-9]\d{6,7})\D")
FRACTION = re.compile(r"(\d+/\d+)")
PERCENT = re.compile(r"(\d+(\.\d+)?%)")
MEASURED = re.compile(r"(\d+(\.\d+)?)[多余几]?" + MEASURE_WORDS)
DIGIT_STRING = re.compile(r"(\d{4,32})")
NUMBER = re.compile(r"(\d+(\.\d+)?)")
LATIN_TWO_LATIN = re.compile(r"(([a-zA-Z]+)二([a-zA-Z]+))")  # P2P, B2B: the 2 was read out; put it back


def _spoken(value: str) -> list[tuple[str, int | None]]:
    """An integer string as (character, power) symbols: power None for digits, the unit's power for units."""
    stripped = value.lstrip("0")
    if not stripped:
        return []
    if len(stripped) == 1:
        zero = [(DIGITS[0], None)] if len(value) != len(stripped) else []
        return [*zero, (DIGITS[int(stripped)], None)]
    power, unit = next(u for u in reversed(UNITS) if u[0] < len(stripped))
    return _spoken(value[:-power]) + [(unit, power)] + _spoken(stripped[-power:])


def read_number(number: str, units: bool = True) -> str:
    """ "205" → 二百零五, "2.5" → 二点五, "12" → 十二; units=False reads digit by digit ("2024" → 二零二四)."""
    whole, _, decimals = number.partition(".")
    if units and len(whole) > 1:
        symbols = _spoken(whole)
    else:
        symbols = [(DIGITS[int(c)], None) for c in whole]
    if units:  # 2 before a unit other than 十 (and not after 十) is read 两
        for i, (char, power) in enumerate(symbols):
            if char != "二" or power is not None:
                continue
            after = symbols[i + 1] if i + 1 < len(symbols) else None
            before = symbols[i - 1] if i > 0 else None
            if after is not None and after[1] is not None and (before is None or before[1] is not None):
                if after[1] != 1 and (before is None or before[1] != 1):
                    symbols[i] = ("两", None)
    text = "".join(c for c, _ in symbols)
    if decimals:
        text += "点" + "".join(DIGITS[int(c)] for c in decimals)
    if text.startswith("点"):
        return DIGITS[0] + text
    if len(text) >= 2 and text[1] == "十" and text[0] == "一":
        text = text[1:]
    return text


def _read_date(date: str) -> str:
    year, sep, rest = date.strip().partition("年")
    if not sep:
        year, rest = "", date
    else:
        year = read_number(year, units=False) + "年"
    if not rest:
        return year
    month, sep, day = rest.strip().partition("月")
    if not sep:
        month, day = "", date
    else:
        month = read_number(month) + "月"
    if day:
        day = read_number(day[:-1]) + day[-1]
    return year + month + day


def _replace_each(text: str, pattern: re.Pattern[str], read, group: int | None = 0) -> str:
    for match in pattern.findall(text):
        found = match[group] if isinstance(match, tuple) and group is not None else match
        text = text.replace(found, read(found), 1)
    return text


def normalize_chinese(text: str) -> str:
    text = "^" + text + "$"
    text = _replace_each(text, DATE, _read_date)
    text = _replace_each(text, MONEY, lambda m: NUMBER.sub(lambda n: read_number(n.group(1)), m))
    text = _replace_each(
        text, MOBILE, lambda t: "".join(read_number(p, units=False) for p in t.strip("+").split())
    )
    text = _replace_each(text, LANDLINE, lambda t: "".join(read_number(p, units=False) for p in t.split("-")))
    text = _replace_each(
        text, FRACTION, lambda f: read_number(f.split("/")[1]) + "分之" + read_number(f.split("/")[0])
    )
    text = text.replace("％", "%")
    text = _replace_each(text, PERCENT, lambda p: "百分之" + read_number(p.strip().strip("%")))
    text = _replace_each(text, MEASURED, read_number)
    text = _replace_each(text, DIGIT_STRING, lambda d: read_number(d, units=False))
    text = _replace_each(text, NUMBER, read_number)
    for whole, left, right in LATIN_TWO_LATIN.findall(text):
        text = text.replace(whole, left + "2" + right, 1)
    text = text.lstrip("^").rstrip("$")
    return text.translate(TO_COMMA)
