"""lofi inside a real Neovim setup: lazy.nvim loading lofi with the README's spec (`cmd = "Lofi"`), lualine with the
`lofi` component, nvim-notify as vim.notify and Telescope for :Lofi tracks, all real checkouts, with a UI attached
(nvim --embed + nvim_ui_attach) and keys typed with nvim_input. The daemon is tests/fake_lofi_daemon.py.

Runs when LOFI_TEST_PLUGINS points at a directory holding telescope.nvim, plenary.nvim, lualine.nvim, nvim-notify
and lazy.nvim (see DEVELOPERS.md); skipped otherwise.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.nvim_helpers import ROOT, fake_daemon_cmd, poll, quit_nvim, require_nvim, wait_for

PLUGINS = ("telescope.nvim", "plenary.nvim", "lualine.nvim", "nvim-notify", "lazy.nvim")


def plugins_dir() -> Path:
    raw = os.environ.get("LOFI_TEST_PLUGINS")
    if not raw:
        pytest.skip(
            "LOFI_TEST_PLUGINS is not set (a directory with real checkouts of " + ", ".join(PLUGINS) + ")"
        )
    d = Path(raw)
    missing = [p for p in PLUGINS if not (d / p).is_dir()]
    if missing:
        pytest.skip(f"LOFI_TEST_PLUGINS={d} lacks {', '.join(missing)}")
    return d


# A user's init.lua: lazy.nvim (offline: everything is a local `dir`), lofi with the README's spec.
INIT = r"""
-- lazy.nvim finds the plugin owning a module by its folder's name: lofi must live in a folder named "lofi".
local P, LOFI, TMP = %(plugins)s, %(lofi_dir)s, %(tmp)s
vim.opt.rtp:prepend(P .. "/lazy.nvim")
vim.o.termguicolors = true
vim.o.laststatus = 2
require("lazy").setup({
  { dir = LOFI, name = "lofi", cmd = "Lofi", opts = %(lofi_opts)s },
  -- Loaded on VeryLazy as LazyVim does: by then lazy.nvim loads a plugin for any module it requires.
  { dir = P .. "/lualine.nvim", name = "lualine.nvim", event = "VeryLazy",
    opts = { options = { icons_enabled = false }, sections = { lualine_x = { "lofi" } } } },
  { dir = P .. "/nvim-notify", name = "nvim-notify", lazy = false, enabled = %(with_notify)s,
    config = function()
      require("notify").setup({ background_colour = "#000000", stages = "static", timeout = 3000 })
      vim.notify = require("notify")
    end },
  { dir = P .. "/plenary.nvim", name = "plenary.nvim", lazy = true },
  { dir = P .. "/telescope.nvim", name = "telescope.nvim", cmd = "Telescope",
    dependencies = { "plenary.nvim" } },
}, {
  root = TMP .. "/lazy", lockfile = TMP .. "/lazy-lock.json", state = TMP .. "/lazy-state.json",
  install = { missing = false }, checker = { enabled = false }, change_detection = { enabled = false },
  rocks = { enabled = false }, readme = { enabled = false },
})
"""


def lua_str(s: str | Path) -> str:
    return json.dumps(str(s))


# Without plugin managers or plugins: lofi on 'runtimepath', lofi's statusline as the plain statusline.
PLAIN_INIT = r"""
vim.opt.rtp:prepend(%(root)s)
vim.o.laststatus = 2
vim.o.statusline = "%%{v:lua.require'lofi'.statusline()}"
vim.g.lofi = %(lofi_opts)s
"""


@contextmanager
def user_nvim(
    tmp_path: Path, *, notify: bool = True, gen_steps: int = 5, plugins: bool = True
) -> Iterator[Any]:
    """Neovim with a UI attached (80x24), configured like a user's lazy.nvim setup (or plain, plugins=False)."""
    import pynvim

    nvim_bin = require_nvim()
    record = tmp_path / "received.jsonl"
    cmd = fake_daemon_cmd("--record", str(record), "--gen-steps", str(gen_steps))
    lofi_opts = "{ daemon = { cmd = %s }, ui = { progress_interval_ms = 0 } }" % (
        "{" + ", ".join(lua_str(c) for c in cmd) + "}"
    )
    init = tmp_path / "init.lua"
    values = {"root": lua_str(ROOT), "tmp": lua_str(tmp_path), "lofi_opts": lofi_opts}
    if plugins:
        (tmp_path / "lofi").symlink_to(ROOT)
        values.update(
            plugins=lua_str(plugins_dir()),
            lofi_dir=lua_str(tmp_path / "lofi"),
            with_notify="true" if notify else "false",
        )
        init.write_text(INIT % values)
    else:
        init.write_text(PLAIN_INIT % values)
    xdg = tmp_path / "xdg"
    env = [f"XDG_{k}_HOME={xdg / k.lower()}" for k in ("CONFIG", "DATA", "STATE", "CACHE")]
    nvim = pynvim.attach(
        "child", argv=["env", *env, nvim_bin, "--embed", "-n", "-i", "NONE", "-u", str(init)]
    )
    try:
        nvim.ui_attach(80, 24, rgb=True, ext_linegrid=True)
        wait_for(nvim, "return vim.v.vim_did_enter == 1")
        nvim.record = record  # type: ignore[attr-defined]
        yield nvim
    finally:
        quit_nvim(nvim)


