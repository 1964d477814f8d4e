"""Remote generation (daemon/lofi_daemon/remote/): a second lofi-daemon, started through a command wrapper with its
own folders, generates; the local daemon caches and plays. Uses the tone double for the protocol paths and the
tiny MusicGen model for real streaming audio."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lofi_daemon.backends.base import GenerationRequest
from lofi_daemon.cancel import CancelToken
from lofi_daemon.config import Settings
from lofi_daemon.errors import ErrorCode, LofiError
from lofi_daemon.remote.backend import RemoteBackend
from lofi_daemon.remote.link import RemoteLink
from lofi_daemon.remote.protocol import names_a_file

from tests.daemon_client import CEILING, DaemonProcess, daemon_env
from tests.doubles.fake_generator import command as fake_cmd
from tests.musicgen_fixture import FIXTURE as MUSICGEN_TINY

PY = shlex.quote(sys.executable)


def remote_cmd(tmp: Path, *, before: str = "", **env: str) -> list[str]:
    """`sh -c` starting a generator with its own cache/log folders (what `ssh gpu-box lofi-daemon serve
    --generator` is on a real setup); it writes its shell's pid to tmp/remote.pid (exec keeps the pid)."""
    remote = tmp / "remote"
    values = {
        **daemon_env(remote),
        "LOFI_CACHE_DIR": str(remote / "cache"),
        "LOFI_LOG_DIR": str(remote / "log"),
        **env,
    }
    keep = ("PYTHONPATH", "LOFI_CACHE_DIR", "LOFI_LOG_DIR", "LOFI_BACKEND_PLUGINS", "HF_HUB_OFFLINE")
    assigns = " ".join(f"{k}={shlex.quote(values[k])}" for k in (*keep, *env))
    script = f"{before}echo $$ > {shlex.quote(str(tmp / 'remote.pid'))}; exec env {assigns} {PY} -m lofi_daemon serve --generator"
    return ["sh", "-c", script]


def generate(d: DaemonProcess, **params) -> dict:
    reply = d.call(
        "generate", {"prompt": "remote tone", "backend": "tone", "duration_sec": 1, "seed": 7, **params}
    )
    return reply


@pytest.fixture
def local(tmp_path):
    made: list[DaemonProcess] = []

    def start(cmd: list[str] | None = None, **env: str) -> DaemonProcess:
        extra = {"LOFI_GENERATOR": shlex.join(cmd), "LOFI_GENERATOR_BACKENDS": "tone"} if cmd else {}
        home = tmp_path / f"local{len(made)}"
        home.mkdir()
        d = DaemonProcess(home, **extra, **env)
        made.append(d)
        d.call("initialize", {})
        return d

    yield start
    for d in made:
        d.close()


def track_audio(path: str) -> np.ndarray:
    return sf.read(path, dtype="float32", always_2d=True)[0]


def test_a_remote_track_is_cached_locally_with_the_same_id_and_audio(local, tmp_path):
    remote = local(remote_cmd(tmp_path))
    here = local()
    a, b = generate(remote), generate(here)
    assert a["track_id"] == b["track_id"]  # same request, same model version → same identity
    done = remote.wait_notification("generation_complete", track_id=a["track_id"])
    mine = here.wait_notification("generation_complete", track_id=b["track_id"])
    assert Path(done["path"]).is_relative_to(tmp_path / "local0")  # the local cache, not the remote's
    assert done["model_version"] == "tone-v1"
    np.testing.assert_array_equal(track_audio(done["path"]), track_audio(mine["path"]))
    status = remote.call("status")["generator"]
    assert status["state"] == "ready" and status["latency_ms"] is not None
    assert [b["name"] for b in status["backends"]] and status["protocol_version"] == 1
    assert not (tmp_path / "remote" / "cache" / "tracks").exists()  # the remote keeps no tracks


def test_cancel_passes_through_and_the_remote_goes_on(local, tmp_path):
    d = local(remote_cmd(tmp_path, LOFI_TONE_STEP_SEC="0.2", LOFI_TONE_STEPS="200"))
    job = generate(d)
    d.wait_notification("generation_progress", track_id=job["track_id"])
    assert d.call("cancel", {"track_id": job["track_id"]})["cancelled"]
    d.wait_notification("generation_cancelled", track_id=job["track_id"])
    assert d.call("status")["generator"]["state"] == "ready"


