"""What every benchmark needs besides its subject: how much CPU *other* processes used while it ran (the machine is
shared, and a number measured beside a busy neighbour is contaminated), waiting for a quiet machine first, and
peak memory, and the machine itself (CPU model, SIMD features, read bandwidth) for every table's header. Memory
and file sizes are reported in MiB in every benchmark."""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

MIB = 1024 * 1024
HZ = os.sysconf("SC_CLK_TCK")


def busy_ticks() -> int:
    """Clock ticks every CPU of the machine spent busy since boot (/proc/stat, minus idle and iowait)."""
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    return sum(parts) - parts[3] - parts[4]


def own_ticks() -> int:
    """Clock ticks this process and its reaped children have used (user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return int((r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime) * HZ)


class Watch:
    """`with Watch() as w:` times the block (w.sec) and measures the cores other processes kept busy meanwhile
    (w.foreign_cores). Children started in the block count as ours once they are waited for inside it."""

    sec = 0.0
    foreign_cores = 0.0

    def __enter__(self) -> Watch:
        self._t, self._busy, self._own = time.perf_counter(), busy_ticks(), own_ticks()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sec = time.perf_counter() - self._t
        foreign = (busy_ticks() - self._busy) - (own_ticks() - self._own)
        self.foreign_cores = max(0.0, foreign / HZ / max(self.sec, 1e-9))


def foreign_load(sample_sec: float = 2.0) -> float:
    """Cores other processes keep busy, sampled while this process sleeps."""
    with Watch() as w:
        time.sleep(sample_sec)
    return w.foreign_cores


def wait_quiet(max_wait: float, threshold: float = 0.3) -> tuple[float, float]:
    """Wait (up to max_wait s) until other processes use < threshold cores; return (waited s, last load)."""
    t0 = time.monotonic()
    load = foreign_load()
    while load >= threshold and time.monotonic() - t0 < max_wait:
        load = foreign_load()
    return time.monotonic() - t0, load


def peak_rss_mib() -> float:
    """This process's peak resident memory (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def file_mib(path: Path) -> float:
    return path.stat().st_size / MIB


def machine_info() -> dict:
    """CPU model, the SIMD features that pick ORT's kernels, and the read bandwidth of a 1 GiB buffer with two
    threads (`read_bandwidth_gb_per_s`): what streaming a model's weights can reach."""
    info: dict = {"cpu": "?", "features": [], "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            if line.startswith("model name") and info["cpu"] == "?":
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = (
                    "avx2",
                    "fma",
                    "avx512f",
                    "avx512_vnni",
                    "avx512_bf16",
                    "avx_vnni",
                    "amx_int8",
                    "amx_bf16",
                )
                info["features"] = [f for f in wanted if f in flags]
                break
    except OSError:
        pass
    info["read_gb_per_s"] = read_bandwidth_gb_per_s()
    return info


def bandwidth_buffer():
    """1 GiB of float32, far beyond any L3: what `read_bandwidth_gb_per_s` streams. Keep one to measure often
    without faulting in a fresh GiB each time."""
    import numpy as np

    return np.ones(1 << 28, dtype=np.float32)


def read_bandwidth_gb_per_s(buf=None, passes: int = 5) -> float:
    """The best of `passes` reads of `buf` (default: a fresh 1 GiB) by two threads (numpy's reductions release
    the GIL): what streaming a model's weights can reach at this moment. On a VM it moves with the host's
    neighbours (by a third within a quiet minute here), so a floor should use a value measured beside the
    timing it judges."""
    import threading

    import numpy as np

    buf = bandwidth_buffer() if buf is None else buf
    halves = np.array_split(buf, 2)
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        threads = [threading.Thread(target=h.sum) for h in halves]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return round(buf.nbytes / best / 1e9, 1)