def sent(nvim: Any) -> list[dict[str, Any]]:
    record: Path = nvim.record
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines()]


def statusline(nvim: Any) -> str:
    """The current window's statusline as drawn (lualine sets it per window; E539 would raise here)."""
    return nvim.exec_lua(
        "local stl = vim.wo.statusline ~= '' and vim.wo.statusline or vim.o.statusline "
        "return vim.api.nvim_eval_statusline(stl, {winid = vim.api.nvim_get_current_win()}).str"
    )


def errors(nvim: Any) -> str:
    return nvim.exec_lua("return vim.v.errmsg") + nvim.exec_lua(
        "return vim.api.nvim_exec2('messages', {output = true}).output"
    )


def notify_history(nvim: Any) -> list[dict[str, Any]]:
    return nvim.exec_lua(
        "return vim.tbl_map(function(r) return {title = r.title[1], message = table.concat(r.message, '\\n'), "
        "level = r.level} end, require('notify').history())"
    )


def confirming(nvim: Any) -> bool:
    """Is a confirm() question waiting for the user's answer (mode "r?")?"""
    return nvim.request("nvim_get_mode")["mode"] == "r?"


def generate(nvim: Any, prompt: str) -> str:
    before = nvim.exec_lua("return require('lofi.state').current.last_complete or ''")
    nvim.command(f"Lofi generate {prompt}")
    return wait_for(
        nvim,
        "local id = require('lofi.state').current.last_complete return id ~= ... and id",
        30,
        before,
    )


def test_lazy_and_lualine_leave_lofi_unloaded_until_it_is_used(tmp_path):
    with user_nvim(tmp_path) as nvim:
        # lualine has drawn its statusline, which required lualine.components.lofi (lazy.nvim loaded lofi for it).
        wait_for(nvim, "return package.loaded['lualine.components.lofi'] ~= nil")
        wait_for(nvim, "return vim.wo.statusline ~= ''")
        loaded = nvim.exec_lua(
            "local out = {} for k in pairs(package.loaded) do if k:match('^lofi') then out[#out + 1] = k end end "
            "table.sort(out) return out"
        )
        # lazy.nvim loads the plugin that owns a required module, and calls setup(opts). That costs only the entry
        # module and its config: no client, RPC, state or UI module (before: all eight).
        reason = nvim.exec_lua("return require('lazy.core.config').plugins.lofi._.loaded")
        assert reason is None or reason.get("require") == "lualine.components.lofi"
        assert set(loaded) <= {"lofi", "lofi.config"}, loaded
        assert "lofi" not in statusline(nvim).replace("lualine", "")
        assert not (tmp_path / "received.jsonl").exists()  # no daemon was started
        # Using lofi works from there, and the statusline then shows it.
        generate(nvim, "first use")
        wait_for(nvim, "return vim.api.nvim_eval_statusline(vim.wo.statusline, {}).str:find('▶') ~= nil")


