"""Benchmark the Neovim plugin's two hot paths: sourcing plugin/lofi.lua at startup, and lofi.statusline().

Prints JSON and a table. References measured in the same run: sourcing Neovim's own runtime plugin
`plugin/man.lua` (a one-command plugin file like ours) and calling `vim.fn.mode()` (a trivial statusline item).

    python scripts/bench_nvim_plugin.py [--runs 20] [--calls 100000]
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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--calls", type=int, default=100000)
    args = ap.parse_args()
    nvim = nvim_binary()
    if not nvim:
        print("no nvim binary", file=sys.stderr)
        return 1
    src = sourcing_ms(nvim, args.runs)
    sl = statusline_us(nvim, args.calls)
    result = {
        "nvim": nvim,
        "startup_sourcing_ms": src["lofi_ms"],
        "startup_reference_ms": src["reference_man_lua_ms"],
        "startup_ratio": src["lofi_ms"] / src["reference_man_lua_ms"],
        "statusline_us_per_call": sl["us"],
        "statusline_reference_us_per_call": sl["ref_us"],
        "statusline_ratio": sl["us"] / sl["ref_us"],
        "statusline_sample": sl["sample"],
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
