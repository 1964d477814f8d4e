""":Lofi commands and messages in a real headless Neovim (issue 9 items 8-13): one argument parser, one-line human
messages that never wait for Enter (checked with an attached 80x24 UI), confirmations, favourites, lost jobs after a
crash, no daemon for no-ops, config checks, vimdoc conventions. The daemon is tests/fake_lofi_daemon.py."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from tests.daemon_client import CEILING
from tests.nvim_helpers import (
    ROOT,
    configure,
    embedded_nvim,
    events,
    fake_daemon_cmd,
    install_recorder,
    notes,
    poll,
    wait_for,
)

ERROR, WARN, INFO = 4, 3, 2


@pytest.fixture
def nvim(tmp_path):
    with embedded_nvim(tmp_path) as n:
        install_recorder(n)
        yield n


def use_fake(nvim, tmp_path, *args, **cfg):
    record = tmp_path / "received.jsonl"
    daemon = {"cmd": fake_daemon_cmd("--record", str(record), *args), **cfg.pop("daemon", {})}
    configure(nvim, {"daemon": daemon, "ui": {"progress_interval_ms": 0}, **cfg})
    return record


def received(record, method=None):
    if not record.exists():
        return []
    msgs = [json.loads(line) for line in record.read_text().splitlines()]
    return [m for m in msgs if method is None or m["method"] == method]


def note_pairs(nvim):
    return [
        tuple(x)
        for x in nvim.exec_lua(
            "local d = _G.notify_double local out = {} "
            "for _, n in ipairs(d.notes) do out[#out + 1] = {d.shown(n), n.level} end return out"
        )
    ]


def flush(nvim):
    """Let scheduled callbacks (notifications are scheduled) run."""
    nvim.exec_lua("vim.wait(50)")


# --- item 10: one argument parser -------------------------------------------------------------------------------


def parse(nvim, words):
    return nvim.exec_lua("return {require('lofi.args').parse_generate(...)}", words)


def test_generate_accepts_key_value_and_cli_flags_alike(nvim):
    want = {"prompt": "rainy night", "duration_sec": 20, "seed": 3}
    assert parse(nvim, ["rainy", "duration=20", "night", "seed=3"]) == [want]
    assert parse(nvim, ["rainy", "--duration", "20", "night", "--seed=3"]) == [want]
    assert parse(nvim, "rainy night --duration 0:20 --seed 3") == [want]
    assert parse(nvim, ["x", "--steps", "30", "--guidance=4.5", "--allow-download"]) == [
        {"prompt": "x", "inference_steps": 30, "guidance_scale": 4.5, "allow_download": True}
    ]
    # every true/false option is a bare switch too, and takes a value
    assert parse(nvim, ["x", "--loop", "negative=vocals", "bpm=84"]) == [
        {"prompt": "x", "loop": True, "negative_prompt": "vocals", "bpm": 84}
    ]
    assert parse(nvim, ["x", "loop=false", "--allow-download", "no"]) == [
        {"prompt": "x", "loop": False, "allow_download": False}
    ]


def test_generate_names_what_it_cannot_parse(nvim):
    assert parse(nvim, ["--duration", "abc"]) == [
        None,
        "generate: `duration` expects seconds (30, 30s or 1:30), got `abc`",
    ]
    assert (
        parse(nvim, ["x", "--duration"])[1]
        == "generate: `--duration` needs a value (seconds (30, 30s or 1:30))"
    )
    assert (
        parse(nvim, ["x", "durration=5"])[1]
        == "generate: unknown option `durration` (did you mean `duration`?)"
    )
    assert parse(nvim, ["x", "--colour", "red"])[1].startswith("generate: unknown option `colour`")
    assert parse(nvim, ["x", "seed=-1"])[1] == "generate: `seed` expects a whole number ≥ 0, got `-1`"
    assert (
        parse(nvim, ["x", "priority=urgent"])[1]
        == "generate: `priority` expects one of high, normal, got `urgent`"
    )


def test_bad_generate_argument_is_an_error_and_nothing_is_sent(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.command("Lofi generate --duration abc")
    assert poll(lambda: notes(nvim, ERROR)) == [
        "lofi: generate: `duration` expects seconds (30, 30s or 1:30), got `abc`"
    ]
    # Not even a daemon was started for it, let alone a 30 s track titled "--duration abc".
    assert nvim.exec_lua("return require('lofi.client').is_running()") is False
    assert received(record) == []


def test_every_entry_point_uses_the_same_parser(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    # <Plug>(lofi-generate), the prompts picker's edit action, a Lua string, a Lua table with the short names.
    nvim.exec_lua("vim.ui.input = function(_, cb) cb('a --duration 6 seed=1') end")
    nvim.exec_lua("require('lofi').generate_input()")
    nvim.exec_lua("vim.ui.input = function(_, cb) cb('b duration=7 --seed 2') end")
    nvim.exec_lua("require('lofi.picker').prompt_actions.edit({prompt = 'b'})")
    nvim.exec_lua("require('lofi').generate('c --duration=8 --seed=3')")
    nvim.exec_lua("require('lofi').generate({prompt = 'd', duration = 9, seed = 4})")
    poll(lambda: len(received(record, "generate")) == 4)
    got = sorted(
        (m["params"]["prompt"], m["params"]["duration_sec"], m["params"]["seed"])
        for m in received(record, "generate")
    )
    assert got == [("a", 6, 1), ("b", 7, 2), ("c", 8, 3), ("d", 9, 4)]
    # A bad table from Lua reaches the callback as an error, before anything is sent.
    err = nvim.exec_lua(
        "_G.e = nil require('lofi').generate({prompt = 'e', duration_sec = 'long'}, function(e) _G.e = e end) "
        "vim.wait(60000, function() return _G.e end) return _G.e"
    )
    assert (
        err["code"] == -32602
        and err["message"] == "generate: `duration_sec` expects seconds (30, 30s or 1:30), got `long`"
    )
    assert len(received(record, "generate")) == 4


def test_volume_out_of_range_and_bad_seek_are_errors_not_clamps(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.command("Lofi volume 150")
    nvim.command("Lofi seek 9:99")
    errs = poll(lambda: len(notes(nvim, ERROR)) >= 2 and notes(nvim, ERROR))
    assert errs == [
        "lofi: volume: 150 is outside 0-100",
        "lofi: seek: expected seconds, M:SS, +N or -N, got `9:99`",
    ]
    assert received(record, "volume") == [] and received(record, "seek") == []
    # Relative steps stop at the ends, and say where they stopped.
    nvim.command("Lofi volume 95")
    wait_for(nvim, "return require('lofi.state').current.playback.volume == 0.95")
    nvim.command("Lofi volume +10")
    poll(lambda: len(received(record, "volume")) == 2)
    assert [m["params"]["level"] for m in received(record, "volume")] == [0.95, 1]
    assert poll(lambda: "lofi: volume 100%" in notes(nvim))


# --- item 9: messages ---------------------------------------------------------------------------------------------


def test_daemon_errors_read_as_human_text(nvim):
    text = nvim.exec_lua(
        "local m = require('lofi.messages') return {"
        "m.error_text({message = 'track abc not found', data = {error_code = 'TRACK_NOT_FOUND'}}),"
        "m.error_text({message = 'invalid params for generate: duration_sec: Input should be a valid number,"
        " unable to parse string as a number', data = {error_code = 'INVALID_PARAMS', details = {"
        "{field = 'duration_sec', problem = 'Input should be a valid number, unable to parse string as a number'},"
        "{field = 'colour', problem = 'Extra inputs are not permitted'}}}}),"
        "m.error_text({message = 'x', data = {error_code = 'INVALID_PARAMS', details = {"
        "{field = 'seed', problem = 'Input should be greater than or equal to 0'}}}}),"
        "m.error_text({message = 'the daemon exited:\\nTraceback\\n  boom'}),"
        "}"
    )
    assert text == [
        "track abc not found",
        "invalid option: `duration` expects a number; `colour` is not a known option",
        "invalid option: `seed` must be at least 0",
        "the daemon exited:; Traceback; boom",
    ]
    assert not any("TRACK_NOT_FOUND" in t or "Input should" in t for t in text)


def test_benign_playback_states_are_info_not_errors(nvim):
    levels = nvim.exec_lua(
        "local m = require('lofi.messages') local e = {message = 'nothing is playing',"
        " data = {error_code = 'TRACK_NOT_FOUND'}} return {m.error_level(e, 'skip'), m.error_level(e, 'seek'),"
        " m.error_level(e, 'play', {}), m.error_level(e, 'play', {track_id = 'abc'}), m.error_level(e, 'generate')}"
    )
    assert levels == [INFO, INFO, INFO, ERROR, ERROR]


def attach_ui(nvim):
    """A real UI of the size most terminals have: messages must fit it without a hit-enter prompt."""
    nvim.ui_attach(80, 24, rgb=True, ext_linegrid=True)
    nvim.command("set cmdheight=1 columns=80 lines=24")


def assert_never_blocked(nvim, settle_sec=0.5):
    """Let scheduled messages show, then check Neovim is not at a hit-enter (or any other) prompt.

    Only nvim_get_mode here: it is answered even at a prompt, where any other request would wait for Enter."""
    time.sleep(settle_sec)
    mode = nvim.api.get_mode()
    if mode["blocking"]:
        nvim.input("<CR>")  # leave the prompt so the test can go on to report
    assert mode["blocking"] is False and mode["mode"] == "n", mode


def test_no_message_waits_for_enter_in_an_80x24_editor(tmp_path):
    # Neovim's own vim.notify (no recorder): what a user without a notifier plugin sees.
    with embedded_nvim(tmp_path) as nvim:
        configure(nvim, {"daemon": {"cmd": fake_daemon_cmd()}})
        attach_ui(nvim)
        for cmd in (
            "Lofi generte rainy",  # unknown subcommand
            "Lofi generate --duration abc",
            "Lofi volume 150",
            "Lofi seek 9:99",
            "Lofi stop",  # benign, no daemon
            "Lofi cache frobnicate",
        ):
            nvim.input(f":{cmd}<CR>")
            assert_never_blocked(nvim)
        # Two errors in one go (a second message right after an error used to ask for Enter).
        nvim.exec_lua("require('lofi').volume(150) require('lofi').seek('9:99')")
        assert_never_blocked(nvim)
        messages = nvim.exec_lua("return vim.api.nvim_exec2('messages', {output = true}).output")
        assert "did you mean `generate`?" in messages and "`duration` expects seconds" in messages
        assert "150 is outside 0-100" in messages and "got `9:99`" in messages
        # A long daemon error is cut to the command line; a missing daemon is said once ("lofi: lofi:" was seen).
        nvim.exec_lua("vim.g.lofi = {daemon = {cmd = {'/nonexistent/lofi-daemon-' .. string.rep('x', 120)}}}")
        nvim.exec_lua("package.loaded['lofi.config'] = nil")
        nvim.input(":Lofi models<CR>")
        assert_never_blocked(nvim, 1.0)
        messages = nvim.exec_lua("return vim.api.nvim_exec2('messages', {output = true}).output")
        assert "lofi: lofi:" not in messages


def test_config_errors_do_not_wait_for_enter(tmp_path):
    with embedded_nvim(tmp_path) as nvim:
        attach_ui(nvim)
        configure(
            nvim, {"playback": {"volme": 1, "volume": "loud"}, "ui": 3, "daemon": {"cmd": fake_daemon_cmd()}}
        )
        nvim.input(":lua require('lofi.config').get()<CR>")
        assert_never_blocked(nvim)


def test_a_progress_echo_does_not_hide_an_error(tmp_path):
    # With the built-in notifier progress is echoed; an error shown meanwhile must stay on the command line.
    with embedded_nvim(tmp_path) as nvim:
        configure(
            nvim, {"daemon": {"cmd": fake_daemon_cmd("--gen-steps", "60")}, "ui": {"progress_interval_ms": 0}}
        )
        attach_ui(nvim)
        nvim.input(":Lofi generate long one<CR>")
        wait_for(nvim, "return require('lofi').statusline():find('◌ %d') ~= nil")  # answered (◌ … before)
        # Count what is echoed over the command line from now on.
        nvim.exec_lua(
            "_G.echoed = {} local echo = vim.api.nvim_echo vim.api.nvim_echo = function(chunks, ...) "
            "table.insert(_G.echoed, chunks[1][1]) return echo(chunks, ...) end"
        )
        nvim.input(":Lofi generate --duration abc<CR>")
        wait_for(nvim, "return #_G.echoed > 0")
        nvim.exec_lua("vim.wait(600)")  # several progress updates arrive meanwhile (one per 50 ms)
        echoed = nvim.exec_lua("return _G.echoed")
        assert "`duration` expects seconds" in echoed[0]
        # Nothing replaced it: progress waits until the error has been seen.
        assert [e for e in echoed if "generating" in e] == []
        assert_never_blocked(nvim)


# --- item 11: cold start -------------------------------------------------------------------------------------------


def test_noop_commands_on_a_fresh_editor_start_no_daemon(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    for cmd in ("stop", "pause", "skip", "seek 10", "cancel", "queue", "status"):
        nvim.command(f"Lofi {cmd}")
    poll(lambda: len(notes(nvim)) == 7)
    assert nvim.exec_lua("return require('lofi.client').is_running()") is False
    assert nvim.exec_lua("return #vim.api.nvim_get_proc_children(vim.fn.getpid())") == 0
    assert received(record) == []
    # They say so, as information.
    got = note_pairs(nvim)
    assert ("lofi: nothing is playing", INFO) in got and ("lofi: nothing to cancel", INFO) in got
    assert all(level == INFO for _, level in got)


def test_a_slow_start_says_starting_once(nvim, tmp_path):
    use_fake(nvim, tmp_path, "--slow-init-once", str(tmp_path / "slow"))
    nvim.exec_lua("require('lofi.client').SLOW_START_MS = 100")
    nvim.command("Lofi generate first")
    assert poll(lambda: "lofi: starting lofi…" in notes(nvim))
    nvim.exec_lua("vim.wait(500)")
    assert notes(nvim).count("lofi: starting lofi…") == 1


def test_download_names_its_size_and_asks_first(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.exec_lua(
        "_G.asked = {} vim.ui.select = function(items, opts, cb) "
        "table.insert(_G.asked, {prompt = opts.prompt, items = items}) cb(_G.answer) end"
    )
    nvim.exec_lua("_G.answer = nil")  # the user cancels
    nvim.command("Lofi download ace_step")
    asked = wait_for(nvim, "return _G.asked[1]")
    assert "ACE-Step" in asked["prompt"] and "12.3 GB" in asked["prompt"]
    assert asked["items"] == ["Download 12.3 GB", "Cancel"]
    flush(nvim)
    assert received(record, "download_backend") == []
    nvim.exec_lua("_G.answer = 'Download 12.3 GB'")
    nvim.command("Lofi download ace_step")
    poll(lambda: received(record, "download_backend"))
    # With the bang there is no question.
    nvim.exec_lua("_G.asked = {}")
    nvim.command("Lofi! download ace_step")
    poll(lambda: len(received(record, "download_backend")) == 2)
    assert nvim.exec_lua("return #_G.asked") == 0


# --- item 12: destructive actions and favourites --------------------------------------------------------------------


def make_track(nvim, prompt):
    nvim.exec_lua("_G.r = nil require('lofi').generate(..., function(e, r) _G.r = r end)", prompt)
    tid = wait_for(nvim, "return _G.r and _G.r.track_id")
    wait_for(nvim, "return require('lofi.state').current.tracks[...] ~= nil", 20.0, tid)
    return tid


def test_cache_clear_asks_unless_bang(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    make_track(nvim, "one")
    nvim.exec_lua(
        "_G.asked = 0 vim.ui.select = function(items, opts, cb) _G.asked = _G.asked + 1 cb(nil) end"
    )
    nvim.command("Lofi cache clear")
    flush(nvim)
    assert nvim.exec_lua("return _G.asked") == 1 and received(record, "cache_clear") == []
    nvim.command("Lofi! cache clear")
    poll(lambda: received(record, "cache_clear"))
    assert nvim.exec_lua("return _G.asked") == 1
    assert poll(lambda: "lofi: removed 1 tracks from the cache (favourites kept)" in notes(nvim))


def test_favourite_toggles_the_current_track_and_a_given_one(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    tid = make_track(nvim, "keeper")
    wait_for(nvim, "return require('lofi').is_playing()")
    nvim.command("Lofi favourite")  # the playing track
    poll(lambda: received(record, "cache_favourite"))
    nvim.command(f"Lofi favourite {tid}")  # toggles back
    poll(lambda: len(received(record, "cache_favourite")) == 2)
    assert [m["params"] for m in received(record, "cache_favourite")] == [
        {"track_id": tid, "favourite": True},
        {"track_id": tid, "favourite": False},
    ]
    assert poll(
        lambda: (
            len([n for n in notes(nvim) if "favourite" in n]) == 2
            and [n for n in notes(nvim) if "favourite" in n]
        )
    ) == [
        "lofi: ★ favourite: “keeper”",
        "lofi: no longer a favourite: “keeper”",
    ]
    # The picker action and the Lua API.
    nvim.exec_lua(
        "require('lofi.picker').track_actions.favourite(require('lofi.state').current.tracks[...])", tid
    )
    poll(lambda: len(received(record, "cache_favourite")) == 3)
    assert received(record, "cache_favourite")[2]["params"]["favourite"] is True
    # the daemon's reply updates the track list: wait for it (the request arriving is not the reply arriving)
    wait_for(nvim, "return require('lofi.state').current.tracks[...].favourite == true", CEILING, tid)


# --- item 8: lost work on crash -------------------------------------------------------------------------------------


def test_a_crash_names_the_lost_jobs_and_resubmit_queues_them_again(nvim, tmp_path):
    record = use_fake(nvim, tmp_path, "--gen-steps", "4000")
    nvim.command("Lofi generate slow rain seed=11 duration=12")
    wait_for(nvim, "return require('lofi').statusline():find('◌ %d') ~= nil")  # answered (◌ … before)
    pid = nvim.exec_lua("return require('lofi.client').pid()")
    os.kill(pid, signal.SIGKILL)
    warn = poll(lambda: [n for n in notes(nvim, WARN) if "died" in n])[0]
    assert warn == (
        "lofi: the daemon died (signal 9); restarting (attempt 1 of 3); "
        "1 generation lost with the daemon: “slow rain”; :Lofi resubmit queues it again"
    )
    wait_for(
        nvim, "return require('lofi.client').is_ready() and require('lofi.client').pid() ~= ...", 20.0, pid
    )
    nvim.command("Lofi resubmit")
    poll(lambda: len(received(record, "generate")) == 2)
    first, again = (m["params"] for m in received(record, "generate"))
    assert again == first  # same prompt, seed and duration: the same track
    assert notes(nvim, ERROR) == []


def test_always_resubmits_after_the_restart_even_when_killed_during_the_handshake(tmp_path):
    with embedded_nvim(tmp_path) as nvim:
        install_recorder(nvim)
        record = use_fake(
            nvim,
            tmp_path,
            "--slow-init-once",
            str(tmp_path / "slow"),
            daemon={"resubmit_lost_jobs": "always"},
        )
        nvim.command("Lofi generate handshake victim seed=5")
        pid = wait_for(nvim, "return require('lofi.client').pid()")
        poll(lambda: (tmp_path / "slow").exists())  # the daemon is inside `initialize`
        os.kill(pid, signal.SIGKILL)
        # The restart needs nobody: the lost request is queued again on the new daemon by itself.
        gen = poll(lambda: received(record, "generate"))[0]["params"]
        assert gen["prompt"] == "handshake victim" and gen["seed"] == 5
        assert not any("refused" in n for n in notes(nvim))
        assert [n for n in notes(nvim, WARN)] == [
            "lofi: the daemon died (signal 9); restarting (attempt 1 of 3); "
            "1 generation lost with the daemon: “handshake victim”; queued again after the restart"
        ]
        assert [e["name"] for e in events(nvim) if e["name"].startswith("LofiDaemon")] == [
            "LofiDaemonExit",
            "LofiDaemonStarted",
        ]


def test_restart_after_a_handshake_kill_does_not_wait_for_enter(tmp_path):
    with embedded_nvim(tmp_path) as nvim:
        use_fake(nvim, tmp_path, "--slow-init-once", str(tmp_path / "slow"))
        attach_ui(nvim)
        nvim.input(":Lofi generate rainy<CR>")
        pid = wait_for(nvim, "return require('lofi.client').pid()")
        poll(lambda: (tmp_path / "slow").exists())
        os.kill(pid, signal.SIGKILL)
        wait_for(nvim, "return require('lofi.client').is_ready()")
        assert_never_blocked(nvim)


# --- item 13: conventions -------------------------------------------------------------------------------------------


def validate(nvim, cfg):
    return nvim.exec_lua(
        "return {require('lofi.config').validate(vim.tbl_deep_extend('force', "
        "require('lofi.config').defaults, ...))}",
        cfg,
    )


def test_nested_typos_are_reported_at_every_level(nvim):
    ok, errors = validate(nvim, {"playback": {"volme": 0.5}, "ui": {"icons": {"playin": "x"}}, "bogus": 1})
    assert ok is False
    assert sorted(errors) == [
        "lofi: invalid config: unknown option `bogus`",
        "lofi: invalid config: unknown option `playback.volme`",
        "lofi: invalid config: unknown option `ui.icons.playin`",
    ]
    # Free-form tables stay free: environment variables, extra backends.
    assert validate(nvim, {"daemon": {"env": {"ANY_NAME": "1"}}, "models": {"tone": {"dir": "/x"}}}) == [
        True,
        [],
    ]
    assert validate(nvim, {"models": {"tone": {"dri": "/x"}}})[1] == [
        "lofi: invalid config: unknown option `models.tone.dri`"
    ]


def test_one_wrong_type_is_one_error(nvim):
    ok, errors = validate(nvim, {"playback": "loud"})
    assert ok is False and len(errors) == 1 and "playback" in errors[0], errors
    # And get() reports it in one notification, then works with the defaults.
    configure(nvim, {"playback": "loud", "ui": 3})
    assert nvim.exec_lua("return require('lofi.config').get().playback.volume") == 0.3
    flush(nvim)
    got = notes(nvim)
    assert len(got) == 1 and got[0].endswith("(and 1 more: :checkhealth lofi)")


def test_config_validation_uses_the_non_deprecated_vim_validate(nvim):
    nvim.exec_lua("_G.dep = {} vim.deprecate = function(name) table.insert(_G.dep, name) end")
    validate(nvim, {"playback": {"volume": 5}, "ui": "x"})
    # The table form vim.validate{...} is deprecated since 0.11; lofi calls vim.validate(name, value, ...).
    assert nvim.exec_lua("return _G.dep") == []


def test_help_lofi_lands_on_the_top_of_the_file(nvim, tmp_path):
    doc = tmp_path / "rtp" / "doc"
    doc.mkdir(parents=True)
    (doc / "lofi.txt").write_text((ROOT / "doc" / "lofi.txt").read_text())
    nvim.command(f"helptags {doc}")
    nvim.command(f"set rtp^={doc.parent}")
    for tag in ("lofi", "lofi.nvim"):
        nvim.command(f"help {tag}")
        assert nvim.exec_lua("return vim.fn.expand('%:t')") == "lofi.txt"
        assert nvim.exec_lua("return vim.fn.line('.')") == 1, tag
        nvim.command("helpclose")


def test_readme_does_not_run_helptags_all():
    readme = (ROOT / "README.md").read_text()
    assert (
        ":helptags ALL`." not in readme
        and "`:helptags ALL` once" not in (ROOT / "doc" / "lofi.txt").read_text()
    )
    assert ":helptags ~/.local/share/nvim/site/pack/lofi/start/lofi/doc" in readme


def test_one_user_event_per_playback_action(nvim):
    # Replies of actions the daemon announces with a playback_* notification fire nothing themselves.
    nvim.exec_lua(
        "local client = require('lofi.client') client.is_running = function() return true end "
        "client.request = function(method, params, cb) vim.schedule(function() "
        "cb(nil, {state = method == 'pause' and 'paused' or 'playing', track_id = 't', position_sec = 1,"
        " duration_sec = 30}) end) end"
    )
    nvim.exec_lua("require('lofi').pause() require('lofi').seek(5) require('lofi').volume(40)")
    flush(nvim)
    assert [e["data"]["event"] for e in events(nvim, "LofiPlaybackChanged")] == ["seek", "volume"]


def test_ended_event_is_about_the_track_that_ended(nvim):
    # What the daemon sends when a crossfade has already started track b as track a ends.
    nvim.exec_lua(
        "local n = require('lofi.notify') n.handle('playback_started', {track_id = 'b', duration_sec = 30}) "
        "n.handle('playback_ended', {track_id = 'a', reason = 'finished'})"
    )
    ended = [e["data"] for e in events(nvim, "LofiPlaybackChanged") if e["data"]["event"] == "ended"]
    assert len(ended) == 1
    assert ended[0]["state"] == "stopped" and ended[0]["track_id"] == "a" and ended[0]["next_track_id"] == "b"


# --- item 11: a fast health report ------------------------------------------------------------------------------------


def test_health_report_does_not_import_heavy_modules(tmp_path):
    # `:checkhealth lofi` waits for `lofi-daemon health --json`; scipy.signal alone took ~1 s of its ~2.5 s (load 6).
    import subprocess
    import sys

    code = (
        "import sys; from lofi_daemon.config import Settings; from lofi_daemon.health import report; "
        "report(Settings.from_env()); print(sorted(m for m in ('scipy.signal', 'torch') if m in sys.modules))"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "daemon"),
        "LOFI_CACHE_DIR": str(tmp_path / "cache"),
        "LOFI_LOG_DIR": str(tmp_path / "log"),
        "HF_HUB_OFFLINE": "1",
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_requested_restart_also_says_what_it_lost(nvim, tmp_path):
    record = use_fake(nvim, tmp_path, "--gen-steps", "4000")
    nvim.command("Lofi generate long walk seed=8")
    wait_for(nvim, "return require('lofi').statusline():find('◌ %d') ~= nil")  # answered (◌ … before)
    nvim.command("Lofi daemon restart")
    assert poll(lambda: [n for n in notes(nvim) if "lost" in n]) == [
        "lofi: 1 generation lost with the daemon: “long walk”; :Lofi resubmit queues it again"
    ]
    wait_for(nvim, "return require('lofi.client').is_ready()")
    nvim.command("Lofi resubmit")
    poll(lambda: len(received(record, "generate")) == 2)
    assert received(record, "generate")[1]["params"]["seed"] == 8


# --- issue 13: :Lofi vary / repaint / extend act on the current or a given track ----------------------------------


def test_vary_repaint_extend_send_ace_step_editing_tasks(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    tid = make_track(nvim, "keeper")  # the fake daemon's tracks are 30 s
    wait_for(nvim, "return require('lofi').is_playing()")
    nvim.command("Lofi vary")  # the playing track, its prompt
    nvim.command("Lofi repaint 12-20 variance=0.3")
    nvim.command(f"Lofi extend {tid} left=5 right=0:30")
    nvim.command(f"Lofi repaint {tid} 1:00-1:10 jazzier drums")
    poll(lambda: len(received(record, "generate")) == 5)
    sent = [m["params"] for m in received(record, "generate")[1:]]
    common = {"backend": "ace_step", "source_track": tid}
    assert sent[0] == {**sent[0], **common, "task": "retake", "prompt": "keeper", "duration_sec": 30}
    assert sent[1] == {
        **sent[1],
        **common,
        "task": "repaint",
        "repaint_start": 12,
        "repaint_end": 20,
        "retake_variance": 0.3,
    }
    assert sent[2] == {
        **sent[2],
        **common,
        "task": "extend",
        "extend_left": 5,
        "extend_right": 30,
        "duration_sec": 65,
    }
    assert sent[3]["prompt"] == "jazzier drums" and sent[3]["repaint_start"] == 60
    assert "repaint_start" not in sent[0] and "extend_right" not in sent[1]
    # the track picker's action on the selected track
    nvim.exec_lua("require('lofi.picker').track_actions.vary(require('lofi.state').current.tracks[...])", tid)
    poll(lambda: len(received(record, "generate")) == 6)
    picked = received(record, "generate")[5]["params"]
    assert (
        picked["task"] == "retake" and picked["source_track"] == tid and picked["seed"] != sent[0].get("seed")
    )


def test_editing_commands_name_what_is_wrong_and_send_nothing(nvim, tmp_path):
    record = use_fake(nvim, tmp_path)
    nvim.command("Lofi vary")
    assert poll(lambda: notes(nvim, INFO) + notes(nvim, ERROR))[-1].startswith(
        "lofi: retake: nothing is playing"
    )
    nvim.command("Lofi repaint 0123456789abcdef")
    nvim.command("Lofi repaint 20-12")
    nvim.command("Lofi extend right=soon")
    poll(lambda: len(notes(nvim, ERROR)) >= 4)
    errors = notes(nvim, ERROR)[-3:]
    assert (
        errors[0]
        == errors[1]
        == ("lofi: repaint: give the range to regenerate as START-END seconds (12-20 or 1:00-1:30)")
    )
    assert errors[2] == "lofi: extend: `right` expects seconds (30, 30s or 1:30), got `soon`"
    assert received(record, "generate") == []
    parse = "return {require('lofi.args').parse_edit(...)}"
    assert nvim.exec_lua(parse, "extend", []) == [None, {"task": "extend", "extend_right": 30}]
    assert nvim.exec_lua(parse, "vary", ["ABCDEF0123456789", "seed=4"]) == [
        "abcdef0123456789",
        {"task": "retake", "seed": 4},
    ]
    completions = nvim.funcs.getcompletion("Lofi extend ", "cmdline")
    assert "left=" in completions and "right=" in completions
    assert nvim.funcs.getcompletion("Lofi extend 0123456789abcdef r", "cmdline") == ["right="]
