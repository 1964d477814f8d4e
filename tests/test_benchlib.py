"""scripts/benchlib.py: the benchmarks' CPU-contamination and memory measurements."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from scripts import benchlib

# a child that spends at least this much CPU time (measured by itself, so load elsewhere cannot shorten it)
BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"


def test_a_reaped_child_counts_as_our_cpu_not_foreign():
    before = benchlib.own_ticks()
    with benchlib.Watch() as w:
        subprocess.run([sys.executable, "-c", BURN], check=True)
    # the child's ≥ 0.5 s of CPU is in our ticks (one tick of rounding at each end), so Watch did not take it for
    # another process's: whatever foreign load it saw, it is not inflated by our own child
    assert benchlib.own_ticks() - before >= 0.5 * benchlib.HZ - 2
    assert w.sec > 0 and w.foreign_cores >= 0.0


def test_peak_rss_is_in_mib():
    block = np.ones(64 * benchlib.MIB, dtype=np.uint8)  # touched, so resident
    assert block.sum() == 64 * benchlib.MIB
    with open("/proc/self/status") as fh:
        hwm_kib = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    # the kernel's own high-water mark, in KiB, converted: the same number up to what was allocated since
    assert benchlib.peak_rss_mib() >= 64
    assert abs(benchlib.peak_rss_mib() - hwm_kib / 1024) < 16


def test_file_mib(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"\0" * (3 * benchlib.MIB))
    assert benchlib.file_mib(p) == 3.0
