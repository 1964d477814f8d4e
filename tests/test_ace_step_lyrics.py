"""ACE-Step lyrics as upstream tokenises them: per-line language, per-language cleaning, zh/ja/ko romanisation,
blank lines kept, the position-table limit, and what an install without the `lyrics` extra says and does.

The golden ids come from upstream's own tokenizer code on the real vocabulary (scripts/lyrics_golden.py says how;
tests/fixtures/ace-step-lyrics/README.md why the vocabulary is committed)."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lofi_daemon.backends.ace_step import lyric_lang, text
from lofi_daemon.backends.ace_step.backend import AceStepBackend
from lofi_daemon.backends.ace_step.lyric_rules import LANGUAGE_TOKEN_IDS
from lofi_daemon.backends.ace_step.lyric_zh_numbers import normalize_chinese, read_number
from lofi_daemon.backends.ace_step.text import LyricTokenizer
from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.cache.store import TrackStore
from lofi_daemon.config import Settings
from lofi_daemon.errors import ErrorCode, LofiError
from lofi_daemon.jobs import api as jobs_api
from lofi_daemon.jobs.queue import JobQueue
from lofi_daemon.jobs.worker import Worker
from lofi_daemon.rpc.dispatch import Dispatcher

from tests.ace_step_helpers import FIXTURE
from tests.daemon_client import CEILING

LYRICS = Path(__file__).parent / "fixtures" / "ace-step-lyrics"
GOLDEN = json.loads((LYRICS / "golden.json").read_text(encoding="utf-8"))
START, LINE_END = 261, 2  # the real vocabulary's ids (layout.REFERENCE_CONFIG)

needs_extra = pytest.mark.skipif(
    not all(lyric_lang.installed(m) for m in lyric_lang.PACKAGES),
    reason=f"the lyrics extra is not installed ({lyric_lang.SETUP_HINT})",
)


@pytest.fixture(scope="module")
def real() -> LyricTokenizer:
    return LyricTokenizer(LYRICS / "vocab.json", START, LINE_END)


@needs_extra
@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["lyrics"][:24])
def test_token_for_token_equal_to_upstream(real, case):
    assert real.tokens(case["lyrics"]).ids == case["ids"]


@needs_extra
def test_corpus_covers_every_language_upstream_supports(real):
    assert GOLDEN["languages"] == LANGUAGE_TOKEN_IDS
    seen = {lang for case in GOLDEN["cases"] for lang in real.tokens(case["lyrics"]).languages}
    assert seen - {None} == set(LANGUAGE_TOKEN_IDS)


@needs_extra
def test_language_tag_follows_each_line(real):
    out = real.tokens("[verse]\nla la la\n夜空に輝く星たちよ\n\n你的笑容\n사랑해요")
    assert out.languages == ["en", "es", "ja", None, "zh", "ko"]
    tags = [i for i in out.ids if i in LANGUAGE_TOKEN_IDS.values()]
    assert tags == [LANGUAGE_TOKEN_IDS[x] for x in ("en", "es", "ja", "zh", "ko")]
    assert out.notes == []


@needs_extra
def test_leading_and_trailing_blank_lines_are_kept(real):
    ids = real("\n\nla la la\n\n")[0][0].tolist()
    assert ids[:3] == [START, LINE_END, LINE_END] and ids[-3:] == [LINE_END, LINE_END, LINE_END]
    assert len(ids) == len(real("la la la")[0][0]) + 4


def test_no_lyrics_is_instrumental(real):
    ids, mask = real(None)
    assert ids.tolist() == [[0]] and mask.tolist() == [[0]]


@pytest.mark.parametrize(
    "number, spoken",
    [
        ("2", "二"),
        ("10", "十"),
        ("12", "十二"),
        ("205", "两百零五"),
        ("1002", "一千零二"),
        ("0.5", "零点五"),
        ("2000", "两千"),
        ("20000", "两万"),
        ("22", "二十二"),
        ("100000000", "一亿"),
        ("3.05", "三点零五"),
    ],
)
def test_chinese_numbers_read_out(number, spoken):  # expected values: upstream's zh_num2words.num2chn
    assert read_number(number) == spoken


def test_chinese_normaliser_dates_percent_digit_strings_and_punctuation():
    assert normalize_chinese("2024年3月5日") == "二零二四年三月五日"
    assert normalize_chinese("80%的人") == "百分之八十的人"
    assert normalize_chinese("1000个") == "一千个"  # before a measure word: a number
    assert normalize_chinese("1000朵") == "一零零零朵"  # 朵 is not in the list: 4+ digits are read one by one
    assert normalize_chinese("编号1234!") == "编号一二三四,"
    assert normalize_chinese("+86 13812345678") == "八六一三八一二三四五六七八"  # a mobile number: digits
    assert normalize_chinese("0755-1234567") == "零七五五一二三四五六七"  # a landline: the "-" is not read


def test_lyrics_longer_than_the_position_table_are_refused_naming_the_limit(real):
    assert text.LYRIC_MAX_TOKENS == 5000  # upstream EspnetRelPositionalEncoding(max_len=5000)
    short = LyricTokenizer(LYRICS / "vocab.json", START, LINE_END, max_tokens=8)
    assert len(short.tokens("la la la").ids) == 8  # exactly at the limit: accepted whole
    with pytest.raises(LofiError) as e:
        short("la la la\nla")
    assert e.value.code == ErrorCode.INVALID_PARAMS
    assert "at most 8" in e.value.message and e.value.data["max_tokens"] == 8 and e.value.data["tokens"] > 8


def test_the_limit_is_the_exported_lyric_encoders_position_table():
    # The rel-pos table holds positions -(n-1)..(n-1): 2n-1 rows. Past n tokens the graph reads outside it
    # (n+1 tokens still run, on wrong positions; n+1000 fail in onnxruntime), so n is the limit.
    onnx = pytest.importorskip("onnx")
    graph = onnx.load(str(FIXTURE / "transformer_encoder.onnx"), load_external_data=False).graph
    tables = [
        list(a.t.dims)
        for node in graph.node
        if node.op_type == "Constant"
        for a in node.attribute
        if a.t is not None and len(a.t.dims) == 3 and a.t.dims[1] > 1000
    ]
    assert tables == [[1, 2 * text.LYRIC_MAX_TOKENS - 1, tables[0][2]]]


def test_too_long_lyrics_are_refused_by_the_jobs_check_not_by_validation(tmp_path, monkeypatch):
    monkeypatch.setattr(text, "LYRIC_MAX_TOKENS", 40)
    settings = Settings.from_env({"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path)})
    backend = AceStepBackend(settings)
    ok = GenerationRequest("ace_step", "lofi", 5.0, 1, backend.validate({"lyrics": "la la"}))
    assert ok.params["lyrics"] == "la la"
    backend.check_request(ok)
    too_long = backend.validate({"lyrics": "la la la la\n" * 20})  # validation only bounds the characters
    with pytest.raises(LofiError) as e:
        backend.check_request(GenerationRequest("ace_step", "lofi", 5.0, 1, too_long))
    assert e.value.code == ErrorCode.INVALID_PARAMS
    assert e.value.data["param"] == "lyrics" and "at most 40" in e.value.message
    assert not backend.loaded  # refused before any model work


def test_lyrics_are_tokenised_in_the_job_while_the_dispatcher_answers(tmp_path, monkeypatch):
    """Tokenising takes 20–60 ms a line; on the RPC dispatch thread a long lyric held `status`, `cancel` and
    `stop` for seconds. Here the dispatch thread is this test's thread: it must never tokenise, a `queue_status`
    is answered while the job is held inside tokenising, and the too-long lyric still fails the job with
    INVALID_PARAMS before the model loads."""
    monkeypatch.setattr(text, "LYRIC_MAX_TOKENS", 40)
    dispatch_thread = threading.current_thread()
    on_dispatch: list[str] = []
    tokenising, release = threading.Event(), threading.Event()
    real_detect = lyric_lang.detect

    def detect(line: str) -> str:
        if threading.current_thread() is dispatch_thread:
            on_dispatch.append(line)  # (never block the test itself)
        else:
            tokenising.set()
            release.wait(CEILING)
        return real_detect(line)

    monkeypatch.setattr(lyric_lang, "detect", detect)
    settings = Settings.from_env({"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path)})
    backend = AceStepBackend(settings)
    backends: dict = {"ace_step": backend}
    queue = JobQueue()
    events: list[tuple[str, dict]] = []
    ended = threading.Event()

    def notify(method: str, params: dict) -> None:
        events.append((method, params))
        if method in ("generation_error", "generation_complete", "generation_cancelled"):
            ended.set()

    dispatcher = Dispatcher()
    store = TrackStore(tmp_path / "tracks")
    jobs_api.register(
        dispatcher, backends=backends, settings=settings, store=store, queue=queue, notify=notify
    )
    worker = Worker(queue, backends, store, notify)
    lyrics = "".join(f"line {i} of the song\n" for i in range(20))
    reply = dispatcher.dispatch(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "generate",
            "params": {"prompt": "lofi", "backend": "ace_step", "duration_sec": 5, "lyrics": lyrics},
        }
    )
    assert on_dispatch == [] and reply is not None and reply["result"]["status"] == "queued", reply
    track_id = reply["result"]["track_id"]
    worker.start()
    try:
        assert tokenising.wait(CEILING)  # the worker is inside the lyric tokenising now, and stays there
        status = dispatcher.dispatch({"jsonrpc": "2.0", "id": 2, "method": "queue_status"})
        assert status is not None and status["result"]["running"]["track_id"] == track_id
        assert not ended.is_set()
        release.set()
        assert ended.wait(CEILING)
    finally:
        release.set()
        worker.stop()
    method, error = events[-1]
    assert method == "generation_error" and error["track_id"] == track_id, events
    assert (
        error["code"] == ErrorCode.INVALID_PARAMS
        and error["param"] == "lyrics"
        and "at most 40" in error["message"]
    )
    assert not backend.loaded and "generation_progress" not in [m for m, _ in events]
    assert on_dispatch == []


def test_validation_keeps_blank_lines_around_lyrics(tmp_path):
    settings = Settings.from_env({"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path)})
    assert AceStepBackend(settings).validate({"lyrics": "\nla la\n\n"})["lyrics"] == "\nla la\n\n"


@pytest.fixture
def without_extra(monkeypatch):
    """This install as if the `lyrics` extra were missing."""
    monkeypatch.setattr(lyric_lang, "installed", lambda module: module not in lyric_lang.PACKAGES)
    for module in lyric_lang.PACKAGES:
        monkeypatch.setitem(sys.modules, module, None)  # an import would fail too


def test_without_the_extra_each_language_that_needs_it_is_named_with_the_fallback(real, without_extra):
    out = real.tokens("[verse]\nhello 2 you\n夜空に輝く星たちよ\n사랑해요")
    assert out.languages == ["en", "en", "en", "en"]
    tags = [i for i in out.ids if i in LANGUAGE_TOKEN_IDS.values()]
    assert tags == [LANGUAGE_TOKEN_IDS["en"]] * 4
    notes = "\n".join(out.notes)
    assert "Japanese lyrics (line 3)" in notes and "Korean lyrics (line 4)" in notes
    assert "English lyrics (line 2)" in notes and "numbers stay digits" in notes
    assert notes.count("scripts/setup --lyrics") == 3


def test_health_lists_lyric_languages(without_extra):
    langs = lyric_lang.languages()
    assert set(langs) == set(LANGUAGE_TOKEN_IDS)
    assert langs["ja"]["available"] is False and "cutlet" in langs["ja"]["missing"]
    assert "langsegment-backup" in langs["de"]["missing"]
    assert langs["en"]["name"] == "English" and langs["en"]["missing"] == ["num2words"]


@needs_extra
def test_health_with_the_extra_has_every_language():
    assert all(info["available"] for info in lyric_lang.languages().values())


def test_daemon_refuses_too_long_lyrics_before_loading_the_model(daemon):
    d = daemon(LOFI_ACE_STEP_DIR=str(FIXTURE), LOFI_THREADS="1")
    params = {
        "prompt": "lofi",
        "backend": "ace_step",
        "duration_sec": 5,
        "lyrics": "la la la la la la\n" * 1000,
    }
    job = d.call("generate", params)
    error = d.wait_notification("generation_error", track_id=job["track_id"])
    assert error["code"] == ErrorCode.INVALID_PARAMS and error["param"] == "lyrics"
    assert "at most 5000" in error["message"] and error["tokens"] > 5000
    assert "generation_progress" not in d.events(job["track_id"])
    backends = d.call("get_backends")["backends"]
    assert next(b for b in backends if b["name"] == "ace_step")["loaded"] is False  # refused before loading
    assert d.call("status") is not None  # the daemon goes on


def test_a_line_the_cleaner_cannot_take_is_left_out_as_upstream_does(real, monkeypatch):
    real_clean = text.lyric_clean.clean

    def clean(line, lang):
        if "boom" in line:
            raise ValueError("cannot romanise")
        return real_clean(line, lang)

    monkeypatch.setattr(text.lyric_clean, "clean", clean)
    out = real.tokens("[verse]\nboom\n[chorus]")
    assert out.ids == [START, *real.tokens("[verse]").ids[1:], *real.tokens("[chorus]").ids[1:]]
    assert out.languages == ["en", None, "en"] and "lyric line 2 was left out" in out.notes[0]


@needs_extra
@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_any_text_tokenises_within_the_vocabulary(real, lyrics):
    out = real.tokens(lyrics)
    assert out.ids[0] == START and out.ids.count(LINE_END) >= lyrics.count("\n") + 1 - out.languages.count(
        None
    )
    assert len(out.languages) == lyrics.count("\n") + 1
    assert all(0 <= i < real._tok.get_vocab_size() for i in out.ids)


def test_the_jobs_lyric_check_warns_which_language_needs_the_extra(tmp_path, without_extra):
    sent = []
    settings = Settings.from_env({"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path)})
    backend = AceStepBackend(settings, lambda method, params: sent.append((method, params)))
    params = backend.validate({"lyrics": "[verse]\n夜空に輝く星たちよ"})
    assert sent == []  # validation (the dispatch thread) does not tokenise
    backend.check_request(GenerationRequest("ace_step", "lofi", 5.0, 1, params))
    assert [m for m, _ in sent] == ["log"] and sent[0][1]["level"] == "warning"
    assert sent[0][1]["message"].startswith(
        "Japanese lyrics (line 2) need the lyrics extra (scripts/setup --lyrics"
    )
