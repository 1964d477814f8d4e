"""End to end: a real headless Neovim drives the real daemon (this checkout's lofi_daemon) through :Lofi.

The daemon runs with the test-double backend tests/doubles/tone_backend.py (a sine tone, milliseconds per track) so the
queue, worker, cache and notifications are the real ones while no model is needed."""

from __future__ import annotations

import os
import re
import signal

import pytest

from tests.daemon_client import CEILING
from tests.nvim_helpers import (
    ROOT,
    configure,
    daemon_env,
    embedded_nvim,
    events,
    install_recorder,
    notes,
    poll,
    real_daemon_cmd,
    wait_for,
)
from tests.test_remote_generator import remote_cmd, slow_start

ERROR = 4


def start(tmp_path, **env):
    child_env = daemon_env(tmp_path)
    child_env["PYTHONPATH"] += os.pathsep + str(ROOT)
    child_env["LOFI_BACKEND_PLUGINS"] = "tests.doubles.tone_backend:ToneBackend"
    child_env["HF_HUB_OFFLINE"] = "1"
    child_env.update(env)
    return embedded_nvim(tmp_path, env=child_env)


def setup(nvim, **cfg):
    configure(
        nvim,
        {
            # synchronous requests (health, completion) wait up to the tests' ceiling: a loaded machine is slow
            "daemon": {"cmd": real_daemon_cmd(), "request_timeout_ms": int(CEILING * 1000)},
            "backend": "tone",
            "ui": {"progress_interval_ms": 0},
            **cfg,
        },
    )
    install_recorder(nvim)


def names(nvim):
    return [e["name"] for e in events(nvim) if e["name"] != "LofiPlaybackPosition"]


def has_event(name):
    return f"for _, e in ipairs(_G.lofi_events) do if e.name == '{name}' then return e.data end end"


def capabilities(nvim):
    info = wait_for(nvim, "return require('lofi.client').server_info()")
    return set(info["capabilities"]["methods"])


def test_generate_shows_progress_then_completes(tmp_path):
    with start(tmp_path, LOFI_TONE_STEPS="40", LOFI_TONE_STEP_SEC="0.02") as nvim:
        setup(nvim)
        nvim.command("Lofi generate rainy night jazz duration=3 seed=11")
        # While the worker runs, the statusline shows the generation from cached state.
        line = wait_for(nvim, "local s = require('lofi').statusline() return s:find('◌ [1-9]') and s")
        assert line.startswith("◌ ") and line.endswith("%")
        done = wait_for(nvim, has_event("LofiGenerationComplete"))
        assert done["prompt"] == "rainy night jazz" and done["seed"] == 11 and done["backend"] == "tone"
        assert done["duration_sec"] == pytest.approx(3.0) and os.path.isfile(done["path"])
        seq = names(nvim)
        assert seq[:2] == ["LofiDaemonStarted", "LofiGenerationStarted"]
        percents = [e["data"]["percent"] for e in events(nvim, "LofiGenerationProgress")]
        assert percents == sorted(percents) and 0 < len(percents) <= 20 and max(percents) <= 99
        assert any(n.startswith("lofi: track ready: “rainy night jazz” (0:03") for n in notes(nvim))


def test_same_request_again_is_served_from_cache(tmp_path):
    with start(tmp_path) as nvim:
        setup(nvim)
        nvim.command("Lofi generate cached tune duration=2 seed=3")
        wait_for(
            nvim,
            "return #vim.tbl_filter(function(e) return e.name == 'LofiGenerationComplete' end, "
            "_G.lofi_events) == 1",
        )
        nvim.command("Lofi generate cached tune duration=2 seed=3")
        completes = poll(
            lambda: (
                len(events(nvim, "LofiGenerationComplete")) == 2 and events(nvim, "LofiGenerationComplete")
            )
        )
        assert completes[1]["data"]["cached"] is True
        assert completes[0]["data"]["track_id"] == completes[1]["data"]["track_id"]
        assert any("was already in the cache" in n for n in notes(nvim))
        # Completion now knows the daemon's backends and the cached track.
        assert "tone" in nvim.funcs.getcompletion("Lofi download ", "cmdline")
        assert "backend=tone" in nvim.funcs.getcompletion("Lofi generate backend=", "cmdline")
        assert nvim.funcs.getcompletion("Lofi play ", "cmdline") == [completes[0]["data"]["track_id"]]


