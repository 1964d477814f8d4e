"""Thousands of malformed frames and params against one real daemon: it never dies, never writes anything but
protocol, answers a ping after every burst of garbage and keeps its memory bounded. Every kind of message that
once stopped it answering (issue 10) is generated here, and the watchdog test sends each of them by name.

The default run takes seconds; `-m slow` runs the same generators over at least 10,000 frames."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_client import DaemonProcess, encode

# Generous: the daemon may hold one 8 MiB frame per inbox slot plus its parse; garbage must not grow it further.
RSS_GROWTH_LIMIT_MB = 256
PING_CEILING_SEC = 30  # a ceiling for a loaded machine, not a speed claim (scripts/bench_* measure speed)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def frame(body: bytes, length: int | None = None) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body


def request(method: str, params: Any = None, id_: Any = 5) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


# -- the known killers, by name (each once stopped the dispatch loop or the stream) ----------------------------
PING_BODY = json.dumps(request("ping", id_=0)).encode()
KILLERS = {
    "lone surrogate id": frame(b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}'),
    "lone surrogate param": frame(
        b'{"jsonrpc":"2.0","id":3000001,"method":"generate","params":{"prompt":"\\udfff"}}'
    ),
    "5000-digit id": frame(b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}'),
    "5000-digit param": frame(
        b'{"jsonrpc":"2.0","id":3000001,"method":"seek","params":{"position_sec":-' + b"1" * 5000 + b"}}"
    ),
    "1000-deep array": frame(b"[" * 1000 + b"]" * 1000),
    "1000-deep params": frame(
        b'{"jsonrpc":"2.0","id":3000001,"method":"ping","params":' + b'{"a":' * 1000 + b"1" + b"}" * 1001
    ),
    "NaN token": frame(b'{"jsonrpc":"2.0","id":3000001,"method":"volume","params":{"level":NaN}}'),
    "Infinity token": frame(
        b'{"jsonrpc":"2.0","id":3000001,"method":"seek","params":{"position_sec":Infinity}}'
    ),
    "1e999": frame(b'{"jsonrpc":"2.0","id":3000001,"method":"crossfade","params":{"seconds":1e999}}'),
    "Content-Length 10^30": b"Content-Length: " + b"1" + b"0" * 30 + b"\r\n\r\n{}",
    "Content-Length too short": frame(PING_BODY, len(PING_BODY) - 7),
    "Content-Length too long": frame(PING_BODY, len(PING_BODY) + 500),
    "misspelled header": b"Content-Lenght: %d\r\n\r\n" % len(PING_BODY) + PING_BODY,
    "header without blank line": b"Content-Length: 2\r\n{}",
    "4 MB batch of zeros": frame(b"[" + b",".join([b"0"] * 2_000_000) + b"]"),
    "batch of 101": frame(json.dumps([request("ping", id_=2_000_000 + i) for i in range(101)]).encode()),
    "batch with a bad member": frame(
        b'[{"jsonrpc":"2.0","id":"\\ud800","method":"ping"},' + PING_BODY + b"]"
    ),
    "oversized honest frame": frame(b" " * (8 * 1024 * 1024 + 1)),
}


def ping_after(d: DaemonProcess, probe_ids: itertools.count) -> None:
    """Two pings: a garbage frame with a too-long length may take the first one's bytes with it, but the
    reader must be back in step by the second."""
    first, second = next(probe_ids), next(probe_ids)
    d.send_raw(encode(request("ping", id_=first)) + encode(request("ping", id_=second)))
    reply = d.wait_response(second, timeout=PING_CEILING_SEC)
    assert reply.get("result", {}).get("pong") is True, reply
    with d._cond:
        d.responses.pop(first, None)
    assert d.proc.poll() is None


def test_watchdog_every_known_killer_then_ping(daemon):
    d = daemon(LOFI_TONE_STEP_SEC="0", LOFI_TONE_STEPS="1")
    base = rss_mb(d.proc.pid)
    probe_ids = itertools.count(10_000)
    for name, data in KILLERS.items():
        d.send_raw(data)
        # The very next request is answered: checked with a ping that follows each killer directly.
        ping_id = next(probe_ids)
        d.send(request("ping", id_=ping_id))
        reply = d.wait_response(ping_id, timeout=PING_CEILING_SEC)
        assert reply.get("result", {}).get("pong") is True, (name, reply)
        assert rss_mb(d.proc.pid) - base < RSS_GROWTH_LIMIT_MB, name
    # The valid member of the mixed batch got its answer; nothing but protocol reached stdout.
    assert d.wait_response(0, timeout=PING_CEILING_SEC)["result"]["pong"] is True
    assert d.garbage == []
    assert d.call("shutdown") == {"ok": True}
    assert d.proc.wait(PING_CEILING_SEC) == 0


# -- NaN / Infinity in every numeric param of every method ------------------------------------------------------
def numeric_paths(
    schema: dict[str, Any], node: dict[str, Any] | None = None, path: tuple = ()
) -> list[tuple]:
    """Paths to every number/integer field of a pydantic JSON schema, nested models included."""
    node = schema if node is None else node
    if "$ref" in node:
        return numeric_paths(schema, schema["$defs"][node["$ref"].rsplit("/", 1)[1]], path)
    found: list[tuple] = []
    for option in node.get("anyOf", []) + node.get("oneOf", []) + node.get("allOf", []):
        found += numeric_paths(schema, option, path)
    if node.get("type") in ("number", "integer") and path:
        found.append(path)
    for name, sub in node.get("properties", {}).items():
        found += numeric_paths(schema, sub, (*path, name))
    return sorted(set(found))


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> dict[str, list[tuple]]:
    """Every method the daemon registers, with the paths of its numeric params."""
    os.environ.setdefault("LOFI_BACKEND_PLUGINS", "tests.doubles.tone_backend:ToneBackend")
    from lofi_daemon.config import Settings
    from lofi_daemon.daemon import Daemon

    tmp = tmp_path_factory.mktemp("registry")
    daemon = Daemon(Settings(cache_dir=tmp / "cache", log_dir=tmp / "log"))
    try:
        out = {}
        for name in daemon.dispatcher.method_names:
            model = daemon.dispatcher.params_model(name)
            out[name] = numeric_paths(model.model_json_schema()) if model else []
        # Documented numeric options that a free-form dict in the schema may hide (docs/protocol.md).
        out["initialize"] = sorted(set(out["initialize"]) | set(DOCUMENTED_OPTIONS))
        # `generate` hands every other param to the chosen backend's own strict model: all of theirs count too
        from lofi_daemon.backends.params import BackendParams

        for model in BackendParams.__subclasses__():
            out["generate"] = sorted(set(out["generate"]) | set(numeric_paths(model.model_json_schema())))
        return out
    finally:
        daemon.store.close()


DOCUMENTED_OPTIONS = [
    ("options", "threads"),
    ("options", "cache", "max_mb"),
    ("options", "cache", "max_tracks"),
    ("options", "playback", "volume"),
    ("options", "playback", "crossfade_sec"),
    ("options", "prefetch", "trigger_percent"),
]


def nested(path: tuple, value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return value


def test_registry_has_numeric_params(registry):
    # Guard the enumeration itself: if it found nothing, the NaN test below would prove nothing.
    assert ("duration_sec",) in registry["generate"] and ("level",) in registry["volume"]
    assert {("guidance_scale",), ("inference_steps",), ("cfg_scale",)} <= set(registry["generate"])
    assert ("options", "threads") in registry["initialize"]
    assert len(registry) >= 30


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e400"])
def test_non_finite_numbers_are_parse_errors_in_every_numeric_param(daemon, registry, token):
    d = daemon(LOFI_TONE_STEP_SEC="0", LOFI_TONE_STEPS="1")
    sent = 0
    for method, paths in registry.items():
        for path in paths:
            text = json.dumps(request(method, nested(path, "@NUM@"))).encode()
            d.send_raw(frame(text.replace(b'"@NUM@"', token)))
            err = d.unmatched_errors.get(timeout=PING_CEILING_SEC)["error"]
            assert err["data"]["error_code"] == "PARSE_ERROR", (method, path, err)
            sent += 1
    assert sent >= 20
    assert d.call("ping")["pong"] is True


# -- generators ---------------------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.text(st.characters(codec=None, categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
METHODS = [
    "generate",
    "cancel",
    "queue_status",
    "queue_clear",
    "get_backends",
    "download_backend",
    "status",
    "ping",
    "initialize",
    "seek",
    "volume",
    "crossfade",
    "cache_list",
    "cache_stats",
    "playlist_add",
    "prefetch_config",
    "nope",
    "",
    "shutdown_typo",
]
methods = st.sampled_from(METHODS)
ids = st.one_of(
    st.integers(1000, 10**6),
    st.text(min_size=1, max_size=8),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=2),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)
requests_ = st.builds(lambda m, p, i: request(m, p, i), methods, json_values, ids)
raw_json_tokens = st.sampled_from(
    [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"9" * 4400, b"-0", b"1e-400"]
)
bad_headers = st.sampled_from(
    [
        b"Content-Lenght: %d\r\n\r\n",
        b"content-length: %d\r\n\r\n",  # legal: header names are case-insensitive
        b"Content-Length: -%d\r\n\r\n",
        b"Content-Length: %dx\r\n\r\n",
        b"Content-Length: %d\r\nContent-Type: application/json\r\n\r\n",
        b"Content-Length %d\r\n\r\n",
        b"Content-Length: %d\n\n",
        b"Content-Length: %d\r\n",  # no blank line
        b"X: y\r\nno colon\r\nContent-Length: %d\r\n\r\n",
        b"Content-Length: %d00000000000000000000000000\r\n\r\n",
    ]
)
raw_frames = st.one_of(
    # raw garbage, with and without a header-block end
    st.binary(max_size=64).map(lambda b: b.replace(b"\r\n\r\n", b"") + b"\r\n\r\n"),
    st.binary(max_size=64),
    # a framed body whose length is wrong by a little or a lot
    st.builds(
        lambda msg, delta: frame(encode(msg).split(b"\r\n\r\n", 1)[1], max(0, len(json.dumps(msg)) + delta)),
        requests_,
        st.integers(-40, 200),
    ),
    # bad or unusual header blocks
    st.builds(lambda h, msg: h % len(json.dumps(msg)) + json.dumps(msg).encode(), bad_headers, requests_),
    # valid frames with random content, surrogates included
    json_values.map(encode),
    requests_.map(encode),
    # huge numbers, NaN / Infinity tokens, in any method's params
    st.builds(
        lambda m, key, tok: frame(
            b'{"jsonrpc":"2.0","id":7,"method":"%s","params":{"%s":%s}}' % (m, key, tok)
        ),
        methods.map(str.encode),
        st.sampled_from(
            [b"level", b"seconds", b"position_sec", b"duration_sec", b"seed", b"limit", b"top_k"]
        ),
        raw_json_tokens,
    ),
    # deep nesting, alone or as params
    st.builds(lambda n: frame(b"[" * n + b"]" * n), st.integers(1, 3000)),
    st.builds(
        lambda n: frame(
            b'{"jsonrpc":"2.0","id":8,"method":"ping","params":' + b'{"a":' * n + b"0" + b"}" * (n + 1)
        ),
        st.integers(1, 1500),
    ),
    # batches: empty, mixed, over the limit
    st.lists(st.one_of(requests_, json_values), max_size=6).map(encode),
    st.integers(95, 130).map(lambda n: encode([request("ping", id_=2_000_000 + i) for i in range(n)])),
    st.builds(
        lambda gen: frame(
            json.dumps({"jsonrpc": "2.0", "id": 5, "method": "generate", "params": gen}).encode()
        ),
        st.fixed_dictionaries(
            {},
            optional={
                k: json_values
                for k in ("prompt", "duration_sec", "seed", "backend", "priority", "top_k", "guidance_scale")
            },
        ),
    ),
)


def fuzz_daemon(d: DaemonProcess, examples: int) -> int:
    sent = {"n": 0}
    base = rss_mb(d.proc.pid)
    probe_ids = itertools.count(10**9)

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(raw_frames, min_size=1, max_size=8))
    def check(frames):
        for f in frames:
            d.send_raw(f)
            sent["n"] += 1
        ping_after(d, probe_ids)
        assert rss_mb(d.proc.pid) - base < RSS_GROWTH_LIMIT_MB

    check()
    assert d.garbage == []
    d.call("queue_clear")
    assert d.call("shutdown") == {"ok": True}
    assert d.proc.wait(PING_CEILING_SEC) == 0
    return sent["n"]


def test_daemon_survives_fuzzed_frames(daemon):
    d = daemon(LOFI_TONE_STEP_SEC="0", LOFI_TONE_STEPS="1")
    assert fuzz_daemon(d, examples=150) > 400


@pytest.mark.slow
def test_daemon_survives_ten_thousand_fuzzed_frames(daemon):
    d = daemon(LOFI_TONE_STEP_SEC="0", LOFI_TONE_STEPS="1")
    assert fuzz_daemon(d, examples=2600) >= 10_000
