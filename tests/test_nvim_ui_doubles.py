"""lofi's face against the CI doubles of nvim-notify, lualine and Telescope (tests/lua/doubles/), which behave like
the real plugins in the ways that broke in real setups (issue 9): a callable-table vim.notify with title/replace,
lualine re-interpreting component text and requiring components at startup, Telescope's entry fields and default
actions. tests/test_nvim_real_plugins.py runs the same flows against the real plugins when they are available."""

from __future__ import annotations

import json

import pytest

from tests.nvim_helpers import (
    TESTS,
    configure,
    embedded_nvim,
    fake_daemon_cmd,
    install_recorder,
    notes,
    notify_errors,
    poll,
    wait_for,
)

DOUBLES = TESTS / "lua" / "doubles"


@pytest.fixture
def nvim(tmp_path):
    with embedded_nvim(tmp_path) as n:
        install_recorder(n)
        record = tmp_path / "received.jsonl"
        configure(
            n,
            {
                "daemon": {"cmd": fake_daemon_cmd("--record", str(record))},
                "ui": {"progress_interval_ms": 0},
            },
        )
        n.record = record
        yield n


def sent(nvim, method):
    if not nvim.record.exists():
        return []
    msgs = [json.loads(line) for line in nvim.record.read_text().splitlines()]
    return [m.get("params") or {} for m in msgs if m["method"] == method]


def generate(nvim, prompt):
    before = nvim.exec_lua("return require('lofi.state').current.last_complete or ''")
    nvim.command(f"Lofi generate {prompt}")
    return wait_for(
        nvim, "local id = require('lofi.state').current.last_complete return id ~= ... and id", 30, before
    )


def test_callable_table_notifier_gets_title_and_in_place_progress(nvim):
    # The double is a callable table: debug.getinfo() on it raises, as with nvim-notify.
    assert nvim.exec_lua("return type(vim.notify)") == "table"
    assert nvim.exec_lua("return pcall(debug.getinfo, vim.notify, 'S')") is False
    generate(nvim, "night drive")
    calls = nvim.exec_lua("return _G.notify_double.notes")
    progress = [c for c in calls if "generating" in c["msg"] or "track ready" in c["msg"]]
    assert progress[0]["msg"] == "generating “night drive”…" and progress[0]["title"] == "lofi"
    assert progress[-1]["msg"].startswith("track ready: “night drive”")
    for prev, cur in zip(progress, progress[1:], strict=False):
        assert cur["replace"] == prev["id"]
    assert notify_errors(nvim) == []
    for sub in ("status", "queue", "models"):
        nvim.command(f"Lofi {sub}")
        poll(
            lambda sub=sub: any(
                n["msg"].split("\n")[0] == sub for n in nvim.exec_lua("return _G.notify_double.notes")
            )
        )
    # A title says "lofi": the text never repeats it.
    assert not any(n.startswith("lofi: lofi") for n in notes(nvim))
    assert not any(c["msg"].startswith("lofi:") for c in nvim.exec_lua("return _G.notify_double.notes"))


def test_progress_starts_anew_after_the_user_dismissed_it(nvim):
    # Dismiss the progress notification as soon as the first update arrives (before lofi replaces it).
    nvim.exec_lua(
        "vim.api.nvim_create_autocmd('User', {pattern = 'LofiGenerationProgress', once = true, "
        "callback = function() _G.notify_double.dismiss() end})"
    )
    generate(nvim, "dismissed")
    assert notify_errors(nvim) == []
    assert any(n.startswith("lofi: track ready") for n in notes(nvim))


def test_builtin_notifier_keeps_the_prefix(tmp_path):
    with embedded_nvim(tmp_path) as nvim:
        nvim.exec_lua("require('lofi.ui').notify('hello') vim.wait(50)")
        assert "lofi: hello" in nvim.exec_lua("return vim.api.nvim_exec2('messages', {output = true}).output")


def use_lualine_double(nvim):
    nvim.exec_lua("vim.opt.rtp:prepend(...)", str(DOUBLES / "lualine"))
    nvim.exec_lua("require('lualine').setup({sections = {lualine_x = {'lofi'}}})")


def test_lualine_component_needs_no_lofi_module_and_escapes_percent(nvim):
    use_lualine_double(nvim)
    # lualine required the component at setup (startup): no lofi module came with it.
    loaded = nvim.exec_lua(
        "local o = {} for k in pairs(package.loaded) do if k:match('^lofi') then o[#o+1] = k end end return o"
    )
    assert loaded == []
    nvim.exec_lua(
        "require('lofi.state').current.generating.x = {track_id = 'x', percent = 55, running = true} "
        "require('lualine').refresh()"
    )
    assert nvim.exec_lua("return require('lualine').failures") == 0
    shown = nvim.exec_lua("return vim.api.nvim_eval_statusline(vim.wo.statusline, {}).str")
    assert "◌ 55%" in shown
    # The plain statusline path is not re-interpreted: no escaping there.
    plain = nvim.exec_lua(
        "return vim.api.nvim_eval_statusline(\"%{v:lua.require'lofi'.statusline()}\", {}).str"
    )
    assert plain == "◌ 55%"