def test_cancel_and_queue(tmp_path):
    with start(tmp_path, LOFI_TONE_STEPS="2000", LOFI_TONE_STEP_SEC="0.01") as nvim:
        setup(nvim)
        nvim.command("Lofi generate first long one duration=2")
        # Wait until the worker runs it, or the high-priority job below would (rightly) overtake it.
        wait_for(nvim, has_event("LofiGenerationStarted"))
        nvim.command("Lofi generate second long one duration=2 priority=high")
        wait_for(nvim, "return require('lofi').statusline():find('◌ %d') ~= nil")  # answered (◌ … before)
        nvim.command("Lofi queue")
        queue_note = poll(lambda: [n for n in notes(nvim) if n.startswith("lofi: queue\n")])[0]
        lines = queue_note.splitlines()
        assert lines[1].startswith("▶ ") and "first long one" in lines[1]
        assert lines[2].startswith("1. ") and "second long one" in lines[2] and "high" in lines[2]
        # Cancel the waiting one by id (completion offers it), then the running one without an id.
        waiting_id = lines[2].split()[1]
        assert waiting_id in nvim.funcs.getcompletion("Lofi cancel ", "cmdline")
        nvim.command(f"Lofi cancel {waiting_id}")
        wait_for(nvim, has_event("LofiGenerationCancelled"))
        nvim.command("Lofi cancel")
        wait_for(
            nvim,
            "return #vim.tbl_filter(function(e) return e.name == 'LofiGenerationCancelled' "
            "end, _G.lofi_events) == 2",
        )
        cancelled = {e["data"]["track_id"] for e in events(nvim, "LofiGenerationCancelled")}
        assert waiting_id in cancelled and len(cancelled) == 2
        wait_for(nvim, "return require('lofi').statusline() == ''")
        assert events(nvim, "LofiGenerationComplete") == []
        assert notes(nvim, ERROR) == []


def test_a_generate_waiting_for_the_remote_generator_shows_and_cancels(tmp_path):
    go, before = slow_start(tmp_path)  # the remote never starts: `go` is never touched
    with start(tmp_path) as nvim:
        remote = {
            "cmd": remote_cmd(tmp_path, before=before),
            "backends": ["tone"],
            "connect_timeout_sec": 600,
        }
        setup(nvim, generator=remote)
        nvim.command("Lofi generate waits for the remote duration=1")
        # no track id yet, but the user sees it: statusline, :Lofi status, :Lofi queue
        wait_for(nvim, "return require('lofi').statusline() == '◌ …'")
        nvim.command("Lofi status")
        status_note = poll(lambda: [n for n in notes(nvim) if n.startswith("lofi: status\n")])[0]
        assert "queue: 0 running, 0 waiting, 1 connecting" in status_note
        nvim.command("Lofi queue")
        queue_note = poll(lambda: [n for n in notes(nvim) if n.startswith("lofi: queue\n")])[0]
        assert "waits for the remote" in queue_note and "waiting for the remote generator" in queue_note
        # :Lofi cancel reaches it: answered as cancelled (not an error), and the statusline is empty again
        nvim.command("Lofi cancel")
        poll(lambda: [n for n in notes(nvim) if "cancelled 1 generation(s) waiting" in n])
        poll(lambda: [n for n in notes(nvim) if "generation cancelled before it was queued" in n])
        wait_for(nvim, "return require('lofi').statusline() == ''")
        assert notes(nvim, ERROR) == []
        assert not go.exists()


