"""Helpers for the Neovim plugin tests: find a real nvim binary and drive it headless through pynvim."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_client import CEILING
from tests.nvim_path import nvim_binary

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def require_nvim() -> str:
    nvim = nvim_binary()
    if not nvim:
        pytest.skip("no nvim binary (set LOFI_TEST_NVIM)")
    pytest.importorskip("pynvim")
    return nvim


def daemon_env(tmp_path: Path) -> dict[str, str]:
    """Environment for a real daemon spawned by the plugin: this checkout's code, isolated dirs."""
    return {
        "PYTHONPATH": str(ROOT / "daemon"),
        "LOFI_CACHE_DIR": str(tmp_path / "cache"),
        "LOFI_LOG_DIR": str(tmp_path / "log"),
    }


def real_daemon_cmd() -> list[str]:
    return [sys.executable, "-m", "lofi_daemon"]


def fake_daemon_cmd(*args: str) -> list[str]:
    return [sys.executable, str(TESTS / "fake_lofi_daemon.py"), *args]


@contextmanager
def embedded_nvim(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[Any]:
    """A fresh `nvim --clean --embed --headless` with this checkout first on 'runtimepath'."""
    import pynvim

    nvim_bin = require_nvim()
    xdg = tmp_path / "xdg"
    child_env = {
        "XDG_CONFIG_HOME": str(xdg / "config"),
        "XDG_DATA_HOME": str(xdg / "data"),
        "XDG_STATE_HOME": str(xdg / "state"),
        "XDG_CACHE_HOME": str(xdg / "cache"),
        **(env or {}),
    }
    argv = ["env", *(f"{k}={v}" for k, v in child_env.items())]
    argv += [nvim_bin, "--clean", "--embed", "--headless", "--cmd", f"set rtp^={ROOT}"]
    nvim = pynvim.attach("child", argv=argv)
    try:
        nvim.command("set columns=200 lines=50")
        yield nvim
    finally:
        quit_nvim(nvim)


def configure(nvim: Any, cfg: dict[str, Any]) -> None:
    """Set vim.g.lofi (the plugin reads it lazily on first use)."""
    nvim.exec_lua("vim.g.lofi = ...", cfg)


def wait_for(nvim: Any, lua_expr: str, timeout: float = CEILING, *args: Any) -> Any:
    """Poll a Lua expression (`return ...`) inside nvim until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = nvim.exec_lua(lua_expr, *args)
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for: {lua_expr} (last value {last!r})")


def poll(fn: Callable[[], Any], timeout: float = CEILING) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out")


# Lua snippet installed by tests: records every lofi User event; vim.notify becomes the nvim-notify double
# (tests/lua/doubles/notify.lua), a callable table that shows titles and replaces in place like the real one.
RECORDER = r"""
_G.lofi_events = {}
vim.api.nvim_create_autocmd("User", {
  pattern = "Lofi*",
  callback = function(ev)
    table.insert(_G.lofi_events, { name = ev.match, data = ev.data })
  end,
})
_G.notify_double = dofile(...)
vim.notify = _G.notify_double
"""

NOTIFY_DOUBLE = TESTS / "lua" / "doubles" / "notify.lua"


def install_recorder(nvim: Any) -> None:
    nvim.exec_lua(RECORDER, str(NOTIFY_DOUBLE))


def events(nvim: Any, name: str | None = None) -> list[dict[str, Any]]:
    evs = nvim.exec_lua("return _G.lofi_events")
    return [e for e in evs if name is None or e["name"] == name]


def notes(nvim: Any, min_level: int = 0) -> list[str]:
    """What the user saw of each notification ("title: message"), at or above `min_level`."""
    return nvim.exec_lua(
        "local d = _G.notify_double local out = {} "
        "for _, n in ipairs(d.notes) do if n.level >= ... then out[#out + 1] = d.shown(n) end end return out",
        min_level,
    )


def notify_errors(nvim: Any) -> list[str]:
    """Errors the nvim-notify double raised (e.g. `replace` of a closed notification)."""
    return nvim.exec_lua("return _G.notify_double.errors")


def quit_nvim(nvim) -> None:
    """Stop lofi's daemon the way VimLeavePre would, then quit; never raises (teardown after a failed test)."""
    try:
        nvim.exec_lua(
            "if package.loaded['lofi.client'] then require('lofi.client').stop({wait_ms = 2000}) end"
        )
        nvim.command("qa!")
    except Exception:
        pass
    try:
        nvim.close()
    except Exception:
        pass