def test_lualine_shows_generation_percent_without_freezing(tmp_path):
    with user_nvim(tmp_path, gen_steps=60) as nvim:
        nvim.command("Lofi generate slow burn")
        # lualine re-interprets component text: an unescaped "55%" is E539 and stops its refresh for good.
        line = wait_for(
            nvim,
            "local s = vim.api.nvim_eval_statusline(vim.wo.statusline, {}).str return s:match('◌ %d+%%') and s",
            30,
        )
        assert "◌" in line
        # Still refreshing: the statusline moves on to the player once the track is ready.
        wait_for(
            nvim, "return vim.api.nvim_eval_statusline(vim.wo.statusline, {}).str:find('▶ 0:') ~= nil", 30
        )
        assert "E539" not in errors(nvim)
        # The plain %{} statusline shows the same text, not double-escaped.
        plain = nvim.exec_lua(
            "require('lofi.state').current.generating.x = {track_id = 'x', percent = 55, running = true} "
            "return vim.api.nvim_eval_statusline(\"%{v:lua.require'lofi'.statusline()}\", {}).str"
        )
        assert "◌ 55%" in plain and "%%" not in plain


def floats(nvim: Any) -> list[str]:
    """The text of every floating window on screen (nvim-notify shows each notification in one)."""
    return nvim.exec_lua(
        "local out = {} for _, w in ipairs(vim.api.nvim_list_wins()) do "
        "if vim.api.nvim_win_get_config(w).relative ~= '' then "
        "out[#out + 1] = table.concat(vim.api.nvim_buf_get_lines(vim.api.nvim_win_get_buf(w), 0, -1, false), "
        "'\\n') end end return out"
    )


def test_nvim_notify_shows_progress_status_and_track_ready(tmp_path):
    with user_nvim(tmp_path) as nvim:
        assert nvim.exec_lua("return type(vim.notify)") == "table"  # nvim-notify's callable table
        generate(nvim, "rainy night jazz")
        history = wait_for(
            nvim,
            "for _, r in ipairs(require('notify').history()) do "
            "if table.concat(r.message, ' '):find('track ready') then return true end end",
            30,
        ) and notify_history(nvim)
        # Progress never stays behind on screen: every "generating" window was replaced in place (it has no
        # timeout, so a stray one would stay forever).
        assert not any("generating" in w for w in floats(nvim)), floats(nvim)
        ready = [h for h in history if "track ready" in h["message"]]
        assert ready[0]["title"] == "lofi" and ready[0]["message"].startswith(
            "track ready: “rainy night jazz”"
        )
        # The progress notification replaced itself: one window on screen, never "No matching notification".
        assert not any("replace" in h["message"] or "getinfo" in h["message"] for h in history)
        for sub in ("status", "queue", "models"):
            nvim.command(f"Lofi {sub}")
            wait_for(
                nvim,
                "for _, r in ipairs(require('notify').history()) do "
                "if r.message[1] == ... then return true end end",
                30,
                sub,
            )
            # nvim-notify shows it in a float of its own (polled: the float appears on nvim-notify's timer, and
            # each one closes after its timeout, so it is checked now rather than at the end)
            poll(lambda sub=sub: any(s.startswith(sub) or f"\n{sub}" in s for s in floats(nvim)), 30)
        history = notify_history(nvim)
        assert [h for h in history if h["title"] == "lofi" and h["message"].startswith("lofi:")] == []
        assert not any(h["level"] == "ERROR" for h in history), history
        assert "getinfo" not in errors(nvim)