def test_a_dropped_link_fails_the_job_clearly_and_the_next_job_reconnects(local, tmp_path):
    d = local(remote_cmd(tmp_path, LOFI_TONE_STEP_SEC="0.2", LOFI_TONE_STEPS="50"))
    d.call(
        "initialize",
        {
            "options": {
                "generator": {
                    "cmd": remote_cmd(tmp_path, LOFI_TONE_STEP_SEC="0.2", LOFI_TONE_STEPS="50"),
                    "backends": ["tone"],
                    "retry": False,
                }
            }
        },
    )
    job = generate(d)
    d.wait_notification("generation_progress", track_id=job["track_id"])
    pid = int((tmp_path / "remote.pid").read_text())
    import os
    import signal

    os.kill(pid, signal.SIGKILL)
    err = d.wait_notification("generation_error", track_id=job["track_id"])
    assert "lost the remote generator" in err["message"]
    again = generate(d, seed=8)
    d.wait_notification("generation_complete", track_id=again["track_id"])


def test_retry_once_after_a_drop_before_any_audio(local, tmp_path):
    cmd = remote_cmd(tmp_path, LOFI_TONE_STEP_SEC="0.1", LOFI_TONE_STEPS="30")
    d = local(cmd)
    job = generate(d)
    d.wait_notification("generation_progress", track_id=job["track_id"])
    import os
    import signal

    first = int((tmp_path / "remote.pid").read_text())
    os.kill(first, signal.SIGKILL)
    d.wait_notification("generation_complete", track_id=job["track_id"])  # retried on a new connection
    assert int((tmp_path / "remote.pid").read_text()) != first


def slow_start(tmp_path: Path) -> tuple[Path, str]:
    """(go, before): the remote starts once the test touches `go` (or after 120 s: never an orphan loop)."""
    go = tmp_path / "go"
    return go, f"i=0; while [ ! -e {go} ] && [ $i -lt 2400 ]; do sleep 0.05; i=$((i+1)); done; "


def send_generate(d: DaemonProcess, id_: str, seed: int) -> None:
    """A generate whose answer the test waits for later (d.wait_response(id_))."""
    params = {"prompt": "remote tone", "backend": "tone", "duration_sec": 1, "seed": seed}
    d.send({"jsonrpc": "2.0", "id": id_, "method": "generate", "params": params})


def test_a_slow_remote_start_shows_connecting_then_works(local, tmp_path):
    go, wait_for_go = slow_start(tmp_path)
    # each job takes 10 steps of 0.2 s, so the first is still queued or running when the second is accepted
    d = local(remote_cmd(tmp_path, before=wait_for_go, LOFI_TONE_STEP_SEC="0.2", LOFI_TONE_STEPS="10"))
    status = d.call("status")["generator"]
    assert status["state"] == "connecting", status
    # jobs sent while connecting wait for the handshake (their identity needs the remote's model version) off
    # the dispatch thread: everything else is answered meanwhile, and their replies come once connected
    for id_, seed in (("early", 7), ("second", 8)):
        d.send(
            {
                "jsonrpc": "2.0",
                "id": id_,
                "method": "generate",
                "params": {"prompt": "remote tone", "backend": "tone", "duration_sec": 1, "seed": seed},
            }
        )
    assert d.call("status")["generator"]["state"] == "connecting"  # the remote cannot start before `go`
    assert d.call("queue_status")["running"] is None and d.call("ping") is not None
    bad = d.request("generate", {"prompt": "", "backend": "tone", "duration_sec": 1})
    assert bad["error"]["code"] == ErrorCode.INVALID_PROMPT  # bad params are still refused at once
    assert "early" not in d.responses and "second" not in d.responses
    go.touch()
    first, second = d.wait_response("early")["result"], d.wait_response("second")["result"]
    assert second["position"] >= 1  # queued in the order the requests were sent
    d.wait_notification("generation_complete", track_id=first["track_id"])
    d.wait_notification("generation_complete", track_id=second["track_id"])
    assert d.call("status")["generator"]["state"] == "ready"
    # once connected a generate is answered in place again
    assert generate(d, seed=7)["status"] == "cached"


