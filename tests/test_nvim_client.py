"""The plugin's daemon client against tests/fake_lofi_daemon.py (a test double speaking the same protocol):
framing, initialize, events, errors, crash and restart, shutdown, health, pickers."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.nvim_helpers import (
    configure,
    embedded_nvim,
    events,
    fake_daemon_cmd,
    install_recorder,
    notes,
    poll,
    wait_for,
)

ERROR = 4


@pytest.fixture
def nvim(tmp_path):
    with embedded_nvim(tmp_path, env={"FAKE_LOG_FILE": str(tmp_path / "daemon.log")}) as n:
        install_recorder(n)
        yield n


def use_fake(nvim, tmp_path, *args, **cfg):
    record = tmp_path / "received.jsonl"
    daemon = {"cmd": fake_daemon_cmd("--record", str(record), *args), **cfg.pop("daemon", {})}
    configure(nvim, {"daemon": daemon, **cfg})
    return record


def received(record):
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def event_names(nvim):
    return [e["name"] for e in events(nvim) if e["name"] != "LofiPlaybackPosition"]


def test_generate_flow_over_byte_split_frames(nvim, tmp_path):
    record = use_fake(nvim, tmp_path, "--split-writes", ui={"progress_interval_ms": 0})
    nvim.command("Lofi generate rainy night jazz duration=20 seed=5")
    wait_for(nvim, "return require('lofi').statusline() == '▶ 0:00/0:20'")
    names = event_names(nvim)
    assert names[0] == "LofiDaemonStarted"
    assert names[1] == "LofiGenerationStarted"
    assert names.count("LofiGenerationProgress") == 5
    assert names[-2:] == ["LofiGenerationComplete", "LofiPlaybackChanged"]
    complete = events(nvim, "LofiGenerationComplete")[0]["data"]
    assert complete["prompt"] == "rainy night jazz" and complete["duration_sec"] == 20
    progress = [e["data"]["percent"] for e in events(nvim, "LofiGenerationProgress")]
    assert progress == sorted(progress) and max(progress) <= 99
    assert events(nvim, "LofiPlaybackChanged")[0]["data"]["event"] == "started"
    # Progress went through vim.notify (replaceable) and ended with a "track ready" line.
    texts = notes(nvim)
    assert texts[0] == "lofi: generating “rainy night jazz”…"
    assert any("%" in t for t in texts)
    assert texts[-1].startswith("lofi: track ready: “rainy night jazz” (0:20")
    # What the daemon got: initialize first, with client info and our options, then generate with parsed args.
    msgs = received(record)
    assert msgs[0]["method"] == "initialize"
    init = msgs[0]["params"]
    assert init["client_info"]["name"] == "lofi.nvim"
    assert init["options"]["default_backend"] == "musicgen" and init["options"]["prefetch"]["enabled"] is True
    gen = msgs[1]
    assert gen["method"] == "generate"
    assert gen["params"] == {
        "prompt": "rainy night jazz",
        "duration_sec": 20,
        "seed": 5,
        "backend": "musicgen",
        "allow_download": False,
        "format": "flac",
    }


def test_bad_duration_and_missing_model_are_clear_errors(nvim, tmp_path):
    use_fake(nvim, tmp_path)
    nvim.command("Lofi generate x duration=500")
    nvim.command("Lofi generate y backend=ace_step")
    errs = poll(lambda: len(notes(nvim, ERROR)) >= 2 and notes(nvim, ERROR))
    # Human words on one line: no internal code, no second line that would wait for Enter.
    assert errs[0] == "lofi: Duration must be between 5 and 120 seconds"
    assert errs[1] == "lofi: the ace_step model is not installed: run :Lofi download ace_step"
    assert nvim.exec_lua("return require('lofi').statusline()") == ""


def test_cancel_running_generation(nvim, tmp_path):
    use_fake(nvim, tmp_path, "--gen-steps", "400")
    nvim.command("Lofi generate long one")
    wait_for(nvim, "return require('lofi').statusline():find('◌ %d') ~= nil")  # answered (◌ … before)
    nvim.command("Lofi cancel")
    wait_for(
        nvim,
        "for _, e in ipairs(_G.lofi_events) do if e.name == 'LofiGenerationCancelled' then return true end end",
    )
    assert nvim.exec_lua("return require('lofi').statusline()") == ""
    assert nvim.exec_lua("return require('lofi').is_generating()") is False
    assert not any("Complete" in n for n in event_names(nvim))


def test_sigkill_restarts_daemon_and_fails_pending_calls(nvim, tmp_path):
    use_fake(nvim, tmp_path)
    nvim.exec_lua(
        "_G.pending = nil require('lofi.client').request('sleep', {sec = 30}, function(err, res) "
        "_G.pending = {err = err, res = res} end)"
    )
    pid1 = wait_for(nvim, "return require('lofi.client').is_ready() and require('lofi.client').pid()")
    os.kill(pid1, signal.SIGKILL)
    err = wait_for(nvim, "return _G.pending and _G.pending.err")
    assert err["code"] == -32098 and "signal 9" in err["message"]
    exit_ev = poll(lambda: events(nvim, "LofiDaemonExit"))[0]["data"]
    assert exit_ev["signal"] == 9 and exit_ev["restarting"] is True and exit_ev["attempt"] == 1
    pid2 = wait_for(nvim, "return require('lofi.client').is_ready() and require('lofi.client').pid()")
    assert pid2 != pid1
    assert len(events(nvim, "LofiDaemonStarted")) == 2
    # The restarted daemon works.
    nvim.exec_lua("_G.pong = nil require('lofi.client').request('ping', nil, function(e, r) _G.pong = r end)")
    assert wait_for(nvim, "return _G.pong") == {"pong": True}
    # No Lua error reached the user, only the restart warning.
    assert [n for n in notes(nvim, ERROR)] == []
    assert any("restarting (attempt 1 of 3)" in n for n in notes(nvim))


def test_restarts_are_bounded(nvim, tmp_path):
    use_fake(nvim, tmp_path, daemon={"max_restarts": 2})
    nvim.exec_lua("require('lofi.client').start()")
    for _ in range(3):
        pid = wait_for(nvim, "return require('lofi.client').is_ready() and require('lofi.client').pid()")
        os.kill(pid, signal.SIGKILL)
        wait_for(nvim, "return not require('lofi.client').is_running()")
    exits = poll(lambda: len(events(nvim, "LofiDaemonExit")) == 3 and events(nvim, "LofiDaemonExit"))
    assert [e["data"]["restarting"] for e in exits] == [True, True, False]
    errs = poll(lambda: notes(nvim, ERROR))
    assert "the daemon died (signal 9)" in errs[0] and ":Lofi daemon start" in errs[0]
    nvim.exec_lua("vim.wait(1500)")
    assert nvim.exec_lua("return require('lofi.client').is_running()") is False
    # An explicit start works again.
    nvim.command("Lofi daemon start")
    wait_for(nvim, "return require('lofi.client').is_ready()")


def test_crash_during_generation_reports_and_clears_progress(nvim, tmp_path):
    use_fake(nvim, tmp_path, "--crash-after-started", daemon={"auto_restart": False})
    nvim.command("Lofi generate doomed")
    ev = poll(lambda: events(nvim, "LofiDaemonExit"))[0]["data"]
    assert ev["code"] == 3 and ev["restarting"] is False
    assert nvim.exec_lua("return require('lofi').statusline()") == ""
    assert "exit code 3" in poll(lambda: notes(nvim, ERROR))[0]


def test_shutdown_on_vim_leave(tmp_path):
    record = tmp_path / "received.jsonl"
    with embedded_nvim(tmp_path) as n:
        configure(n, {"daemon": {"cmd": fake_daemon_cmd("--record", str(record))}})
        n.exec_lua("require('lofi.client').start()")
        pid = wait_for(n, "return require('lofi.client').is_ready() and require('lofi.client').pid()")
        n.command("doautocmd VimLeavePre")
        wait_for(n, "return not require('lofi.client').is_running()")
    assert [m["method"] for m in received(record)][-1] == "shutdown"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_toggle_generates_when_cache_is_empty_then_pauses(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.command("Lofi")
    wait_for(nvim, "return require('lofi').is_playing()")
    nvim.command("Lofi")
    wait_for(nvim, "return require('lofi.state').current.playback.state == 'paused'")
    assert nvim.exec_lua("return require('lofi').statusline()").startswith("⏸ 0:00/0:30")
    methods = [m["method"] for m in received(record)]
    assert methods == ["initialize", "status", "cache_list", "generate", "toggle"]


def test_volume_and_seek_arguments(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.command("Lofi volume 50")
    wait_for(nvim, "return require('lofi.state').current.playback.volume == 0.5")
    nvim.command("Lofi volume +20")
    wait_for(nvim, "return math.abs((require('lofi.state').current.playback.volume or 0) - 0.7) < 1e-9")
    nvim.command("Lofi volume -100")
    wait_for(nvim, "return require('lofi.state').current.playback.volume == 0")
    nvim.command("Lofi seek 1:30")
    wait_for(
        nvim, "return #vim.tbl_filter(function(e) return e.data.event == 'seek' end, _G.lofi_events) > 0"
    )
    sent = [(m["method"], m.get("params")) for m in received(record) if m["method"] in ("volume", "seek")]
    assert sent == [
        ("volume", {"level": 0.5}),
        ("volume", {"level": 0.7}),
        ("volume", {"level": 0}),
        ("seek", {"position_sec": 90}),
    ]
    nvim.command("Lofi volume loud")
    assert "volume: expected 0-100, +N or -N, got `loud`" in poll(lambda: notes(nvim, ERROR))[0]


def test_tracks_picker_through_vim_ui_select(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.command("Lofi generate first")
    wait_for(nvim, "return require('lofi').is_playing()")
    # Stub vim.ui.select: pick the first track, then the action named by _G.want.
    nvim.exec_lua(
        "_G.menus = {} vim.ui.select = function(items, opts, cb) "
        "table.insert(_G.menus, {prompt = opts.prompt, items = vim.tbl_map(opts.format_item, items)}) "
        "if opts.kind == 'lofi_track' then cb(items[1]) return end "
        "for _, it in ipairs(items) do if it.action == _G.want then return cb(it) end end end "
        "_G.asked = {} vim.fn.confirm = function(q) table.insert(_G.asked, q) return 1 end"
    )
    for action in ("yank", "playlist_add", "play", "delete"):
        nvim.exec_lua("_G.want = ...", action)
        nvim.command("Lofi tracks")
        wait_for(nvim, "return #_G.menus >= 2")
        menus = nvim.exec_lua("local m = _G.menus _G.menus = {} return m")
        assert menus[0]["prompt"] == "lofi tracks" and "first" in menus[0]["items"][0]
        assert menus[1]["items"] == [
            "Play",
            "Add to playlist",
            "Delete from cache",
            "Yank track id",
            "Regenerate (new seed, same settings)",
            "Toggle favourite",
            "Variation (ACE-Step tracks, :Lofi vary)",
        ]
    track_id = "0000000000000001"
    wait_for(
        nvim,
        "for _, n in ipairs(_G.notify_double.notes) do if n.msg:find('deleted') then return true end end",
    )
    # Deleting asked first (and only deleting did).
    assert nvim.exec_lua("return _G.asked") == ["Delete “first” (0000000000000001) from the cache?"]
    assert nvim.funcs.getreg('"') == track_id
    sent = [(m["method"], m.get("params")) for m in received(record)]
    assert ("playlist_add", {"track_id": track_id}) in sent
    assert ("play", {"track_id": track_id}) in sent
    assert ("cache_delete", {"track_id": track_id}) in sent


def test_prompts_picker_regenerates_with_same_seed(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.command("Lofi generate mellow keys seed=99")
    wait_for(nvim, "return require('lofi').is_playing()")
    nvim.exec_lua(
        "vim.ui.select = function(items, opts, cb) _G.shown = vim.tbl_map(opts.format_item, items) "
        "if opts.kind == 'lofi_prompt' then cb(items[1]) return end "
        "for _, it in ipairs(items) do if it.action == 'regenerate' then return cb(it) end end end"
    )
    nvim.command("Lofi prompts")
    wait_for(
        nvim,
        "return #vim.tbl_filter(function(e) return e.name == 'LofiGenerationStarted' end, _G.lofi_events) == 2",
    )
    gens = [m["params"] for m in received(record) if m["method"] == "generate"]
    assert gens[1]["prompt"] == "mellow keys" and gens[1]["seed"] == 99 and gens[1]["guidance_scale"] == 3


def test_log_opens_the_daemon_log(nvim, tmp_path):
    log = tmp_path / "daemon.log"
    log.write_text("line one\nline two\n")
    use_fake(nvim, tmp_path)
    nvim.exec_lua("require('lofi.client').start()")
    wait_for(nvim, "return require('lofi.client').is_ready()")
    nvim.command("Lofi log")
    assert nvim.current.buffer.name == str(log)
    assert nvim.current.buffer[:] == ["line one", "line two"]


def health_text(nvim):
    nvim.command("checkhealth lofi")
    return "\n".join(nvim.current.buffer[:])


def test_checkhealth_with_daemon_report(nvim, tmp_path):
    use_fake(nvim, tmp_path)
    text = health_text(nvim)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]

    def has(fragment):
        assert any(fragment in ln for ln in lines), f"{fragment!r} not in:\n{text}"

    has("lofi: Neovim")
    has("OK Neovim 0.")
    has("OK configuration is valid")
    has("OK daemon command: ")
    has("no daemon is running for this Neovim")
    has("OK daemon 0.0.1 starts and answers")
    has("Python 3.11.7")
    has("packages: numpy 2.0, onnxruntime 1.23.0")
    has("OK onnxruntime providers: CPUExecutionProvider")
    has("OK musicgen installed (variant small_i8) in /models/mg")
    has("musicgen decoder on this CPU: int8 MatMulNBits (8-bit, accuracy 4), float32 KV cache")
    # The default backend is installed; the other one is optional: a fact, not a warning.
    has("ace_step not installed (optional; :Lofi download ace_step adds it)")
    assert not any("WARNING ace_step" in ln for ln in lines)
    has("WARNING no audio output: no output device")
    has("OK lyric languages: English")
    has("lyrics in Japanese, Korean need the lyrics extra (cutlet, fugashi, hangul-romanize): cd ")
    has("./scripts/setup --lyrics")
    has("cache: /tmp/fake-cache (3 tracks, 12.5 MB)")
    has("daemon log: /tmp/fake-lofi.log")
    has("telescope.nvim not found")
    assert "ERROR" not in text
    # checkhealth never started the long-running daemon.
    assert nvim.exec_lua("return require('lofi.client').is_running()") is False


def test_checkhealth_reports_damaged_model_files_and_a_refused_cache(nvim, tmp_path):
    use_fake(nvim, tmp_path, "--damaged")
    text = health_text(nvim)
    assert "ERROR musicgen model files are damaged: small_i8/decoder_model_merged.onnx: truncated" in text
    assert "lofi-daemon download musicgen --repair" in text
    assert "ERROR the track cache cannot be used: cache index /c/x is a symlink" in text
    assert "OK musicgen installed" not in text


def test_checkhealth_reports_config_errors_and_a_broken_daemon(nvim, tmp_path):
    configure(nvim, {"daemon": {"cmd": ["sh", "-c", "echo boom >&2; exit 7"]}, "ui": {"progress": "fidget"}})
    text = health_text(nvim)
    assert (
        "ERROR lofi: invalid config: ui.progress: expected one of notify, cmdline, none, got fidget" in text
    )
    assert (
        "WARNING `health --json` failed: `sh -c echo boom >&2; exit 7 health --json` failed (exit 7):" in text
    )
    assert "ERROR the daemon does not start:" in text and "boom" in text


def test_progress_replaces_one_notification_in_place(nvim, tmp_path):
    # An nvim-notify-like notifier: returns a record and honours `replace`.
    use_fake(nvim, tmp_path, "--gen-steps", "8", ui={"progress_interval_ms": 0})
    nvim.exec_lua(
        "_G.calls = {} local n = 0 vim.notify = function(msg, level, opts) n = n + 1 "
        "table.insert(_G.calls, {msg = msg, replace = opts and opts.replace and opts.replace.id, id = n, "
        "timeout = opts and opts.timeout}) return {id = n} end"
    )
    nvim.command("Lofi generate in place")
    wait_for(nvim, "for _, c in ipairs(_G.calls) do if c.msg:find('track ready') then return true end end")
    calls = nvim.exec_lua("return _G.calls")
    progress = [c for c in calls if "generating" in c["msg"] or "track ready" in c["msg"]]
    assert len(progress) == 10  # started, 8 progress updates, ready
    # Each one replaces the previous one: a single notification on screen that updates.
    for prev, cur in zip(progress, progress[1:], strict=False):
        assert cur.get("replace") == prev["id"]
    assert progress[-1]["timeout"] == 3000 and progress[0].get("timeout") is False


def test_cmdline_progress_stays_out_of_message_history(nvim, tmp_path):
    use_fake(nvim, tmp_path, ui={"progress": "cmdline", "progress_interval_ms": 0})
    nvim.command("Lofi generate quiet one")
    wait_for(nvim, "return require('lofi').is_playing()")
    nvim.exec_lua("vim.wait(100)")
    assert "generating" not in nvim.exec_lua("return vim.api.nvim_exec2('messages', {output = true}).output")
    # Nothing went through vim.notify for progress either.
    assert not any("generating" in n for n in notes(nvim))


def test_throttling_limits_progress_updates(nvim, tmp_path):
    use_fake(nvim, tmp_path, "--gen-steps", "20", ui={"progress_interval_ms": 60000})
    nvim.command("Lofi generate throttled")
    wait_for(nvim, "return require('lofi').is_playing()")
    texts = [n for n in notes(nvim) if "generating" in n or "track ready" in n]
    # The first update and the final one; the 20 progress steps in between were throttled away.
    assert texts == ["lofi: generating “throttled”…", texts[-1]] and "track ready" in texts[-1]
    # Every progress step still fired its event.
    assert len(events(nvim, "LofiGenerationProgress")) == 20


def test_prefetch_generations_are_quiet_but_visible_in_the_statusline(nvim, tmp_path):
    use_fake(nvim, tmp_path, "--gen-steps", "40", ui={"progress_interval_ms": 0})
    # The real daemon queues prefetch jobs itself; the fake echoes the priority it is given.
    nvim.exec_lua(
        "require('lofi.client').request('generate', {prompt = 'background', priority = 'prefetch'}, function() end)"
    )
    wait_for(nvim, "return require('lofi').statusline():find('◌ %d') ~= nil")  # answered (◌ … before)
    wait_for(nvim, "return require('lofi').is_playing()")
    assert len(events(nvim, "LofiGenerationProgress")) == 40
    assert [n for n in notes(nvim) if "generating" in n or "track ready" in n] == []


def test_plug_mapping_runs_its_function(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.exec_lua("vim.keymap.set('n', '<F5>', '<Plug>(lofi-status)')")
    nvim.exec_lua("require('lofi').daemon_start()")  # status reports on a running daemon; it never starts one
    wait_for(nvim, "return require('lofi.client').is_ready()")
    nvim.input("<F5>")
    status = poll(lambda: [n for n in notes(nvim) if n.startswith("lofi: status\n")])[0]
    assert "daemon 0.0.1 (pid " in status and "log: /" in status
    assert [m["method"] for m in received(record)] == ["initialize", "status"]


def test_daemon_warnings_are_shown_once_not_repeated(nvim, tmp_path):
    use_fake(nvim, tmp_path)
    lua = "require('lofi.client').request('say', {message = ..., level = 'warning'}, function() end)"
    for _ in range(3):
        nvim.exec_lua(lua, "the next track is not ready yet; repeating the current one")
    nvim.exec_lua(lua.replace("'warning'", "'info'"), "info is not shown")
    nvim.exec_lua(lua, "another warning")
    warns = poll(lambda: len(notes(nvim, 3)) >= 2 and notes(nvim, 3))
    nvim.exec_lua("vim.wait(200)")
    assert (
        notes(nvim, 3)
        == warns
        == [
            "lofi: the next track is not ready yet; repeating the current one",
            "lofi: another warning",
        ]
    )
    assert not any("info is not shown" in n for n in notes(nvim))


def test_generate_mapping_asks_for_a_prompt(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.exec_lua(
        "vim.ui.input = function(opts, cb) _G.asked = opts cb('night drive synth duration=12') end "
        "vim.keymap.set('n', '<F6>', '<Plug>(lofi-generate)')"
    )
    nvim.input("<F6>")
    wait_for(nvim, "return require('lofi').is_playing()")
    assert nvim.exec_lua("return _G.asked.default") == "lofi hip hop, chill, mellow piano, vinyl crackle"
    gen = [m["params"] for m in received(record) if m["method"] == "generate"][0]
    assert gen["prompt"] == "night drive synth" and gen["duration_sec"] == 12


def test_status_opens_a_float_with_the_builtin_notifier(tmp_path):
    # Without a notifier plugin a multi-line echo would stop at a hit-enter prompt: lofi uses a float instead.
    with embedded_nvim(tmp_path) as nvim:
        use_fake(nvim, tmp_path)
        nvim.command("Lofi daemon start")
        wait_for(nvim, "return require('lofi.client').is_ready()")
        nvim.command("Lofi status")
        wait_for(nvim, "return vim.bo.filetype == 'lofi'")
        lines = nvim.current.buffer[:]
        assert lines[0].startswith("daemon 0.0.1 (pid ") and lines[1] == "playback: stopped"
        cfg = nvim.exec_lua("return vim.api.nvim_win_get_config(0)")
        assert cfg["relative"] == "editor"
        nvim.input("q")
        wait_for(nvim, "return vim.bo.filetype ~= 'lofi'")
        assert nvim.exec_lua("return #vim.api.nvim_list_wins()") == 1