def test_nvim_notify_progress_after_the_user_dismissed_it(tmp_path):
    with user_nvim(tmp_path) as nvim:
        # The user dismisses notifications while a generation reports progress.
        nvim.exec_lua(
            "vim.api.nvim_create_autocmd('User', {pattern = 'LofiGenerationProgress', once = true, "
            "callback = function() require('notify').dismiss({silent = true, pending = true}) end})"
        )
        generate(nvim, "dismissed")
        wait_for(
            nvim,
            "for _, r in ipairs(require('notify').history()) do "
            "if table.concat(r.message, ' '):find('track ready') then return true end end",
            30,
        )
        messages = [h["message"] for h in notify_history(nvim)]
        assert not any("replace" in m for m in messages), messages


def screen_statusline(nvim: Any) -> str:
    """The statusline row as it is on the screen now (screenstring reads the drawn grid: no re-evaluation)."""
    return nvim.exec_lua(
        "local row = vim.o.lines - vim.o.cmdheight local out = {} "
        "for c = 1, vim.o.columns do out[c] = vim.fn.screenstring(row, c) end return vim.trim(table.concat(out))"
    )


@pytest.mark.parametrize("how", ["kill", "restart"])
def test_statusline_clears_when_the_daemon_goes_away(tmp_path, how):
    # No plugins needed: runs in CI too.
    with user_nvim(tmp_path, plugins=False) as nvim:
        generate(nvim, "to be killed")
        wait_for(nvim, "return require('lofi').is_playing()")
        assert screen_statusline(nvim).startswith("▶ 0:")
        nvim.exec_lua(
            "_G.exited = false vim.api.nvim_create_autocmd('User', {pattern = 'LofiDaemonExit', "
            "callback = function() _G.exited = true end})"
        )
        if how == "kill":
            os.kill(nvim.exec_lua("return require('lofi.client').pid()"), 9)
        else:
            nvim.command("Lofi daemon restart")
        wait_for(nvim, "return _G.exited", 30)
        nvim.exec_lua("vim.wait(0)")  # let scheduled callbacks run; nothing here redraws the statusline
        assert screen_statusline(nvim) == ""


@pytest.fixture
def tracks_ui(tmp_path):
    with user_nvim(tmp_path, notify=False) as nvim:
        ids = [generate(nvim, p) for p in ("alpha one", "beta two", "gamma three")]
        nvim.command("Lofi stop")
        yield nvim, ids


def open_tracks(nvim: Any) -> None:
    nvim.command("Lofi tracks")
    wait_for(nvim, "return vim.bo.filetype == 'TelescopePrompt'", 30)
    wait_for(
        nvim,
        "local p = require('telescope.actions.state').get_current_picker(vim.api.nvim_get_current_buf()) "
        "return p and p.manager and p.manager:num_results() > 0",
        30,
    )


def requests(nvim: Any, method: str) -> list[dict[str, Any]]:
    return [m.get("params") or {} for m in sent(nvim) if m["method"] == method]