def test_generates_waiting_for_the_handshake_are_listed_and_queue_clear_drops_them(local, tmp_path):
    go, wait_for_go = slow_start(tmp_path)
    d = local(remote_cmd(tmp_path, before=wait_for_go))
    send_generate(d, "a", 7)
    send_generate(d, "b", 8)
    # visible while they wait (requests are handled in order): queue_status lists them (no track id yet), status
    # counts them
    connecting = d.call("queue_status")["connecting"]
    assert [(c["seed"], c["prompt"], c["backend"]) for c in connecting] == [
        (7, "remote tone", "tone"),
        (8, "remote tone", "tone"),
    ]
    assert d.call("status")["queue"]["connecting"] == 2
    # queue_clear drops them: each is answered with CANCELLED, nothing is queued
    cleared = d.call("queue_clear", {})
    assert (cleared["connecting"], cleared["removed"]) == (2, 0), cleared
    for id_ in ("a", "b"):
        err = d.wait_response(id_)["error"]
        assert (err["code"], err["data"]["error_code"]) == (ErrorCode.CANCELLED, "CANCELLED"), err
        assert "nothing was queued" in err["message"]
    assert d.call("queue_status")["connecting"] == []
    # once connected, a new generate runs, and it is the only job: the dropped ones never reach the queue
    go.touch()
    job = generate(d, seed=9)
    d.wait_notification("generation_complete", track_id=job["track_id"])
    assert d.events().count("generation_started") == 1, d.events()
    assert d.call("queue_status")["waiting"] == []


def test_stopping_the_daemon_answers_a_generate_waiting_for_the_handshake(local, tmp_path):
    _, wait_for_go = slow_start(tmp_path)
    d = local(remote_cmd(tmp_path, before=wait_for_go))
    send_generate(d, "waits", 7)
    assert d.call("status")["queue"]["connecting"] == 1
    assert d.call("shutdown") == {"ok": True}
    err = d.wait_response("waits")["error"]
    assert err["data"]["error_code"] == "CANCELLED" and "stopping" in err["message"], err


def test_a_protocol_mismatch_says_what_to_update(local, tmp_path):
    d = local(fake_cmd("old-protocol"))
    reply = d.request("generate", {"prompt": "x", "backend": "tone", "duration_sec": 1})
    assert "update lofi" in reply["error"]["message"], reply


@pytest.mark.parametrize(("mode", "says"), [("corrupt", "checksum"), ("extra", "more audio")])
def test_audio_that_fails_verification_is_not_kept(local, tmp_path, mode, says):
    d = local(fake_cmd(mode))
    job = generate(d)
    err = d.wait_notification("generation_error", track_id=job["track_id"])
    assert says in err["message"]
    listed = d.call("cache_list", {})
    assert job["track_id"] not in str(listed)


def test_remote_download_progress_is_paced_like_a_local_download(local):
    """A remote that reports its download per chunk (2,000 reports in a burst) reaches Neovim at most every
    POLL_SEC, and the reports that end the download are never dropped."""
    from lofi_daemon.models.download import POLL_SEC

    from tests.doubles.fake_generator import DOWNLOAD_BYTES, DOWNLOAD_REPORTS

    d = local(fake_cmd("chatty-download"))
    started = time.monotonic()
    job = generate(d)
    d.wait_notification("generation_complete", track_id=job["track_id"])
    elapsed = time.monotonic() - started
    reports = [n["params"] for n in d.notifications if n["method"] == "download_progress"]
    # one per POLL_SEC of the whole job at most, plus the first and the two that end the download
    assert 3 <= len(reports) <= 3 + elapsed / POLL_SEC < DOWNLOAD_REPORTS, (len(reports), elapsed)
    last = reports[-1]
    assert last["state"] == "complete" and last["bytes_downloaded"] == DOWNLOAD_REPORTS * DOWNLOAD_BYTES
    assert [r["files_completed"] for r in reports[-2:]] == [1, 1]
    assert all(r["backend"] == "tone" and r["remote"] for r in reports)


def test_the_progress_throttle_passes_every_ending_and_one_report_per_interval():
    from lofi_daemon.models.download import ProgressThrottle

    now = [0.0]
    passed: list[dict] = []
    throttle = ProgressThrottle(passed.append, interval=0.25, clock=lambda: now[0])
    for i in range(10):  # 10 reports 0.1 s apart: at 0.0, 0.3, 0.6, 0.9 s
        throttle({"bytes_downloaded": i, "files_completed": 0, "state": "downloading"})
        now[0] += 0.1
    assert [p["bytes_downloaded"] for p in passed] == [0, 3, 6, 9]
    throttle({"bytes_downloaded": 10, "files_completed": 1, "state": "downloading"})  # a file is done
    throttle({"bytes_downloaded": 10, "files_completed": 1, "state": "complete"})
    throttle({"bytes_downloaded": 10, "files_completed": 1, "state": "error"})
    assert [p["bytes_downloaded"] for p in passed] == [0, 3, 6, 9, 10, 10, 10]
    throttle({"bytes_downloaded": 11, "files_completed": 0, "state": "downloading"})  # fewer files: no ending
    assert len(passed) == 7


