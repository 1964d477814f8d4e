"""Thousands of malformed frames and params against one real daemon: it never dies, never writes anything but
protocol, and answers a well-formed request after each batch of garbage."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.daemon_client import encode

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
methods = st.sampled_from(
    [
        "generate",
        "cancel",
        "queue_status",
        "queue_clear",
        "get_backends",
        "download_backend",
        "status",
        "ping",
        "initialize",
        "nope",
        "",
        "shutdown_typo",
    ]
)
# Fuzzed frames: raw garbage, broken headers, truncated-but-framed bodies, valid frames with random content.
raw_frames = st.one_of(
    st.binary(max_size=64).map(lambda b: b.replace(b"\r\n\r\n", b"") + b"\r\n\r\n"),
    st.builds(
        lambda n, body: b"Content-Length: %d\r\n\r\n" % len(body) + body,
        st.integers(-5, 120),
        st.binary(max_size=64),
    ),
    json_values.map(lambda v: encode(v)),
    st.builds(
        lambda m, p, i: encode({"jsonrpc": "2.0", "id": i, "method": m, "params": p}),
        methods,
        json_values,
        st.one_of(st.integers(1000, 10**6), st.text(min_size=1, max_size=8)),
    ),
    st.builds(
        lambda p: encode({"jsonrpc": "2.0", "id": 5, "method": "generate", "params": p}),
        st.fixed_dictionaries(
            {},
            optional={
                "prompt": json_values,
                "duration_sec": json_values,
                "seed": json_values,
                "backend": json_values,
                "priority": json_values,
                "top_k": json_values,
                "guidance_scale": json_values,
            },
        ),
    ),
)


def test_daemon_survives_fuzzed_frames(daemon):
    d = daemon(LOFI_TONE_STEP_SEC="0", LOFI_TONE_STEPS="1")
    sent = {"n": 0}

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(raw_frames, min_size=1, max_size=8))
    def check(frames):
        for f in frames:
            d.send_raw(f)
            sent["n"] += 1
        # A header whose Content-Length is larger than what followed would swallow the probe; pad with
        # spaces (ignored between/inside JSON) so every fuzzed frame is fully consumed first.
        d.send_raw(b" " * 200)
        d.send_raw(b"\r\n\r\n")
        reply = d.request("ping", timeout=10)
        if "result" not in reply:  # the probe may have been eaten by a prior frame's body; ask again
            reply = d.request("ping", timeout=10)
        assert reply.get("result", {}).get("pong") is True, reply
        assert d.proc.poll() is None

    check()
    assert sent["n"] > 1000
    assert d.garbage == []
    d.call("queue_clear")
    assert d.call("shutdown") == {"ok": True}
    assert d.proc.wait(5) == 0
    json.dumps(d.stderr.decode(errors="replace"))  # stderr is for humans; just make sure we got it
