"""Execution-provider choice: `auto` tries CUDA, then CoreML, then CPU; `cpu` / `cuda` / `coreml` ask for one.

A requested provider that this onnxruntime build does not have (or that fails to initialise when a session is
created, e.g. a missing CUDA library) falls back to CPU with a message saying so, instead of failing the job.
Backend-neutral: MusicGen and ACE-Step sessions are created the same way.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import onnxruntime as ort

from ..logging_setup import log_once

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"

# user-facing names → onnxruntime names
PROVIDER_NAMES = {"cpu": CPU, "cuda": CUDA, "coreml": COREML}
AUTO_ORDER = ["cuda", "coreml", "cpu"]
SETTINGS_CHOICES = ("auto", *PROVIDER_NAMES)


def short_name(ort_name: str) -> str:
    for short, full in PROVIDER_NAMES.items():
        if full == ort_name:
            return short
    return ort_name


@dataclass
class ProviderPlan:
    """The providers to try, best first (CPU is always last), and what the user should be told."""

    requested: str
    candidates: list[str]  # user-facing names, e.g. ["cuda", "cpu"]
    messages: list[str] = field(default_factory=list)

    @property
    def preferred(self) -> str:
        return self.candidates[0]


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def plan_providers(requested: str, available: list[str] | None = None) -> ProviderPlan:
    """Decide which providers to try for `requested` given onnxruntime's `available` list (ORT names)."""
    available = available_providers() if available is None else available
    requested = (requested or "auto").strip().lower()
    if requested not in SETTINGS_CHOICES:
        msg = f"unknown execution provider '{requested}' (expected one of {', '.join(SETTINGS_CHOICES)}); using auto"
        plan = plan_providers("auto", available)
        plan.messages.insert(0, msg)
        return plan
    have = ", ".join(short_name(p) for p in available) or "none"
    if requested == "auto":
        candidates = []
        messages: list[str] = []
        for name in AUTO_ORDER:
            if PROVIDER_NAMES[name] in available:
                candidates.append(name)
            elif name != "cpu":
                log_once(
                    log,
                    logging.INFO,
                    "provider auto: %s not available in this onnxruntime build (has: %s)",
                    name,
                    have,
                )
        if "cpu" not in candidates:
            candidates.append("cpu")
        return ProviderPlan("auto", candidates, messages)
    if requested == "cpu":
        return ProviderPlan("cpu", ["cpu"])
    if PROVIDER_NAMES[requested] in available:
        return ProviderPlan(requested, [requested, "cpu"])
    hint = {"cuda": "install onnxruntime-gpu and the CUDA runtime", "coreml": "CoreML needs macOS"}[requested]
    msg = (
        f"execution provider '{requested}' is not available in this onnxruntime build (has: {have}); "
        f"falling back to cpu ({hint})"
    )
    return ProviderPlan(requested, ["cpu"], [msg])