def test_errors_surface_as_clear_notifications(tmp_path):
    with start(tmp_path, LOFI_TONE_NOT_INSTALLED="1") as nvim:
        setup(nvim)
        nvim.command("Lofi generate too long duration=500")
        nvim.command("Lofi generate needs a model duration=2")
        nvim.command("Lofi generate x backend=nosuch")
        errs = poll(lambda: len(notes(nvim, ERROR)) >= 3 and notes(nvim, ERROR))
        # The daemon's words, one line each, no internal codes (they would mean nothing to a user).
        assert errs[0] == "lofi: duration 500 s is outside 1–60 s for tone"
        assert errs[1] == "lofi: the tone model is not installed: run :Lofi download tone"
        assert "nosuch" in errs[2] and "INVALID_BACKEND" not in errs[2] and "\n" not in errs[2]
        assert nvim.exec_lua("return require('lofi').statusline()") == ""


def test_sigkill_restarts_the_daemon_without_lua_errors(tmp_path):
    with start(tmp_path, LOFI_TONE_STEPS="2000", LOFI_TONE_STEP_SEC="0.01") as nvim:
        setup(nvim)
        nvim.command("Lofi generate interrupted duration=2")
        wait_for(nvim, "return require('lofi').statusline():find('◌ %d') ~= nil")  # answered (◌ … before)
        pid = nvim.exec_lua("return require('lofi.client').pid()")
        os.kill(pid, signal.SIGKILL)
        exit_data = poll(lambda: events(nvim, "LofiDaemonExit"))[0]["data"]
        assert exit_data["signal"] == 9 and exit_data["restarting"] is True
        # State is cleared at once, and a fresh daemon comes back and answers.
        assert nvim.exec_lua("return require('lofi').statusline()") == ""
        new_pid = wait_for(nvim, "return require('lofi.client').is_ready() and require('lofi.client').pid()")
        assert new_pid != pid
        nvim.exec_lua(
            "_G.st = nil require('lofi.client').request('status', nil, function(e, r) _G.st = r end)"
        )
        assert wait_for(nvim, "return _G.st")["pid"] == new_pid
        assert [e["name"] for e in events(nvim) if e["name"].startswith("LofiDaemon")] == [
            "LofiDaemonStarted",
            "LofiDaemonExit",
            "LofiDaemonStarted",
        ]
        assert notes(nvim, ERROR) == []
        assert nvim.exec_lua("return vim.v.errmsg") == ""


def test_checkhealth_against_the_real_daemon(tmp_path):
    with start(tmp_path) as nvim:
        setup(nvim)
        nvim.command("checkhealth lofi")
        lines = [ln.strip() for ln in nvim.current.buffer[:] if ln.strip()]
        text = "\n".join(lines)
        expected_in_order = [
            "lofi: Neovim ~",
            "- ✅ OK Neovim 0.",
            "lofi: configuration ~",
            "- ✅ OK configuration is valid",
            "- default backend: tone, provider: auto, progress UI: notify",
            "- radio: plan none, adaptive off",
            "lofi: daemon ~",
            "- ✅ OK daemon command: " + " ".join(real_daemon_cmd()),
            "- no daemon is running for this Neovim",
            "- ✅ OK daemon 0.",
            "- Python 3.",
            "- packages: huggingface_hub ",
            "- ✅ OK onnxruntime providers: ",
            "lofi: models ~",
            "- ✅ OK tone installed (variant sine)",
            "lofi: audio ~",
            "lofi: cache and log ~",
            f"- cache: {tmp_path / 'cache'}",
            f"- daemon log: {tmp_path / 'log'}",
            "lofi: optional integrations ~",
            "- telescope.nvim not found: pickers use vim.ui.select",
            "- lualine.nvim not found: use require('lofi').statusline()",
            "- nvim-notify not found: progress is echoed on the command line",
        ]
        i = 0
        for want in expected_in_order:
            while i < len(lines) and not lines[i].startswith(want):
                i += 1
            assert i < len(lines), f"{want!r} missing or out of order in:\n{text}"
        assert "CPUExecutionProvider" in text and "ERROR" not in text
        # No audio device here: a warning with advice, not an error.
        assert "WARNING no audio output" in text
        assert nvim.exec_lua("return require('lofi.client').is_running()") is False