def test_telescope_quickfix_splits_and_multi_select(tracks_ui):
    nvim, ids = tracks_ui
    open_tracks(nvim)
    nvim.input("<C-q>")
    wait_for(nvim, "return vim.bo.buftype == 'quickfix'", 30)
    qf = nvim.exec_lua(
        "return vim.tbl_map(function(i) return {vim.fn.bufname(i.bufnr), i.text} end, vim.fn.getqflist())"
    )
    assert sorted(q[0] for q in qf) == sorted(f"/tmp/{i}.flac" for i in ids)
    assert any("beta two" in q[1] for q in qf)
    assert "E731" not in errors(nvim)
    nvim.command("cclose")

    open_tracks(nvim)
    nvim.input("<C-v>")
    wait_for(nvim, "return vim.bo.filetype == 'lofi'", 30)
    assert nvim.exec_lua("return vim.api.nvim_buf_get_name(0)").startswith("lofi://track/")
    assert nvim.current.buffer[0].startswith("Prompt:     ")
    assert nvim.exec_lua("return #vim.api.nvim_tabpage_list_wins(0)") == 2
    nvim.command("only")

    open_tracks(nvim)
    nvim.input("<Tab><Tab>")
    wait_for(
        nvim,
        "local p = require('telescope.actions.state').get_current_picker(vim.api.nvim_get_current_buf()) "
        "return #p:get_multi_selection() == 2",
    )
    nvim.input("<C-a>")
    wait_for(nvim, "return true")
    added = poll_requests(nvim, "playlist_add", 2)
    assert len({a["track_id"] for a in added}) == 2


def poll_requests(nvim: Any, method: str, n: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        got = requests(nvim, method)
        if len(got) >= n:
            return got
        time.sleep(0.05)
    raise AssertionError(f"{method} sent {len(requests(nvim, method))} times, wanted {n}")


def test_telescope_delete_asks_and_keeps_the_query(tracks_ui):
    nvim, ids = tracks_ui
    open_tracks(nvim)
    nvim.input("beta")
    wait_for(
        nvim,
        "local p = require('telescope.actions.state').get_current_picker(vim.api.nvim_get_current_buf()) "
        "return p:_get_prompt() == 'beta'",
    )
    # <C-d> is still Telescope's preview scrolling: nothing is deleted.
    nvim.input("<C-d>")
    nvim.input("<M-d>")
    deadline = time.monotonic() + 30
    while not confirming(nvim):
        assert time.monotonic() < deadline, "no confirmation was asked"
        time.sleep(0.05)
    assert requests(nvim, "cache_delete") == []
    nvim.input("y")
    deleted = poll_requests(nvim, "cache_delete", 1)
    assert deleted == [{"track_id": ids[1]}]
    # The picker stays open with its query; its results no longer hold the deleted track.
    wait_for(
        nvim,
        "local p = require('telescope.actions.state').get_current_picker(vim.api.nvim_get_current_buf()) "
        "if not p then return false end local n = 0 for e in p.manager:iter() do "
        "if e.value.track_id == ... then return false end n = n + 1 end return p:_get_prompt() == 'beta'",
        30,
        ids[1],
    )
    assert nvim.exec_lua("return vim.bo.filetype") == "TelescopePrompt"


def test_telescope_regenerate_uses_a_new_seed(tracks_ui):
    nvim, ids = tracks_ui
    seeds = {g["prompt"]: g.get("seed") for g in requests(nvim, "generate")}
    open_tracks(nvim)
    nvim.input("gamma")
    wait_for(
        nvim,
        "local p = require('telescope.actions.state').get_current_picker(vim.api.nvim_get_current_buf()) "
        "return p:_get_prompt() == 'gamma' and p:get_selection() and p:get_selection().value.prompt == 'gamma three'",
    )
    nvim.input("<C-s>")
    regen = poll_requests(nvim, "generate", 4)[-1]
    assert regen["prompt"] == "gamma three"
    assert regen["seed"] != seeds["gamma three"] and regen["seed"] != 7


def test_telescope_with_an_empty_cache_gives_the_hint(tmp_path):
    with user_nvim(tmp_path, notify=False) as nvim:
        nvim.exec_lua(
            "_G.seen = {} local orig = vim.notify vim.notify = function(m, ...) "
            "table.insert(_G.seen, m) return orig(m, ...) end"
        )
        nvim.command("Lofi tracks")
        wait_for(
            nvim,
            "for _, m in ipairs(_G.seen) do if m:find('no cached tracks yet') then return true end end",
            30,
        )
        assert nvim.exec_lua("return vim.bo.filetype") != "TelescopePrompt"
