"""How much RAM ACE-Step needs on the CPU, and whether its five sessions stay resident.

A stage's session needs about its files' size: onnxruntime memory-maps external data and copies each MatMul
weight into its pre-packed layout, dropping the mapped copy, so weights are held once (1.79 GB resident for the
1.84 GB 4-block decoder, docs/model-formats.md); PREPACK_FACTOR is the margin for packing and the arena. Graphs
that keep their weights inside the .onnx (text encoder, DCAE, vocoder) peak higher while loading: the parsed
protobuf and the initializers coexist (the 1.13 GB UMT5 graph peaked at 1.63× its size), hence INLINE_FACTOR.
A generation also holds ACTIVATIONS_BYTES of activations: the DCAE stage of a 30 s track peaked ≈ 1.2 GB above its
weights, and windows bound it at ≈ 47.5 s for longer tracks.

Plans (`LOFI_ACE_STEP_MEMORY`, default "auto"):
* "high": all five sessions stay open between generations (fastest for repeated generations);
* "low": each stage opens when needed and closes when done (text encoder → transformer encoder → decoder loop →
  DCAE → vocoder), so the peak is the largest stage, not the sum; costs the sessions' load time per generation;
* "auto": "high" when the sum fits in 70 % of the memory available at load time, else "low".
Before anything is loaded the backend refuses with a clear error when even the plan's need does not fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PREPACK_FACTOR = 1.25
INLINE_FACTOR = 1.8
ACTIVATIONS_BYTES = 2 * 10**9
ENV_MEMORY = "LOFI_ACE_STEP_MEMORY"
MODES = ("auto", "low", "high")
# "auto" keeps everything resident only when it takes at most this share of what is free
AUTO_HIGH_SHARE = 0.7


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else the free physical pages; None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def stage_files(graph: Path) -> list[Path]:
    """A graph and its external data (`<stem>_weights.bin` beside it, as our export and the reference name it)."""
    data = graph.with_name(graph.stem + "_weights.bin")
    return [graph, data] if data.exists() else [graph]


def stage_bytes(graphs: Mapping[str, Path]) -> dict[str, int]:
    """Estimated resident bytes of each stage's session."""
    out = {}
    for stage, path in graphs.items():
        files = [p for p in stage_files(path) if p.exists()]
        factor = PREPACK_FACTOR if len(files) > 1 else INLINE_FACTOR
        out[stage] = int(sum(p.stat().st_size for p in files) * factor)
    return out


def requested_mode(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    mode = env.get(ENV_MEMORY, "auto").strip().lower() or "auto"
    return mode if mode in MODES else "auto"


@dataclass(frozen=True)
class MemoryPlan:
    resident: bool  # all sessions stay open ("high") or one at a time ("low")
    need_bytes: int  # peak need of this plan
    largest_stage: str
    mode: str  # the plan chosen ("high" / "low")

    def describe(self) -> str:
        return "all five sessions resident" if self.resident else "one stage at a time"


def plan(mode: str, sizes: Mapping[str, int], available: int | None) -> MemoryPlan:
    total = sum(sizes.values()) + ACTIVATIONS_BYTES
    largest = max(sizes, key=lambda s: sizes[s])
    one = sizes[largest] + ACTIVATIONS_BYTES
    if mode == "auto":
        mode = "high" if available is None or total <= available * AUTO_HIGH_SHARE else "low"
    if mode == "high":
        return MemoryPlan(True, total, largest, "high")
    return MemoryPlan(False, one, largest, "low")
