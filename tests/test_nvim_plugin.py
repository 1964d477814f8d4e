"""The Neovim plugin without a daemon: startup cost, config validation, completion, pure Lua functions, vimdoc."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.nvim_helpers import ROOT, configure, embedded_nvim, require_nvim


@pytest.fixture
def nvim(tmp_path):
    with embedded_nvim(tmp_path) as n:
        yield n


def test_startup_defines_only_the_command_and_plug_maps(nvim):
    # Nothing of lofi is loaded at startup: plugin/lofi.lua must not require any module.
    loaded = nvim.exec_lua(
        "local t = {} for name in pairs(package.loaded) do if name:match('^lofi') then t[#t+1] = name end end "
        "return t"
    )
    assert loaded == []
    assert nvim.funcs.exists(":Lofi") == 2
    maps = nvim.exec_lua(
        "local t = {} for _, m in ipairs(vim.api.nvim_get_keymap('n')) do "
        "if m.lhs:find('lofi', 1, true) then t[#t+1] = m.lhs end end return t"
    )
    assert "<Plug>(lofi-toggle)" in maps and "<Plug>(lofi-volume-up)" in maps
    # No real key is mapped: every lofi mapping is a <Plug> one.
    assert all(m.startswith("<Plug>(lofi-") for m in maps)
    # No daemon child process, no autocommands of ours.
    assert nvim.exec_lua("return #vim.api.nvim_get_proc_children(vim.fn.getpid())") == 0
    assert nvim.exec_lua("return #vim.api.nvim_get_autocmds({group = nil, pattern = 'Lofi*'})") == 0


def test_kill_switch_disables_the_plugin(tmp_path):
    nvim_bin = require_nvim()
    out = subprocess.run(
        [
            nvim_bin,
            "--clean",
            "--headless",
            "--cmd",
            "let g:lofi_disable = 1",
            "--cmd",
            f"set rtp^={ROOT}",
            "-c",
            "echo exists(':Lofi')",
            "-c",
            "qa!",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stderr.strip().endswith("0")


def test_startuptime_log_shows_only_the_plugin_file(tmp_path):
    # The cost itself is measured by scripts/bench_nvim_plugin.py; here: what startup does.
    nvim_bin = require_nvim()
    log = tmp_path / "startup.log"
    subprocess.run(
        [
            nvim_bin,
            "--clean",
            "--headless",
            "--cmd",
            f"set rtp^={ROOT}",
            "--startuptime",
            str(log),
            "-c",
            "qa!",
        ],
        check=True,
        timeout=120,
    )
    text = log.read_text()
    assert f"sourcing {ROOT}/plugin/lofi.lua" in text
    # --startuptime logs every Lua require: none of ours happens at startup.
    assert "require('lofi" not in text and "lofi/" not in text.replace(f"{ROOT}/plugin/lofi.lua", "")


def test_config_defaults_merge_and_setup_is_idempotent(nvim):
    configure(nvim, {"ui": {"progress": "cmdline"}, "playback": {"volume": 0.5}})
    got = nvim.exec_lua(
        "local c = require('lofi.config').get() return {c.ui.progress, c.playback.volume, c.backend}"
    )
    assert got == ["cmdline", 0.5, "musicgen"]
    # setup() overrides vim.g.lofi; calling it twice replaces, not accumulates.
    nvim.exec_lua("require('lofi').setup({backend = 'ace_step', threads = 2})")
    nvim.exec_lua("require('lofi').setup({threads = 4})")
    got = nvim.exec_lua("local c = require('lofi.config').get() return {c.backend, c.threads, c.ui.progress}")
    assert got == ["musicgen", 4, "cmdline"]
    # setup never starts a daemon.
    assert nvim.exec_lua("return require('lofi.client').is_running()") is False


def test_config_validation_names_the_bad_key(nvim):
    errs = nvim.exec_lua(
        "local ok, errs = require('lofi.config').validate(vim.tbl_deep_extend('force', "
        "require('lofi.config').defaults, {playback = {volume = 5}, ui = {progress = 'fidget'}, "
        "daemon = {cmd = {}}, threads = 'many', bogus = 1})) return errs"
    )
    text = "\n".join(errs)
    assert "playback.volume: expected a number from 0 to 1, got 5" in text
    assert "ui.progress: expected one of notify, cmdline, none, got fidget" in text
    assert "daemon.cmd: expected a string or a non-empty list of strings" in text
    assert "threads: expected an integer from 0 to 256, got many" in text
    assert "unknown option `bogus`" in text
    assert len(errs) == 5


def test_invalid_option_is_reported_and_replaced_by_default(nvim):
    nvim.exec_lua("_G.notes = {} vim.notify = function(m, l) table.insert(_G.notes, {m, l}) end")
    nvim.exec_lua("require('lofi').setup({playback = {volume = 3}})")
    assert nvim.exec_lua("return require('lofi.config').get().playback.volume") == 0.3
    nvim.exec_lua("vim.wait(60000, function() return #_G.notes > 0 end)")
    notes = nvim.exec_lua("return _G.notes")
    assert len(notes) == 1
    assert "playback.volume" in notes[0][0] and notes[0][1] == 4  # ERROR


def test_missing_daemon_says_what_to_run(nvim):
    configure(nvim, {})
    nvim.exec_lua("vim.env.PATH = '/nonexistent'")
    # A checkout where scripts/setup ran has a .venv: pretend the plugin lives somewhere without one.
    nvim.exec_lua("require('lofi.config').plugin_root = function() return '/nonexistent/lofi' end")
    got = nvim.exec_lua("local cmd, err = require('lofi.config').daemon_cmd() return {cmd == nil, err}")
    is_nil, err = got
    assert is_nil
    assert "lofi-daemon" in err and "/scripts/setup" in err and "daemon.cmd" in err
    assert "\n" not in err and not err.startswith("lofi:")  # one line, and ui adds the "lofi: " once
    # The command reports it instead of throwing.
    nvim.exec_lua("_G.notes = {} vim.notify = function(m, l) table.insert(_G.notes, {m, l}) end")
    nvim.command("Lofi models")
    nvim.exec_lua("vim.wait(60000, function() return #_G.notes > 0 end)")
    notes = nvim.exec_lua("return _G.notes")
    assert notes and "/scripts/setup" in notes[0][0] and notes[0][1] == 4
    assert notes[0][0].startswith("`lofi-daemon` not found")  # a notifier plugin shows the title "lofi" once


def test_daemon_cmd_prefers_the_plugin_venv(nvim, tmp_path):
    fake_root = tmp_path / "plug"
    (fake_root / ".venv" / "bin").mkdir(parents=True)
    exe = fake_root / ".venv" / "bin" / "lofi-daemon"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    got = nvim.exec_lua(
        "local root = ... local c = require('lofi.config') c.plugin_root = function() return root end "
        "return {c.daemon_cmd({serve = true}), c.daemon_cmd()}",
        str(fake_root),
    )
    assert got == [[str(exe), "--parent-pid", str(nvim.funcs.getpid())], [str(exe)]]
    configure(nvim, {"daemon": {"cmd": ["ssh", "gpu-box", "lofi-daemon"]}})
    nvim.exec_lua("require('lofi.config').setup()")
    assert nvim.exec_lua("return require('lofi.config').daemon_cmd()") == ["ssh", "gpu-box", "lofi-daemon"]


def test_initialize_options_carry_the_config(nvim):
    nvim.exec_lua(
        "require('lofi').setup({provider = 'cpu', threads = 2, models = {musicgen = {dir = '/m', variant = 'small_i8'}},"
        " cache = {max_mb = 100}, prefetch = {strategy = 'preset_cycle'}, playback = {volume = 0.5}})"
    )
    opts = nvim.exec_lua("return require('lofi.config').initialize_options()")
    assert opts["provider"] == "cpu" and opts["threads"] == 2
    assert opts["models"]["musicgen"] == {"dir": "/m", "variant": "small_i8"}
    assert opts["cache"]["max_mb"] == 100 and opts["cache"]["format"] == "flac"
    assert opts["prefetch"]["strategy"] == "preset_cycle" and len(opts["prefetch"]["presets"]) == 4
    assert opts["playback"]["volume"] == 0.5 and opts["default_backend"] == "musicgen"


def complete(nvim, line):
    return nvim.funcs.getcompletion(line, "cmdline")


def test_completion_is_context_aware(nvim):
    assert complete(nvim, "Lofi ")[:3] == ["cache", "cancel", "daemon"]
    assert complete(nvim, "Lofi d") == ["daemon", "download"]
    assert complete(nvim, "Lofi download ") == ["musicgen", "ace_step", "riffusion"]
    assert complete(nvim, "Lofi cache ") == ["clear", "stats"]
    assert complete(nvim, "Lofi daemon re") == ["restart"]
    assert complete(nvim, "Lofi generate backend=") == [
        "backend=musicgen",
        "backend=ace_step",
        "backend=riffusion",
    ]
    assert "scheduler=ddim" in complete(nvim, "Lofi generate scheduler=")
    gen = complete(nvim, "Lofi generate ")
    assert "duration=" in gen and "seed=" in gen and "lofi hip hop, rainy day, mellow piano" in gen
    # Track ids come from what the plugin has seen (no daemon is started to complete).
    nvim.exec_lua("require('lofi.state').remember_track({track_id = 'abcdef0123456789', prompt = 'x'})")
    assert complete(nvim, "Lofi play ") == ["abcdef0123456789"]
    assert complete(nvim, "Lofi play abcdef0123456789 ") == []
    assert nvim.exec_lua("return require('lofi.client').is_running()") is False


def test_unknown_subcommand_is_one_line_with_a_suggestion(nvim):
    nvim.exec_lua("_G.notes = {} vim.notify = function(m, l) table.insert(_G.notes, {m, l}) end")
    nvim.command("Lofi generte rainy")
    nvim.command("Lofi frobnicate")
    nvim.exec_lua("vim.wait(60000, function() return #_G.notes > 1 end)")
    notes = nvim.exec_lua("return _G.notes")
    assert notes == [
        ["unknown subcommand `generte`: did you mean `generate`?", 4],
        ["unknown subcommand `frobnicate` (:Lofi <Tab> lists them)", 4],
    ]


def test_parse_generate_args(nvim):
    got = nvim.exec_lua(
        "return require('lofi.args').parse_generate({'rainy', 'night', 'duration=60', 'seed=42', 'backend=ace_step',"
        " 'jazz'})"
    )
    assert got == {"prompt": "rainy night jazz", "duration_sec": 60, "seed": 42, "backend": "ace_step"}


def test_status_says_when_another_lofi_has_the_sound(nvim):
    lines = nvim.exec_lua(
        "local f = require('lofi.format') "
        "return {f.status({playback = {state = 'stopped', playing_elsewhere = 4242}})[2], "
        "f.status({playback = {state = 'stopped', playing_elsewhere = vim.NIL}})[2]}"
    )
    assert lines == ["playback: stopped (another lofi plays: pid 4242, another Neovim?)", "playback: stopped"]


def test_statusline_formats_from_cached_state(nvim):
    lua = """
    local state, lofi = require('lofi.state'), require('lofi')
    local out = {}
    out[1] = lofi.statusline()
    state.apply('playback_position', {track_id = 't1', position_sec = 15.2, duration_sec = 30})
    state.current.playback.updated_at = vim.uv.now()
    out[2] = lofi.statusline()
    state.apply('playback_paused', {track_id = 't1', position_sec = 15.9})
    out[3] = lofi.statusline()
    state.apply('generation_started', {track_id = 'g1', prompt = 'p', backend = 'musicgen'})
    state.apply('generation_progress', {track_id = 'g1', percent = 45})
    out[4] = lofi.statusline()
    state.apply('playback_ended', {track_id = 't1', reason = 'stopped'})
    out[5] = lofi.statusline()
    state.apply('generation_complete', {track_id = 'g1'})
    out[6] = lofi.statusline()
    out[7] = vim.api.nvim_eval_statusline("%{v:lua.require'lofi'.statusline()}", {}).str
    return out
    """
    assert nvim.exec_lua(lua) == ["", "▶ 0:15/0:30", "⏸ 0:15/0:30", "⏸ 0:15/0:30 ◌ 45%", "◌ 45%", "", ""]


def test_generates_waiting_for_the_remote_generator_show_in_statusline_queue_and_status(nvim):
    got = nvim.exec_lua(
        """
        local s, f, lofi = require('lofi.state'), require('lofi.format'), require('lofi')
        s.current.connecting = 1
        local bar = lofi.statusline()
        s.apply('generation_progress', {track_id = 'g1', percent = 20})
        local both = lofi.statusline() -- a running job's percent says more
        local q = f.queue({waiting = {}, connecting = {{prompt = 'rain', backend = 'tone', seed = 1}}})
        local st = f.status({queue = {waiting = 0, connecting = 2}})[3]
        local quiet = f.status({queue = {waiting = 0, connecting = 0}})[3]
        return {bar, both, q, st, quiet}
        """
    )
    assert got == [
        "◌ …",
        "◌ 20%",
        ["… rain  [tone, waiting for the remote generator]"],
        "queue: 0 running, 0 waiting, 2 connecting",
        "queue: 0 running, 0 waiting",
    ]


def test_statusline_interpolates_position_while_playing(nvim):
    got = nvim.exec_lua(
        "local s = require('lofi.state') s.apply('playback_started', {track_id = 't', duration_sec = 90}) "
        "s.current.playback.updated_at = vim.uv.now() - 61000 return require('lofi').statusline()"
    )
    assert got == "▶ 1:01/1:30"


def test_rpc_decoder_handles_split_and_batched_frames(nvim):
    lua = """
    local rpc = require('lofi.rpc')
    local a = rpc.encode({jsonrpc = '2.0', id = 1, result = {x = 'é'}})
    local b = rpc.encode({jsonrpc = '2.0', method = 'log', params = {level = 'info', message = 'hi'}})
    local d = rpc.decoder()
    local got = {}
    local stream = a .. b .. 'garbage\\r\\n\\r\\n' .. a
    for i = 1, #stream do
      local msgs, errs = d:feed(stream:sub(i, i))
      for _, m in ipairs(msgs) do got[#got + 1] = m.id or m.method end
      for _, e in ipairs(errs) do got[#got + 1] = 'ERR ' .. e end
    end
    local d2 = rpc.decoder()
    local all = d2:feed(a .. b)
    return {got, #all, d.buf, a:match('^Content%-Length: (%d+)\\r\\n\\r\\n')}
    """
    got, n_all, rest, length = nvim.exec_lua(lua)
    assert got == [1, "log", "ERR malformed header: garbage", 1]
    assert n_all == 2 and rest == ""
    body = '{"jsonrpc":"2.0","id":1,"result":{"x":"é"}}'
    assert int(length) == len(body.encode())


TRACK = {
    "track_id": "0123456789abcdef",
    "path": "/c/0123456789abcdef.flac",
    "prompt": "rainy night jazz",
    "backend": "musicgen",
    "params": {"guidance_scale": 3.0, "top_k": 250},
    "seed": 42,
    "duration_sec": 30.0,
    "sample_rate": 32000,
    "format": "flac",
    "model_version": "musicgen-small-i8",
    "generation_time_sec": 12.34,
    "created_at": 1795000000.0,
    "play_count": 2,
    "favourite": True,
}


def test_picker_pure_functions(nvim):
    display, preview, regen = nvim.exec_lua(
        "local p = require('lofi.picker') local t = ... "
        "return {p.track_display(t), p.track_preview(t), p.regenerate_request(t)}",
        TRACK,
    )
    assert re.fullmatch(r"01234567  0:30  musicgen  \d{4}-\d\d-\d\d \d\d:\d\d  ★ rainy night jazz", display)
    assert preview[0] == "Prompt:     rainy night jazz"
    assert "Seed:       42" in preview and "Duration:   0:30" in preview
    assert "Generated:  in 12.3 s" in preview
    assert "Played:     2 times" in preview
    counts = nvim.exec_lua(
        "local p = require('lofi.picker') return {p.times_played(0), p.times_played(1), p.times_played(3)}"
    )
    assert counts == ["never", "once", "3 times"]  # never "1 times"
    assert "  guidance_scale   3" in preview or "  guidance_scale   3.0" in preview
    assert "  top_k            250" in preview
    assert regen == {
        "prompt": "rainy night jazz",
        "seed": 42,
        "backend": "musicgen",
        "duration_sec": 30,
        "guidance_scale": 3,
        "top_k": 250,
    }
    entries = nvim.exec_lua(
        "local p = require('lofi.picker') local t = ... "
        "local t2 = vim.tbl_extend('force', t, {track_id = 'b', seed = 7, created_at = t.created_at + 10}) "
        "local t3 = vim.tbl_extend('force', t, {track_id = 'c', prompt = 'solo'}) "
        "return p.prompt_entries({t, t2, t3}, {'solo', 'preset one'})",
        TRACK,
    )
    assert [(e["prompt"], e["count"], e.get("seed"), e.get("preset", False)) for e in entries] == [
        ("rainy night jazz", 2, 7, False),
        ("solo", 1, 42, False),
        ("preset one", 0, None, True),
    ]
    keys = nvim.exec_lua(
        "return vim.tbl_map(function(k) return k.key end, require('lofi.picker').track_keymaps)"
    )
    # <C-d>/<C-u> stay Telescope's preview scrolling.
    assert keys == ["<CR>", "<C-a>", "<M-d>", "<C-y>", "<C-s>", "<M-f>", "<M-v>"]


def test_optional_integrations_load_only_with_their_plugins(nvim):
    # Without telescope/lualine the integration files fail loudly instead of half-working, and nothing loads them.
    ok, err = nvim.exec_lua("return {pcall(require, 'telescope._extensions.lofi')}")
    assert ok is False and "telescope" in err
    ok, _ = nvim.exec_lua("return {pcall(require, 'lualine.components.lofi')}")
    assert ok is False


def test_vimdoc_tags_are_unique_and_cover_the_api(nvim, tmp_path):
    doc = ROOT / "doc" / "lofi.txt"
    text = doc.read_text()
    copy = tmp_path / "doc"
    copy.mkdir()
    (copy / "lofi.txt").write_text(text)
    nvim.command(f"helptags {copy}")  # raises E154 on a duplicate tag
    tags = {line.split("\t")[0] for line in (copy / "tags").read_text().splitlines()}
    subs = nvim.exec_lua("return require('lofi.commands').names()")
    for sub in subs:
        assert f":Lofi-{sub}" in tags, sub
    api = nvim.exec_lua(
        "local t = {} for k, v in pairs(require('lofi')) do if type(v) == 'function' then t[#t+1] = k end end return t"
    )
    for fn in api:
        assert f"lofi.{fn}()" in tags, fn
    events = nvim.exec_lua("return require('lofi.events').all")
    for ev in events:
        assert ev in tags, ev
    defaults = nvim.exec_lua(
        "local out = {} local function walk(t, p) for k, v in pairs(t) do local key = p .. k "
        "if type(v) == 'table' and not vim.islist(v) and next(v) and key ~= 'ui.icons' then walk(v, key .. '.') "
        "else out[#out+1] = key end end end walk(require('lofi.config').defaults, '') return out"
    )
    for key in defaults:
        assert f"lofi-config.{key}" in tags, key
    # Every |link| points at a tag that exists here or in Neovim's own help.
    for link in set(re.findall(r"\|([^|\s]+)\|", text)):
        if link.startswith(("lofi", ":Lofi", "Lofi")):
            assert link in tags, link


def test_plugin_files_layout():
    # The integration files stay thin: the picker and statusline logic lives in lua/lofi/; the Telescope file holds
    # only Telescope wiring (entries, multi-selection, refresh in place, its default actions).
    for thin, limit in (("lua/telescope/_extensions/lofi.lua", 180), ("lua/lualine/components/lofi.lua", 60)):
        assert len(Path(ROOT, thin).read_text().splitlines()) < limit


def test_relative_cache_dir_is_sent_absolute_from_neovims_cwd(nvim, tmp_path):
    """The daemon rejects a relative cache_dir (its cwd is not the user's): the plugin expands it first."""
    nvim.command(f"cd {tmp_path}")
    nvim.exec_lua("require('lofi').setup({cache = {dir = 'my-tracks'}})")
    opts = nvim.exec_lua("return require('lofi.config').initialize_options()")
    assert opts["cache_dir"].rstrip("/") == str(tmp_path / "my-tracks")
