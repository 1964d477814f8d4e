"""`:Lofi radio` in a real headless Neovim with the real daemon (synthetic continuing backend,
tests/doubles/radio_backend.py): the command, the statusline, User events, adaptive energy that costs nothing when
off, and the one parser."""

from __future__ import annotations

from tests.daemon_client import CEILING
from tests.nvim_helpers import (
    configure,
    embedded_nvim,
    events,
    install_recorder,
    notes,
    real_daemon_cmd,
    wait_for,
)

ERROR = 4


def start(tmp_path, **env):
    """The daemon plays on PortAudio's default ALSA device writing a WAV file: the radio only generates ahead of
    what is played, so it needs a device that consumes audio."""
    from tests.playback_helpers import wav_capture_config
    from tests.portaudio import require_portaudio
    from tests.test_nvim_daemon import start as start_with_daemon

    require_portaudio()
    return start_with_daemon(
        tmp_path,
        **wav_capture_config(tmp_path / "alsa-home", tmp_path / "out.wav"),
        LOFI_BACKEND_PLUGINS="tests.doubles.radio_backend:RadioToneBackend",
        **env,
    )


def setup(nvim, **cfg):
    configure(
        nvim,
        {
            "daemon": {"cmd": real_daemon_cmd(), "request_timeout_ms": int(CEILING * 1000)},
            "ui": {"progress_interval_ms": 0},
            **cfg,
        },
    )
    install_recorder(nvim)


def test_radio_command_statusline_events_and_stop(tmp_path):
    # at twice real time the plan's 24 s intro lasts 12 s of wall time: the statusline check below cannot miss it
    with start(tmp_path, LOFI_RADIO_TONE_SPEED="2") as nvim:
        setup(nvim, radio={"plan": "focus"})
        nvim.command("Lofi radio rainy jazz backend=radio_tone seed=4")
        # the statusline shows the radio and the plan's section from the first window on
        line = wait_for(nvim, "local s = require('lofi').statusline() return s:find('intro') and s")
        assert line == "📻 intro"
        changed = [e["data"] for e in events(nvim, "LofiRadioChanged")]
        assert (
            changed[0]["on"] is True
            and changed[0]["prompt"] == "rainy jazz"
            and changed[0]["plan"] == "focus"
        )
        window = wait_for(
            nvim,
            "for _, e in ipairs(_G.lofi_events) do if e.name == 'LofiRadioWindow' then return e.data end end",
        )
        assert window["index"] == 0 and window["prompt"].startswith("rainy jazz, soft keys")
        assert (
            nvim.exec_lua("return require('lofi.energy').active()") is False
        )  # not adaptive: nothing installed
        nvim.command("Lofi radio steer high lofi")
        wait_for(
            nvim,
            "for _, e in ipairs(_G.lofi_events) do if e.name == 'LofiRadioWindow' "
            "and e.data.prompt:find('^high lofi') then return true end end",
        )
        nvim.command("Lofi radio stop")
        wait_for(nvim, "return require('lofi').statusline() == ''")
        off = [e["data"] for e in events(nvim, "LofiRadioChanged")][-1]
        assert off["on"] is False and off["reason"] == "stopped"
        assert notes(nvim, ERROR) == []


def test_adaptive_radio_follows_typing_and_costs_nothing_once_off(tmp_path):
    with start(tmp_path) as nvim:
        setup(nvim, radio={"adaptive": True, "energy_interval_ms": 600000})  # the test ticks by hand
        assert nvim.exec_lua("return #vim.api.nvim_get_autocmds({event = 'InsertCharPre'})") == 0
        nvim.command("Lofi radio lofi backend=radio_tone")
        wait_for(nvim, "return require('lofi.energy').active()")
        assert nvim.exec_lua("return #vim.api.nvim_get_autocmds({event = 'InsertCharPre'})") == 1
        nvim.input("ihello world, typing fast<Esc>")
        counts = wait_for(nvim, "local c = require('lofi.energy').counts() return c.keys > 0 and c")
        assert counts["keys"] == len("hello world, typing fast") and counts["modes"] >= 2
        energy, sent = nvim.exec_lua("return {require('lofi.energy').tick(2)}")
        assert sent is True and 0.25 < energy <= 1.0
        status = wait_for(
            nvim,
            "local c = require('lofi.client') local e, s = c.request_sync('radio_status', nil, 5000) "
            "return s and s.energy and s",
        )
        assert status["energy"] == energy and status["adaptive"] is True
        # a second quiet interval moves the energy down, smoothed (not to the resting value at once)
        energy2, _ = nvim.exec_lua("return {require('lofi.energy').tick(2)}")
        assert 0.25 < energy2 < energy
        nvim.command("Lofi radio stop")
        wait_for(nvim, "return not require('lofi.energy').active()")
        assert nvim.exec_lua("return #vim.api.nvim_get_autocmds({event = 'InsertCharPre'})") == 0
        assert nvim.exec_lua("return #vim.api.nvim_get_autocmds({event = 'ModeChanged'})") == 0