def use_telescope_double(nvim):
    nvim.exec_lua("vim.opt.rtp:prepend(...)", str(DOUBLES / "telescope"))


def open_tracks(nvim):
    nvim.exec_lua("require('telescope.pickers')._current = nil")
    nvim.command("Lofi tracks")
    wait_for(nvim, "local p = require('telescope').double.current() return p and #p.entries > 0")


def press(nvim, key):
    nvim.exec_lua("require('telescope').double.press(...)", key)


@pytest.fixture
def tracks(nvim):
    use_telescope_double(nvim)
    ids = [generate(nvim, p) for p in ("alpha one", "beta two", "gamma three")]
    return ids


def test_telescope_quickfix_and_splits_use_entry_fields(nvim, tracks):
    open_tracks(nvim)
    press(nvim, "<C-q>")
    qf = nvim.exec_lua(
        "return vim.tbl_map(function(i) return {vim.fn.bufname(i.bufnr), i.text} end, vim.fn.getqflist())"
    )
    assert sorted(q[0] for q in qf) == sorted(f"/tmp/{i}.flac" for i in tracks)
    assert any("beta two" in q[1] for q in qf)
    nvim.command("cclose")
    for key, wins in (("<C-v>", 2), ("<C-x>", 2), ("<C-t>", 1)):
        nvim.command("silent! only")
        open_tracks(nvim)
        press(nvim, key)
        assert nvim.exec_lua("return vim.bo.filetype") == "lofi"
        assert nvim.current.buffer[0].startswith("Prompt:     ")
        assert nvim.exec_lua("return #vim.api.nvim_tabpage_list_wins(0)") == wins


def test_telescope_multi_select_add_and_confirmed_delete_keep_the_picker(nvim, tracks):
    nvim.exec_lua("_G.asked = {} vim.fn.confirm = function(q) table.insert(_G.asked, q) return _G.answer end")
    open_tracks(nvim)
    press(nvim, "<Tab>")
    press(nvim, "<Tab>")
    press(nvim, "<C-a>")
    added = poll(lambda: len(sent(nvim, "playlist_add")) == 2 and sent(nvim, "playlist_add"))
    assert len({a["track_id"] for a in added}) == 2
    # <C-d> scrolls the preview; it deletes nothing.
    press(nvim, "<C-d>")
    open_tracks(nvim)
    nvim.exec_lua("require('telescope').double.type('a')")
    press(nvim, "<Tab>")
    press(nvim, "<Tab>")
    nvim.exec_lua("_G.answer = 2")  # "No"
    press(nvim, "<M-d>")
    assert nvim.exec_lua("return _G.asked") == ["Delete 2 tracks from the cache?"]
    nvim.exec_lua("vim.wait(100)")
    assert sent(nvim, "cache_delete") == []
    nvim.exec_lua("_G.answer = 1")  # "Yes"
    press(nvim, "<M-d>")
    poll(lambda: len(sent(nvim, "cache_delete")) == 2)
    # Refreshed in place: same picker, same query, the deleted tracks gone.
    left = wait_for(
        nvim,
        "local p = require('telescope').double.current() "
        "return p and #p.entries == 1 and {p:_get_prompt(), p.entries[1].value.track_id}",
    )
    deleted = {d["track_id"] for d in sent(nvim, "cache_delete")}
    assert left[0] == "a" and left[1] not in deleted and len(deleted) == 2


def test_telescope_regenerate_picks_a_new_seed(nvim, tracks):
    open_tracks(nvim)
    nvim.exec_lua("require('telescope').double.type('gamma')")
    press(nvim, "<C-s>")
    regen = poll(lambda: len(sent(nvim, "generate")) == 4 and sent(nvim, "generate")[-1])
    first = [g for g in sent(nvim, "generate") if g["prompt"] == "gamma three"][0]
    assert regen["prompt"] == "gamma three" and regen["seed"] != first.get("seed", 7)


def test_telescope_with_an_empty_cache_gives_the_hint(nvim):
    use_telescope_double(nvim)
    nvim.command("Lofi tracks")
    poll(lambda: any("no cached tracks yet" in n for n in notes(nvim)))
    assert nvim.exec_lua("return require('telescope').double.current()") is None