MUSICGEN_TINY = ROOT / "tests" / "fixtures" / "musicgen-tiny"


def musicgen_or_skip():
    if not (MUSICGEN_TINY / "config.json").exists():
        pytest.skip("no tiny MusicGen fixture")
    if not (ROOT / "daemon" / "lofi_daemon" / "backends" / "musicgen" / "backend.py").exists():
        pytest.skip("this checkout has no MusicGen backend")


def test_real_musicgen_tiny_model_generates_from_neovim(tmp_path):
    musicgen_or_skip()
    with start(tmp_path, LOFI_MUSICGEN_DIR=str(MUSICGEN_TINY)) as nvim:
        setup(nvim, backend="musicgen", provider="cpu", threads=1)
        nvim.command("Lofi generate lofi piano, rain duration=5 seed=1")
        done = wait_for(nvim, has_event("LofiGenerationComplete"), timeout=120)
        assert done["backend"] == "musicgen" and done["sample_rate"] == 32000 and done["seed"] == 1
        assert done["duration_sec"] == pytest.approx(5.0, abs=0.1) and os.path.isfile(done["path"])
        assert len(events(nvim, "LofiGenerationProgress")) >= 5
        nvim.command("Lofi models")
        models = poll(lambda: [n for n in notes(nvim) if n.startswith("lofi: models\n")])[0]
        assert "✓ musicgen (" in models and "[default]" in models and "5-120s @ 32000 Hz" in models


