"""The daemon as a real subprocess over real pipes: lifecycle, errors, queue semantics, notifications."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.daemon_client import CEILING, encode, wait_until


def error_of(reply):
    assert "error" in reply, reply
    return reply["error"]


def test_initialize_ping_status_and_clean_shutdown(daemon):
    d = daemon()
    init = d.call("initialize", {"client_info": {"name": "pytest", "version": "1"}, "processId": 1})
    assert init["server"]["name"] == "lofi-daemon"
    assert init["protocol_version"] == 1
    assert {"generate", "cancel", "queue_status", "shutdown"} <= set(init["capabilities"]["methods"])
    assert [b["name"] for b in init["backends"] if b["name"] == "tone"] == ["tone"]
    assert d.call("ping")["pong"] is True
    status = d.call("status")
    assert status["pid"] == d.proc.pid
    assert status["log_file"].endswith("daemon.log")
    assert d.call("shutdown") == {"ok": True}
    assert d.proc.wait(CEILING) == 0


def test_exits_within_one_second_of_stdin_eof(daemon):
    d = daemon()
    d.call("ping")
    d.proc.stdin.close()
    assert d.proc.wait(CEILING) == 0  # how fast is for a benchmark; a loaded machine takes longer than 1 s


def test_exits_within_one_second_of_eof_even_while_generating(daemon):
    # One model step takes longer than the ceiling: exiting at all proves the daemon does not wait for it.
    d = daemon(LOFI_TONE_STEP_SEC=str(5 * CEILING), LOFI_TONE_STEPS="2")
    d.call("generate", {"prompt": "long", "duration_sec": 2})
    d.wait_notification("generation_started")
    d.proc.stdin.close()
    assert d.proc.wait(CEILING) == 0


def test_exits_when_parent_dies(tmp_path):
    from tests.daemon_client import daemon_env

    # A parent shell that starts the daemon with --parent-pid $$ and then dies.
    parent = subprocess.Popen(
        [
            "sh",
            "-c",
            f"{sys.executable} -m lofi_daemon --parent-pid $$ </dev/zero >/dev/null 2>&1 & echo $!; sleep 30",
        ],
        stdout=subprocess.PIPE,
        env=daemon_env(tmp_path),
    )
    child_pid = int(parent.stdout.readline())
    os.kill(child_pid, 0)  # running
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + CEILING  # the daemon may still be starting (> 5 s on a loaded machine)
    while time.monotonic() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            break
        try:  # reap if it became our zombie
            os.waitpid(child_pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    else:
        os.kill(child_pid, signal.SIGKILL)
        pytest.fail("daemon outlived its parent")


def test_idle_timeout(daemon):
    d = daemon("--idle-timeout", "0.5")
    d.call("ping")
    assert d.proc.wait(CEILING) == 0


def test_protocol_errors_have_stable_codes_and_the_daemon_keeps_serving(daemon):
    d = daemon()
    assert error_of(d.request("no_such_method"))["code"] == -32601
    err = error_of(d.request("generate", {"prompt": 42}))
    assert err["code"] == -32602 and err["data"]["error_code"] == "INVALID_PARAMS"
    assert error_of(d.request("generate", {"prompt": "x", "bogus": 1}))["code"] == -32602
    assert error_of(d.request("generate", ["positional"]))["code"] == -32602
    assert error_of(d.request("ping", {"unexpected": True}))["code"] == -32602
    d.send_raw(b"Content-Length: 9\r\n\r\n{not json")
    assert d.unmatched_errors.get(timeout=CEILING)["error"]["code"] == -32700
    d.send_raw(b"Content-Length: 2\r\n\r\n[]")
    assert d.unmatched_errors.get(timeout=CEILING)["error"]["code"] == -32600
    d.send_raw(b"Garbage-Without-Colon\r\nContent-Length: 2\r\n\r\n")
    assert d.unmatched_errors.get(timeout=CEILING)["error"]["code"] == -32700
    d.send_raw(encode({"jsonrpc": "1.0", "id": 99, "method": "ping"}))
    assert error_of(d.wait_response(99))["code"] == -32600
    # An oversized message is drained, answered, and does not desync the stream.
    big = b" " * (8 * 1024 * 1024 + 1)
    d.send_raw(b"Content-Length: %d\r\n\r\n" % len(big) + big)
    assert "exceeds" in d.unmatched_errors.get(timeout=CEILING)["error"]["message"]
    assert d.call("ping")["pong"] is True


@pytest.mark.parametrize(
    ("params", "code", "name"),
    [
        ({"prompt": ""}, -32006, "INVALID_PROMPT"),
        ({"prompt": "   "}, -32006, "INVALID_PROMPT"),
        ({"prompt": "x" * 1001}, -32006, "INVALID_PROMPT"),
        ({"prompt": "x", "duration_sec": 0.5}, -32005, "INVALID_DURATION"),
        ({"prompt": "x", "duration_sec": 61}, -32005, "INVALID_DURATION"),
        ({"prompt": "x", "backend": "nope"}, -32007, "INVALID_BACKEND"),
        ({"prompt": "x", "guidance_scale": 11}, -32010, "INVALID_GUIDANCE_SCALE"),
        ({"prompt": "x", "seed": -1}, -32602, "INVALID_PARAMS"),
        ({"prompt": "x", "seed": 2**32}, -32602, "INVALID_PARAMS"),
        ({"prompt": "x", "priority": "urgent"}, -32602, "INVALID_PARAMS"),
    ],
)
def test_generate_validation(daemon, params, code, name):
    d = daemon()
    err = error_of(d.request("generate", params))
    assert (err["code"], err["data"]["error_code"]) == (code, name)


def test_generate_reply_then_notification_sequence_and_cache_hit(daemon):
    d = daemon()
    r = d.call("generate", {"prompt": "rain", "duration_sec": 2, "seed": 7})
    assert r["status"] == "queued" and r["seed"] == 7 and len(r["track_id"]) == 16
    done = d.wait_notification("generation_complete", track_id=r["track_id"])
    events = d.events(r["track_id"])
    assert events[0] == "generation_started" and events[-1] == "generation_complete"
    percents = [n["params"]["percent"] for n in d.notifications if n["method"] == "generation_progress"]
    assert percents == sorted(percents) and max(percents) <= 99
    assert all(b - a >= 5 for a, b in zip(percents, percents[1:], strict=False))
    assert os.path.exists(done["path"]) and done["duration_sec"] == pytest.approx(2.0)
    # Same parameters and seed: the same id, answered from the cache at once.
    again = d.call("generate", {"prompt": "rain", "duration_sec": 2, "seed": 7})
    assert again["track_id"] == r["track_id"] and again["status"] == "cached"
    assert d.wait_notification("generation_complete", track_id=r["track_id"], cached=True)
    other = d.call("generate", {"prompt": "rain", "duration_sec": 2, "seed": 8})
    assert other["track_id"] != r["track_id"]


def test_random_seed_is_json_safe(daemon):
    d = daemon()
    seeds = {d.call("generate", {"prompt": f"p{i}", "duration_sec": 1})["seed"] for i in range(5)}
    assert len(seeds) == 5 and all(0 <= s < 2**32 for s in seeds)


def test_priorities_positions_and_queue_full(daemon):
    d = daemon(LOFI_TONE_STEP_SEC="0.05", LOFI_TONE_STEPS="40")
    first = d.call("generate", {"prompt": "first", "duration_sec": 1})
    d.wait_notification("generation_started", track_id=first["track_id"])
    normals = [d.call("generate", {"prompt": f"n{i}", "duration_sec": 1}) for i in range(3)]
    assert [n["position"] for n in normals] == [1, 2, 3]
    high = d.call("generate", {"prompt": "urgent", "duration_sec": 1, "priority": "high"})
    assert high["position"] == 1
    status = d.call("queue_status")
    assert status["running"]["track_id"] == first["track_id"]
    assert [w["track_id"] for w in status["waiting"]] == [high["track_id"]] + [n["track_id"] for n in normals]
    assert [w["position"] for w in status["waiting"]] == [1, 2, 3, 4]
    # Fill the waiting line to 10; the 11th waiting job is refused; the running one does not count.
    more = [d.call("generate", {"prompt": f"m{i}", "duration_sec": 1}) for i in range(6)]
    assert len(d.call("queue_status")["waiting"]) == 10
    err = error_of(d.request("generate", {"prompt": "one too many", "duration_sec": 1}))
    assert (err["code"], err["data"]["error_code"]) == (-32004, "QUEUE_FULL")
    cleared = d.call("queue_clear")
    assert cleared["removed"] == 10
    d.wait_notification("generation_complete", track_id=first["track_id"])
    assert all(d.wait_notification("generation_cancelled", track_id=j["track_id"]) for j in normals + more)


def test_high_priority_runs_before_earlier_normal_jobs(daemon):
    d = daemon(LOFI_TONE_STEP_SEC="0.02", LOFI_TONE_STEPS="20")
    a = d.call("generate", {"prompt": "a", "duration_sec": 1})
    d.wait_notification("generation_started", track_id=a["track_id"])
    b = d.call("generate", {"prompt": "b", "duration_sec": 1})
    c = d.call("generate", {"prompt": "c", "duration_sec": 1})
    h = d.call("generate", {"prompt": "h", "duration_sec": 1, "priority": "high"})
    d.wait_notification("generation_complete", track_id=c["track_id"])
    order = [n["params"]["track_id"] for n in d.notifications if n["method"] == "generation_started"]
    assert order == [a["track_id"], h["track_id"], b["track_id"], c["track_id"]]


def steps_done(d, track_id: str) -> int:
    progress = [n["params"] for n in list(d.notifications) if n["method"] == "generation_progress"]
    return max((p["current_step"] for p in progress if p["track_id"] == track_id), default=0)


def test_cancel_waiting_and_running_jobs_and_the_worker_survives(daemon):
    # 20 steps (one progress notification each) that together last the whole ceiling: the running job cannot
    # finish before the test cancels it, however slow the machine is.
    d = daemon(LOFI_TONE_STEP_SEC=str(CEILING / 20), LOFI_TONE_STEPS="20")
    running = d.call("generate", {"prompt": "running", "duration_sec": 1})
    waiting = d.call("generate", {"prompt": "waiting", "duration_sec": 1})
    d.wait_notification("generation_progress", track_id=running["track_id"])
    assert d.call("cancel", {"track_id": waiting["track_id"]}) == {
        "track_id": waiting["track_id"],
        "cancelled": True,
        "was_running": False,
    }
    d.wait_notification("generation_cancelled", track_id=waiting["track_id"])
    step_at_cancel = steps_done(d, running["track_id"])
    assert d.call("cancel", {"track_id": running["track_id"]})["was_running"] is True
    d.wait_notification("generation_cancelled", track_id=running["track_id"])
    # within one step: the step in progress may finish, plus one notification that was already on its way
    assert steps_done(d, running["track_id"]) <= step_at_cancel + 2
    assert "generation_complete" not in d.events(running["track_id"])
    assert "generation_started" not in d.events(waiting["track_id"])
    err = error_of(d.request("cancel", {"track_id": "0000000000000000"}))
    assert err["data"]["error_code"] == "TRACK_NOT_FOUND"
    # The worker is still alive.
    d2 = d.call("generate", {"prompt": "after", "duration_sec": 1})
    assert d.wait_notification("generation_started", track_id=d2["track_id"])


def test_failing_job_reports_error_and_worker_continues(daemon):
    d = daemon()
    bad = d.call("generate", {"prompt": "please FAIL", "duration_sec": 1})
    good = d.call("generate", {"prompt": "fine", "duration_sec": 1})
    err = d.wait_notification("generation_error", track_id=bad["track_id"])
    assert err["code"] == -32003 and err["error_code"] == "MODEL_INFERENCE_FAILED"
    assert "on purpose" in err["message"]
    assert d.wait_notification("generation_complete", track_id=good["track_id"])
    assert d.call("ping")["pong"]


def test_missing_model_needs_consent_then_downloads(daemon):
    d = daemon(LOFI_TONE_NOT_INSTALLED="1")
    err = error_of(d.request("generate", {"prompt": "x", "duration_sec": 1}))
    assert err["code"] == -32008 and "download_backend" in err["data"]["hint"]
    r = d.call("generate", {"prompt": "x", "duration_sec": 1, "allow_download": True})
    d.wait_notification("generation_complete", track_id=r["track_id"])
    assert d.wait_notification("download_progress", backend="tone")["files_total"] == 1


def test_download_backend_rpc(daemon):
    d = daemon(LOFI_TONE_NOT_INSTALLED="1")
    assert d.call("download_backend", {"backend": "tone"})["status"] == "started"
    d.wait_notification("download_progress", backend="tone", state="complete")
    assert d.call("download_backend", {"backend": "tone"})["status"] == "already_installed"
    tone = next(b for b in d.call("get_backends")["backends"] if b["name"] == "tone")
    assert tone["installed"] is True


def test_nothing_but_protocol_on_stdout_even_when_code_prints(daemon):
    d = daemon(LOFI_BACKEND_PLUGINS="tests.doubles.noisy_backend:NoisyBackend")
    r = d.call("generate", {"prompt": "x", "duration_sec": 1, "backend": "noisy"})
    d.wait_notification("generation_complete", track_id=r["track_id"])
    d.call("shutdown")
    d.proc.wait(CEILING)
    assert d.eof.wait(CEILING)  # everything the daemon wrote to stdout has been parsed
    wait_until(lambda: b"CHILD-PROCESS" in d.stderr)  # its child may write to stderr last
    assert d.garbage == []
    for marker in (b"PRINTED", b"RAW-FD1", b"CHILD-PROCESS"):
        assert marker in d.stderr


def test_initialize_cache_dir_moves_the_cache(daemon, tmp_path):
    d = daemon()
    elsewhere = tmp_path / "elsewhere"
    init = d.call("initialize", {"options": {"cache_dir": str(elsewhere), "cache": {"max_mb": 50}}})
    assert init["cache_dir"] == str(elsewhere)
    r = d.call("generate", {"prompt": "moved", "duration_sec": 1})
    done = d.wait_notification("generation_complete", track_id=r["track_id"])
    assert done["path"].startswith(str(elsewhere / "tracks"))
    assert [t["track_id"] for t in d.call("cache_list")["tracks"]] == [r["track_id"]]
    stats = d.call("cache_stats")
    assert stats["dir"].startswith(str(elsewhere)) and stats["max_mb"] == 50