def test_unknown_backend_in_generator_options_is_refused(local):
    d = local()
    reply = d.request("initialize", {"options": {"generator": {"cmd": ["true"], "backends": ["nope"]}}})
    assert reply["error"]["code"] == ErrorCode.INVALID_PARAMS


def test_a_command_that_cannot_start_is_reported(local, tmp_path):
    d = local(["/nonexistent/lofi-remote"])
    reply = d.request("generate", {"prompt": "x", "backend": "tone", "duration_sec": 1})
    assert "could not start the generator command" in reply["error"]["message"]


def test_local_paths_are_never_sent():
    class Local:
        name, display_name, sample_rate, channels = "x", "X", 16000, 1
        min_duration_sec, max_duration_sec, default_duration_sec, streams_audio = 1.0, 10.0, 2.0, False

        def validate(self, raw):
            return dict(raw)

    backend = RemoteBackend(Local(), RemoteLink(["true"]), lambda *_: None)  # type: ignore[arg-type]
    with pytest.raises(LofiError, match="names a local file"):
        backend.validate({"init_audio": "/home/me/song.flac"})
    assert backend.validate({"lora": "lofi-rain", "scheduler": "euler"})
    with pytest.raises(LofiError, match="cannot read"):
        backend.validate({"task": "repaint", "source_track": "0123456789abcdef"})
    assert names_a_file("~/x.wav") and names_a_file("../x") and not names_a_file("lofi rain")


def test_musicgen_streams_over_the_link_while_the_remote_generates(tmp_path):
    """The real tiny MusicGen on the remote: chunks arrive between progress reports (so play-while-generating
    works over the link) and the track equals the remote's own, bit for bit (sha256 checked by the receiver)."""
    from lofi_daemon.backends.musicgen.backend import MusicGenBackend

    cmd = remote_cmd(tmp_path, LOFI_MUSICGEN_DIR=str(MUSICGEN_TINY), LOFI_PROVIDER="cpu", LOFI_THREADS="1")
    settings = Settings(cache_dir=tmp_path / "cache", log_dir=tmp_path / "log", provider="cpu")
    settings.models["musicgen"].dir = MUSICGEN_TINY
    link = RemoteLink(cmd, connect_timeout_sec=CEILING)
    backend = RemoteBackend(MusicGenBackend(settings, lambda *_: None), link, lambda *_: None)
    events: list[str] = []
    try:
        params = backend.validate({})
        request = GenerationRequest("musicgen", "rainy night jazz piano", 30.0, 3, params)
        audio = backend.generate(
            request,
            lambda done, total, **_: events.append("progress"),
            CancelToken(),
            on_audio=lambda chunk: events.append("audio"),
        )
        assert backend.model_version() == MusicGenBackend(settings, lambda *_: None).model_version()
    finally:
        link.close()
    first_audio = events.index("audio")
    assert "progress" in events[first_audio:], "all audio came after the last progress: nothing streamed"
    assert audio.samples.shape[0] == pytest.approx(30.0 * backend.sample_rate, rel=0.02)
    assert audio.info["remote"]


def test_neovim_generates_remotely_and_shows_the_link(tmp_path):
    """The plugin's `generator` config reaches the daemon; a track made remotely completes in Neovim, and
    `:Lofi status` and `:checkhealth lofi` show the link."""
    from tests.nvim_helpers import notes, wait_for
    from tests.test_nvim_daemon import has_event, setup, start

    cmd = remote_cmd(tmp_path)
    with start(tmp_path) as nvim:
        setup(nvim, generator={"cmd": cmd, "backends": ["tone"]})
        nvim.command("Lofi generate remote tone duration=1 seed=5")
        done = wait_for(nvim, f"{has_event('LofiGenerationComplete')} return nil")
        assert done["backend"] == "tone"
        nvim.command("Lofi status")
        line = wait_for(
            nvim,
            "for _, n in ipairs(_G.notify_double.notes) do if n.msg:find('generator: ', 1, true) then "
            "return n.msg end end return nil",
        )
        assert "ready" in line and "ms round trip" in line and "tone" in line
        nvim.command("checkhealth lofi")
        text = "\n".join(nvim.current.buffer[:])
        assert "lofi: remote generator" in text and "OK generator: " in text, text
        assert not [n for n in notes(nvim, 4)]  # no errors on the way
