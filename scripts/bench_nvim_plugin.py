"""Benchmark the Neovim plugin's hot paths: sourcing plugin/lofi.lua at startup, lofi.statusline(), and the cost per
keystroke of the adaptive radio's autocmds (the InsertCharPre autocmds Neovim runs for each typed character).

Prints JSON and a table. References measured in the same run: sourcing Neovim's own runtime plugin
`plugin/man.lua` (a one-command plugin file like ours), calling `vim.fn.mode()` (a trivial statusline item), and
an empty InsertCharPre autocmd (the least any per-keystroke hook can cost), and no autocmd at all (the event's
dispatch alone). Medians of interleaved rounds of N dispatches each.

    python scripts/bench_nvim_plugin.py [--runs 20] [--calls 100000] [--keys 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.benchlib import machine_info  # noqa: E402
from tests.nvim_path import nvim_binary  # noqa: E402


def sourcing_ms(nvim: str, runs: int) -> dict[str, float]:
    ours, ref = [], []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "startup.log"
        for _ in range(runs):
            log.unlink(missing_ok=True)
            cmd = [
                nvim,
                "--clean",
                "--headless",
                "--cmd",
                f"set rtp^={ROOT}",
                "--startuptime",
                str(log),
                "-c",
                "qa!",
            ]
            subprocess.run(cmd, check=True, timeout=60)
            for line in log.read_text().splitlines():
                if line.endswith("plugin/lofi.lua"):
                    ours.append(float(line.split()[1]))
                elif line.endswith("plugin/man.lua"):
                    ref.append(float(line.split()[1]))
    return {"lofi_ms": statistics.median(ours), "reference_man_lua_ms": statistics.median(ref)}


LUA_STATUSLINE = r"""
local calls = tonumber(_G.arg[1])
vim.opt.rtp:prepend(_G.arg[2])
local lofi, state = require("lofi"), require("lofi.state")
state.apply("playback_started", { track_id = "t", duration_sec = 30 })
state.apply("generation_started", { track_id = "g", prompt = "p" })
state.apply("generation_progress", { track_id = "g", percent = 45 })
local function time(fn)
  local t0 = vim.uv.hrtime()
  for _ = 1, calls do fn() end
  return (vim.uv.hrtime() - t0) / calls / 1e3 -- microseconds per call
end
local ours = time(lofi.statusline)
local ref = time(function() return vim.fn.mode() end)
io.stdout:write(vim.json.encode({ us = ours, ref_us = ref, sample = lofi.statusline() }), "\n")
"""


def statusline_us(nvim: str, calls: int) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA_STATUSLINE)
        script = f.name
    out = subprocess.run(
        [nvim, "--clean", "--headless", "-l", script, str(calls), str(ROOT)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    Path(script).unlink()
    return json.loads(out.stdout.strip().splitlines()[-1])


LUA_KEYSTROKE = r"""
local n, rounds = tonumber(_G.arg[1]), tonumber(_G.arg[3])
vim.opt.rtp:prepend(_G.arg[2])
local energy = require("lofi.energy")
-- What Neovim runs per typed character for the hooks: the InsertCharPre autocmds (dispatch + callbacks).
local function per_key_us()
  local t0 = vim.uv.hrtime()
  for _ = 1, n do
    vim.api.nvim_exec_autocmds("InsertCharPre", { modeline = false })
  end
  return (vim.uv.hrtime() - t0) / 1e3 / n
end
local setups = {
  none = function() end,
  empty = function()
    vim.api.nvim_create_autocmd("InsertCharPre", {
      group = vim.api.nvim_create_augroup("bench_empty", {}),
      callback = function() end,
    })
  end,
  lofi = function() energy.follow(true, { timer = false }) end,
}
local teardown = {
  none = function() end,
  empty = function() vim.api.nvim_del_augroup_by_name("bench_empty") end,
  lofi = function() energy.follow(false) end,
}
local times = { none = {}, empty = {}, lofi = {} }
for _ = 1, rounds do
  for _, name in ipairs({ "none", "empty", "lofi" }) do
    setups[name]()
    table.insert(times[name], per_key_us())
    teardown[name]()
  end
end
local function median(t) table.sort(t) return t[math.floor((#t + 1) / 2)] end
io.stdout:write(vim.json.encode({
  base_us_per_key = median(times.none),
  empty_us_per_key = median(times.empty),
  lofi_us_per_key = median(times.lofi),
}), "\n")
"""


def keystroke_us(nvim: str, keys: int, rounds: int = 9) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(LUA_KEYSTROKE)
        script = f.name
    out = subprocess.run(
        [nvim, "--clean", "--headless", "-l", script, str(keys), str(ROOT), str(rounds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    Path(script).unlink()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--calls", type=int, default=100000)
    ap.add_argument("--keys", type=int, default=20000)
    args = ap.parse_args()
    nvim = nvim_binary()
    if not nvim:
        print("no nvim binary", file=sys.stderr)
        return 1
    src = sourcing_ms(nvim, args.runs)
    sl = statusline_us(nvim, args.calls)
    ks = keystroke_us(nvim, args.keys)
    result = {
        "machine": machine_info(),
        "nvim": nvim,
        "startup_sourcing_ms": src["lofi_ms"],
        "startup_reference_ms": src["reference_man_lua_ms"],
        "startup_ratio": src["lofi_ms"] / src["reference_man_lua_ms"],
        "statusline_us_per_call": sl["us"],
        "statusline_reference_us_per_call": sl["ref_us"],
        "statusline_ratio": sl["us"] / sl["ref_us"],
        "statusline_sample": sl["sample"],
        "no_autocmd_us_per_key": ks["base_us_per_key"],
        "adaptive_radio_us_per_key": ks["lofi_us_per_key"],
        "empty_autocmd_us_per_key": ks["empty_us_per_key"],
    }
    print(json.dumps(result))
    print()
    print(f"{'measure':<36}{'lofi':>12}{'reference':>12}{'ratio':>8}")
    print(
        f"{'source plugin file (ms, median)':<36}{result['startup_sourcing_ms']:>12.3f}"
        f"{result['startup_reference_ms']:>12.3f}{result['startup_ratio']:>8.2f}"
    )
    print(
        f"{'statusline() (µs per call)':<36}{result['statusline_us_per_call']:>12.3f}"
        f"{result['statusline_reference_us_per_call']:>12.3f}{result['statusline_ratio']:>8.2f}"
    )
    lofi_key, empty_key = result["adaptive_radio_us_per_key"], result["empty_autocmd_us_per_key"]
    print(
        f"{'adaptive radio (µs per keystroke)':<36}{lofi_key:>12.3f}{empty_key:>12.3f}"
        f"{lofi_key / empty_key if empty_key > 0 else float('nan'):>8.2f}"
    )
    print(f"(the event with no autocmd at all: {result['no_autocmd_us_per_key']:.3f} µs per key)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