def test_radio_arguments_go_through_the_one_parser(tmp_path):
    with embedded_nvim(tmp_path) as nvim:
        parse = "return {require('lofi.args').parse_radio(...)}"
        assert nvim.exec_lua(parse, "rainy jazz plan=focus --adaptive") == [
            {"action": "start", "params": {"prompt": "rainy jazz", "plan": "focus", "adaptive": True}}
        ]
        assert nvim.exec_lua(parse, "steer  more drums") == [
            {"action": "steer", "params": {"prompt": "more drums"}}
        ]
        assert nvim.exec_lua(parse, "plan pomodoro") == [{"action": "plan", "params": {"plan": "pomodoro"}}]
        assert nvim.exec_lua(parse, "stop")[0]["action"] == "stop"  # (an empty Lua table reads as a list)
        assert nvim.exec_lua(parse, "stop now")[1] == "radio stop: takes no arguments, got `now`"
        assert nvim.exec_lua(parse, "lofi duration=30")[1].startswith("radio: unknown option `duration`")
        assert nvim.exec_lua(parse, "lofi adaptive=maybe") == [
            None,
            "radio: `adaptive` expects true or false, got `maybe`",
        ]
        assert nvim.exec_lua(parse, "steer")[1] == "radio steer: needs the new prompt"
        # completion offers the actions and the shipped plans
        assert "stop" in nvim.call("getcompletion", "Lofi radio ", "cmdline")
        assert nvim.call("getcompletion", "Lofi radio plan ", "cmdline") == [
            "focus",
            "pomodoro",
            "late_night",
        ]
        # a wrong radio config is named
        nvim.exec_lua("vim.g.lofi = {radio = {adaptive = 'yes'}}")
        ok, errors = nvim.exec_lua("return {require('lofi.config').validate(require('lofi.config').raw())}")
        assert not ok and any("radio.adaptive" in e for e in errors)


def test_energy_reads_typing_modes_and_error_diagnostics(tmp_path):
    with embedded_nvim(tmp_path) as nvim:
        # the client is replaced by a recorder: what would be sent to the daemon
        nvim.exec_lua(
            "_G.sent = {} package.loaded['lofi.client'] = { request = function(m, p) "
            "table.insert(_G.sent, { m, p }) end }"
        )
        measure = "return require('lofi.energy').measure(...)"
        assert nvim.exec_lua(measure, 0, 0, 0, 4) == 0.25  # at rest
        assert nvim.exec_lua(measure, 24, 2, 0, 4) == 1.0  # 6 characters and half a mode change a second
        assert nvim.exec_lua(measure, 0, 0, 10, 4) == 0.1  # ten errors: calmer
        nvim.exec_lua("require('lofi.energy').follow(true, { timer = false })")
        energy, sent = nvim.exec_lua("return {require('lofi.energy').tick(4)}")
        assert (energy, sent) == (0.25, True)
        # ten error diagnostics pull the next measurement down (smoothed: 0.25 + 0.4 × (0.1 − 0.25))
        nvim.exec_lua(
            "local ns = vim.api.nvim_create_namespace('t') local d = {} "
            "for i = 0, 9 do d[#d + 1] = { lnum = 0, col = 0, message = 'e', severity = vim.diagnostic.severity.ERROR } end "
            "vim.diagnostic.set(ns, 0, d)"
        )
        energy, sent = nvim.exec_lua("return {require('lofi.energy').tick(4)}")
        assert energy == 0.19 and sent is True
        # a move under 0.05 is not sent
        energy, sent = nvim.exec_lua("return {require('lofi.energy').tick(4)}")
        assert sent is False
        assert nvim.exec_lua("return _G.sent") == [
            ["radio_steer", {"energy": 0.25}],
            ["radio_steer", {"energy": 0.19}],
        ]
        nvim.exec_lua("require('lofi.energy').follow(false)")