def test_missing_musicgen_model_says_how_to_download(tmp_path):
    musicgen_or_skip()
    # never downloaded: an empty hub cache and no model directory
    with start(tmp_path, HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub")) as nvim:
        setup(nvim, backend="musicgen")
        nvim.command("Lofi generate lofi piano duration=5")
        err = poll(lambda: notes(nvim, ERROR))[0]
        assert err == "lofi: the musicgen model is not installed: run :Lofi download musicgen"


def test_a_model_dir_without_the_model_names_the_missing_file(tmp_path):
    musicgen_or_skip()
    empty = tmp_path / "no-model"
    empty.mkdir()
    with start(tmp_path, LOFI_MUSICGEN_DIR=str(empty)) as nvim:
        setup(nvim, backend="musicgen")
        nvim.command("Lofi generate lofi piano duration=5")
        err = poll(lambda: notes(nvim, ERROR))[0]
        # no download can fill a directory the user chose: name what is missing there
        assert "text_encoder.onnx" in err and str(empty) in err and "not installed" not in err, err


def test_download_from_neovim_shows_progress_then_generates(tmp_path):
    musicgen_or_skip()
    from tests.hub_server import HubFiles, HubServer, files_from_dir
    from tests.test_musicgen_download import REPO_FILES, VARIANT

    files = HubFiles(VARIANT.repo_id, files_from_dir(MUSICGEN_TINY, REPO_FILES))
    with HubServer(files) as server:
        hub = {"HF_ENDPOINT": server.endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
        with start(tmp_path, **hub, HF_HUB_DISABLE_PROGRESS_BARS="1") as nvim:
            setup(nvim, backend="musicgen", provider="cpu", threads=1)
            nvim.command("Lofi! download musicgen")  # [!]: no question first (tested with the fake daemon)
            wait_for(
                nvim,
                "for _, e in ipairs(_G.lofi_events) do if e.name == 'LofiDownloadProgress' "
                "and e.data.state == 'complete' then return true end end",
            )
            progress = [e["data"] for e in events(nvim, "LofiDownloadProgress")]
            assert all(p["backend"] == "musicgen" for p in progress)
            assert progress[-1]["state"] == "complete" and progress[-1]["percent"] == 100
            completed = [p["files_completed"] for p in progress if p["state"] == "downloading"]
            assert completed == sorted(completed) and completed[-1] >= 5
            assert any(n == "lofi: downloading musicgen…" for n in notes(nvim))
            assert any(n == "lofi: musicgen model downloaded" for n in notes(nvim))
            assert nvim.exec_lua("return require('lofi').statusline()") == ""
            nvim.command("Lofi generate after download duration=5 seed=2")
            done = wait_for(nvim, has_event("LofiGenerationComplete"), timeout=120)
            assert done["backend"] == "musicgen" and os.path.isfile(done["path"])


def capture_env_or_skip(tmp_path):
    """PortAudio's default ALSA device writing a WAV file (the playback helpers' recipe), or skip."""
    try:
        from tests.playback_helpers import wav_capture_config
    except ImportError:
        pytest.skip("this checkout has no playback yet")
    from tests.portaudio import require_portaudio

    require_portaudio()
    return wav_capture_config(tmp_path / "alsa-home", tmp_path / "out.wav")


def test_toggle_generates_plays_pauses_and_picks_tracks(tmp_path):
    env = capture_env_or_skip(tmp_path)
    with start(tmp_path, **env, LOFI_TONE_STEPS="10") as nvim:
        # The ALSA file device isn't paced in real time (a track plays in about a second): loop the track so
        # there is always something playing to pause.
        setup(nvim, prefetch={"enabled": False}, generate={"duration_sec": 20}, playback={"loop": "track"})
        # `:Lofi` with an empty cache generates, and auto-play starts the track.
        nvim.command("Lofi")
        line = wait_for(nvim, "local s = require('lofi').statusline() return s:find('▶') and s")
        assert re.fullmatch(r"▶ 0:[0-2]\d/0:20", line), line
        assert "LofiGenerationComplete" in names(nvim)
        started = [e["data"] for e in events(nvim, "LofiPlaybackChanged") if e["data"]["event"] == "started"]
        assert started and started[0]["duration_sec"] == pytest.approx(20.0)
        # `:Lofi` again pauses; the statusline shows ⏸ at once from the reply.
        before = len(events(nvim, "LofiPlaybackChanged"))
        nvim.exec_lua("_G.toggled = false require('lofi').toggle(function() _G.toggled = true end)")
        wait_for(nvim, "return require('lofi').statusline():find('⏸') ~= nil")
        # Both the reply and the daemon's playback_paused have been handled: then count the events.
        wait_for(nvim, "return _G.toggled")
        wait_for(
            nvim,
            "return #vim.tbl_filter(function(e) return e.data.event == 'paused' end, _G.lofi_events) > 0",
        )
        # One User event per action: the daemon's playback_paused, not also one for the `toggle` reply.
        assert [e["data"]["event"] for e in events(nvim, "LofiPlaybackChanged")[before:]] == ["paused"]
        nvim.command("Lofi volume 50")
        wait_for(nvim, "return require('lofi.state').current.playback.volume == 0.5")
        # The tracks picker lists the generated track; <CR> (Play) plays it.
        nvim.exec_lua(
            "vim.ui.select = function(items, opts, cb) _G.shown = vim.tbl_map(opts.format_item, items) "
            "if opts.kind == 'lofi_track' then _G.track_items = _G.shown return cb(items[1]) end "
            "for _, it in ipairs(items) do if it.action == 'play' then return cb(it) end end end"
        )
        nvim.command("Lofi tracks")
        wait_for(nvim, "return require('lofi').statusline():find('▶') ~= nil")
        items = nvim.exec_lua("return _G.track_items")
        assert len(items) == 1 and started[0]["track_id"][:8] in items[0] and "tone" in items[0]
        nvim.command("Lofi stop")
        wait_for(nvim, "return require('lofi').statusline() == ''")
        assert notes(nvim, ERROR) == []
