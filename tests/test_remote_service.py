"""A hostile local side against a real `lofi-daemon serve --generator`: bad jobs get clear errors, the remote
stays up (answers ping), holds a bounded number of jobs and writes nothing outside its own folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from lofi_daemon.errors import ErrorCode

from tests.daemon_client import DaemonProcess


@pytest.fixture
def remote(tmp_path):
    d = DaemonProcess(tmp_path, ("serve", "--generator"), LOFI_TONE_STEP_SEC="0.2", LOFI_TONE_STEPS="500")
    assert d.call("initialize", {"protocol_version": 1})["role"] == "generator"
    yield d
    d.close()


def job(job_id: str = "a1", **over) -> dict:
    params = {"guidance_scale": 1.0}  # canonical, as the local side sends them
    return {
        "job_id": job_id,
        "backend": "tone",
        "prompt": "rain",
        "duration_sec": 1,
        "seed": 1,
        "params": params,
        **over,
    }


def error(d: DaemonProcess, method: str, params: dict) -> dict:
    reply = d.request(method, params)
    assert "error" in reply, reply
    return reply["error"]


def test_bad_jobs_are_refused_clearly_and_the_remote_stays_up(remote, tmp_path):
    too_long = error(remote, "generator.generate", job(duration_sec=3000))  # tone makes at most 60 s
    assert too_long["code"] == ErrorCode.INVALID_PARAMS and "60 s" in too_long["message"], too_long
    path = error(remote, "generator.generate", job(params={"guidance_scale": "/etc/passwd"}))
    assert "names a file" in path["message"], path
    listed = error(remote, "generator.generate", job(params={"guidance_scale": ["../../x"]}))
    assert "names a file" in listed["message"], listed
    for bad_id in ("../escape", "a\nb", "x" * 65, ""):
        assert error(remote, "generator.generate", job(bad_id))["code"] == ErrorCode.INVALID_PARAMS
        assert error(remote, "generator.cancel", {"job_id": bad_id})["code"] == ErrorCode.INVALID_PARAMS
    unknown = error(remote, "generator.generate", job(backend="nope"))
    assert unknown["code"] == ErrorCode.INVALID_BACKEND and "tone" in unknown["message"]
    assert remote.call("generator.cancel", {"job_id": "nobody"}) == {"cancelled": False}
    assert remote.call("ping") == {"pong": True}
    assert not remote.notifications or all(n["method"] == "log" for n in remote.notifications)


def test_a_flood_of_jobs_is_bounded_and_cancellable(remote, tmp_path):
    accepted, refused = [], []
    for i in range(12):
        reply = remote.request("generator.generate", job(f"j{i}"))
        (accepted if "result" in reply else refused).append((f"j{i}", reply))
    assert len(accepted) == 8, refused  # MAX_JOBS: one running + seven queued
    assert all("already holds 8 jobs" in r["error"]["message"] for _, r in refused)
    assert error(remote, "generator.generate", job("j0"))["message"] == "job j0 is already here"
    for job_id, _ in accepted:
        assert remote.call("generator.cancel", {"job_id": job_id}) == {"cancelled": True}
    for job_id, _ in accepted:
        remote.wait_notification("generator.cancelled", job_id=job_id)
    assert remote.call("ping") == {"pong": True}
    finished = remote.call("generator.generate", job("after", duration_sec=1))  # room again
    assert finished["accepted"]
    written = {p.relative_to(tmp_path).parts[0] for p in Path(tmp_path).rglob("*") if p.is_file()}
    assert written <= {"cache", "log", "xdg"}, written  # its own folders only


def test_too_long_lyrics_fail_the_remote_job_before_its_model_loads(tmp_path):
    """The remote checks lyrics as the local worker does: tokenised in the job (its dispatch thread stays free),
    refused with INVALID_PARAMS before the model loads."""
    from lofi_daemon.backends.ace_step.backend import AceStepBackend
    from lofi_daemon.config import Settings

    from tests.ace_step_helpers import FIXTURE

    settings = Settings.from_env(
        {"LOFI_ACE_STEP_DIR": str(FIXTURE), "LOFI_CACHE_DIR": str(tmp_path / "local")}
    )
    params = AceStepBackend(settings).validate(
        {"lyrics": "la la la la la la\n" * 1000}
    )  # as the local side sends
    d = DaemonProcess(tmp_path, ("serve", "--generator"), LOFI_ACE_STEP_DIR=str(FIXTURE), LOFI_THREADS="1")
    try:
        assert d.call("initialize", {"protocol_version": 1})["role"] == "generator"
        spec = job("lyrics1", backend="ace_step", duration_sec=5, params=params)
        assert d.call("generator.generate", spec)["accepted"] is True
        failed = d.wait_notification("generator.error", job_id="lyrics1")
        assert failed["code"] == ErrorCode.INVALID_PARAMS and "at most 5000" in failed["message"], failed
        assert "generator.progress" not in [n["method"] for n in d.notifications]
        assert d.call("ping") == {"pong": True}
    finally:
        d.close()
    log = "".join(p.read_text() for p in (tmp_path / "log").rglob("*.log*"))
    assert "lyrics are" in log and " ready in " not in log  # refused, and the model never loaded
